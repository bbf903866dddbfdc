"""The webhook deliverer: posts outbox rows after their audit record committed (at least once).

Invariants:
- Never on the grant path: it runs in its own thread (`DelivererThread`) with its own pooled
  connections; a slow or hanging receiver costs only this thread's time.
- One deliverer at a time across replicas: each round's claim is a short write transaction
  that takes the `notify` job lock (PostgreSQL `pg_try_advisory_xact_lock`; SQLite's writer
  lock) and leases the rows it takes (`claim_due`, `FOR UPDATE SKIP LOCKED`) for longer than
  the batch can take, so no other deliverer posts them meanwhile. HTTP happens outside any
  transaction; a batch's outcomes are recorded together in one short one.
- At least once, with a stable `webhook-id`: a crash between the POST and its outcome retries
  the row after its lease with the same id, so receivers deduplicate by `webhook-id`.
- Each POST: 5 s timeout per network step, redirects not followed (a 3xx is a failure),
  signed per Standard Webhooks over the exact stored body; the answer's body is never read.
  A batch's POSTs run in parallel, so one hanging receiver does not hold up the others.
  2xx → delivered; anything else → retried after `backoff(attempts)` (≈1 s doubling to at
  most 1 h, ±25 % jitter), until 24 h after the row was written, then `failed`.
- Errors recorded are reason names ("http 500", "timeout", "redirect 302"): never the URL
  (it may hold a token, e.g. Slack's), a header or the receiver's body.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
from sqlalchemy.engine import Engine
from standardwebhooks.webhooks import Webhook

from even.clock import Clock
from even.config import Settings
from even.errors import StoreUnavailable
from even.notify.settings import NotificationSettings, read_secret
from even.store import outbox_tables as outbox
from even.store.db import make_engine, read_only, transaction, try_job_lock

log = logging.getLogger("even.notify")

JOB_NAME = "notify"
TIMEOUT_SECONDS = 5.0
FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 3600.0
JITTER = 0.25  # each delay is scaled by a factor in [1 - JITTER, 1 + JITTER]
GIVE_UP_AFTER = timedelta(hours=24)
BATCH = 10
# A batch's POSTs run in parallel, each bounded by the timeout per connect/write/read step:
# the lease outlasts a batch of hanging receivers with room to spare, even if they had to
# wait for each other.
LEASE = timedelta(seconds=BATCH * TIMEOUT_SECONDS * 4 + 30)
IDLE_SECONDS = 1.0  # how long the thread rests when nothing was due
USER_AGENT = "even-webhooks/1"


def backoff(attempts: int, rng: random.Random) -> float:
    """Seconds before the next try after `attempts` failed tries (1 → ≈1 s, 2 → ≈2 s, …)."""
    base = min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2.0 ** min(attempts - 1, 30))
    return min(MAX_DELAY_SECONDS, base * rng.uniform(1 - JITTER, 1 + JITTER))


class Deliverer:
    """Posts due outbox rows; `run_once` is one round (claim, post, record)."""

    def __init__(
        self,
        *,
        engine: Engine,
        subscriptions: list[NotificationSettings],
        secrets: Mapping[str, bytes | None],
        clock: Clock,
        rng: random.Random | None = None,
        client: httpx.Client | None = None,
        timeout_seconds: float = TIMEOUT_SECONDS,
    ) -> None:
        self._engine = engine
        self._subscriptions = {s.name: s for s in subscriptions}
        self._signers = {
            name: Webhook(secret) for name, secret in secrets.items() if secret is not None
        }
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not a secret)
        self._pool = ThreadPoolExecutor(max_workers=BATCH, thread_name_prefix="even-notify-post")
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout_seconds), follow_redirects=False
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def run_once(self) -> int:
        """Deliver what is due now; returns how many rows were tried."""
        now = self._clock.now()
        with read_only(self._engine) as conn:
            if not outbox.any_due(conn, now):
                return 0
        with transaction(self._engine) as conn:
            if not try_job_lock(conn, JOB_NAME):
                return 0
            rows = outbox.claim_due(conn, now=now, lease_until=now + LEASE, limit=BATCH)
        # In parallel: one hanging receiver must not hold up the others' notifications.
        errors = list(self._pool.map(self._post_safely, rows))
        # Then every outcome of the batch in one short transaction: one commit (one fsync, one
        # turn of the write lock) per batch instead of one per row, so a busy receiver costs
        # the grant path as little as possible. A crash before it only means those rows are
        # sent again after their lease, with the same webhook-id.
        self._record(list(zip(rows, errors, strict=True)))
        return len(rows)

    def _post_safely(self, row: outbox.OutboxRow) -> str | None:
        try:
            return self._post(row)
        except Exception as exc:  # never lose the batch's other outcomes to one row
            log.exception("notification %s: unexpected error while posting", row.webhook_id)
            return f"internal error {type(exc).__name__}"

    def _post(self, row: outbox.OutboxRow) -> str | None:
        """POST one row; None on success, else a reason name safe to store and log."""
        subscription = self._subscriptions.get(row.subscription)
        if subscription is None:
            return "subscription removed from the config"
        sent_at = self._clock.now()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": row.webhook_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
        }
        signer = self._signers.get(row.subscription)
        if signer is not None:
            headers["webhook-signature"] = signer.sign(row.webhook_id, sent_at, row.body)
        try:
            # Streamed and never read: the receiver's body (any size) is not ours to load.
            with self._client.stream(
                "POST", subscription.url, content=row.body, headers=headers
            ) as response:
                status = response.status_code
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as exc:
            # The class names the failure (ConnectError, RemoteProtocolError…); its message
            # may quote the URL, so it is not kept.
            return f"transport error {type(exc).__name__}"
        if 200 <= status < 300:
            return None
        if 300 <= status < 400:
            return f"redirect {status} (not followed)"
        return f"http {status}"

    def _record(self, outcomes: list[tuple[outbox.OutboxRow, str | None]]) -> None:
        now = self._clock.now()
        retries: list[tuple[outbox.OutboxRow, str, datetime]] = []
        with transaction(self._engine) as conn:
            for row, error in outcomes:
                if error is None:
                    outbox.mark_delivered(conn, row.id, now)
                    continue
                deadline = outbox.parse_stamp(row.created_at) + GIVE_UP_AFTER
                permanent = row.subscription not in self._subscriptions
                if permanent or now >= deadline:
                    outbox.mark_failed(conn, row.id, error)
                    log.warning(
                        "notification %s (%s to %s) failed for good after %d attempts: %s",
                        row.webhook_id, row.event_type, row.subscription, row.attempts, error,
                    )  # fmt: skip
                    continue
                # The last try lands at the deadline itself, so a row is tried for the full 24 h.
                delay = timedelta(seconds=backoff(row.attempts, self._rng))
                next_at = min(now + delay, deadline)
                outbox.mark_retry(conn, row.id, next_at, error)
                retries.append((row, error, next_at))
        for row, error, next_at in retries:
            log.info(
                "notification %s (%s to %s) attempt %d: %s; next at %s",
                row.webhook_id, row.event_type, row.subscription, row.attempts, error,
                outbox.stamp(next_at),
            )  # fmt: skip


def load_secrets(settings: Settings) -> dict[str, bytes | None]:
    """Each subscription's key from its secret file (None for an unsigned Slack hook)."""
    return {
        s.name: read_secret(settings.path(s.secret_file)) if s.secret_file else None
        for s in settings.notifications
    }


def start_deliverer(settings: Settings, clock: Clock) -> DelivererThread | None:
    """Start the deliverer thread when notifications are configured (None otherwise).

    It gets its own engine on `database_url`: its connections never compete with requests
    for the request pool, and stopping it disposes of only its own.
    """
    if not settings.notifications:
        return None
    engine = make_engine(settings.resolved_database_url)
    deliverer = Deliverer(
        engine=engine,
        subscriptions=list(settings.notifications),
        secrets=load_secrets(settings),
        clock=clock,
    )
    thread = DelivererThread(deliverer, on_stop=engine.dispose)
    thread.start()
    return thread


def delivery_counts(engine: Engine, statuses: tuple[str, ...] = outbox.STATUSES) -> dict[str, int]:
    """Outbox rows per status, each of `statuses` present (all three unless narrowed)."""
    with read_only(engine) as conn:
        return outbox.outbox_counts(conn, statuses)


class DelivererThread:
    """Runs `Deliverer.run_once` in a daemon thread until `stop()`; `wait` is injectable."""

    def __init__(
        self,
        deliverer: Deliverer,
        *,
        idle_seconds: float = IDLE_SECONDS,
        wait: Callable[[threading.Event, float], bool] | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self._deliverer = deliverer
        self._on_stop = on_stop
        self._idle = idle_seconds
        self._stop = threading.Event()
        self._wait = wait or (lambda event, seconds: event.wait(seconds))
        self._thread = threading.Thread(target=self._loop, name="even-notify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._deliverer.close()
        if self._on_stop is not None:
            self._on_stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            tried = 0
            try:
                tried = self._deliverer.run_once()
            except StoreUnavailable:
                log.warning("notifications skipped: the store is unavailable")
            except Exception:
                log.exception("notification round failed; retrying")
            if tried == 0:
                self._wait(self._stop, self._idle)
