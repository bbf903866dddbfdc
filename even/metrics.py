"""`GET /metrics`: Prometheus text from `prometheus-client` (SPEC §10).

Counted at the API edge (`even.api.observe`), from each answer's status and problem `code`:
requests by route template and status, grants by mode, denials and other refusals by mode and
code, the grant latency histogram, push failures by operation, policy reloads by result.
Read at scrape time (a `StateCollector`): the audit head seq and checkpoint age, the JWKS
age per issuer, and every gauge registered with `Metrics.register_gauge` — the extension point
for state other parts own (pending approvals, undelivered notifications, …): they register a
callback, nothing here fakes a value they do not have yet.

Invariants: no username or hostname is ever a label value (labels are route templates,
methods, statuses, modes, stable codes, operations and issuer URLs); label values come from
closed sets, so a client cannot grow the series. Under `even serve --workers N` the counters
live in the multiprocess directory (`even.metrics_dir`) and every worker's scrape sums all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from audit import store as audit_store
from even.errors import Denied, EvenError, PolicyRejected
from even.metrics_dir import ENV as MULTIPROC_ENV
from even.store.db import read_only
from even.wiring import Components

log = logging.getLogger("even.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MODES = frozenset({"certificate", "push"})
GRANT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# A gauge callback yields (labels, value) pairs; labels must never name a user or a host.
GaugeSamples = Callable[[], Iterable[tuple[dict[str, str], float]]]
_Labelled = TypeVar("_Labelled", Counter, Histogram)


@dataclass(frozen=True)
class GaugeSource:
    name: str
    documentation: str
    labels: tuple[str, ...]
    samples: GaugeSamples


class _ProcessId:
    """`os.getpid()`, kept: prometheus-client's multiprocess values ask for the pid on every
    increment (a system call each, several per request) to notice a fork. A fork is seen
    here instead (`os.register_at_fork`), so the value it reports is the same."""

    def __init__(self) -> None:
        self.value = os.getpid()
        os.register_at_fork(after_in_child=self._refresh)

    def _refresh(self) -> None:
        self.value = os.getpid()

    def __call__(self) -> int:
        return self.value


def _use_kept_pid() -> None:
    """In multiprocess mode, make the value class read the kept pid. Done when this module
    is imported, before any metric of Even's exists (a value made by the class before would
    write the same file through a second map)."""
    if os.environ.get(MULTIPROC_ENV):
        values.ValueClass = values.MultiProcessValue(process_identifier=_ProcessId())  # type: ignore[no-untyped-call]


_use_kept_pid()


def _codes_of(*bases: type[EvenError]) -> frozenset[str]:
    found: set[str] = set()
    pending: list[type[EvenError]] = list(bases)
    while pending:
        cls = pending.pop()
        found.add(cls.code)
        pending.extend(cls.__subclasses__())
    return frozenset(found)


class Metrics:
    """One per application; see the module docstring."""

    def __init__(self, components: Components) -> None:
        self._components = components
        self._multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # Outside multiprocess mode each app has a registry of its own (tests build many).
        self._registry = None if self._multiprocess else CollectorRegistry()
        registry = self._registry
        self.requests = Counter(
            "even_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.grants = Counter(
            "even_grants", "Access requests granted, by mode.", ["mode"], registry=registry
        )
        self.denials = Counter(
            "even_denials",
            "Access requests the policy refused, by mode and code.",
            ["mode", "code"],
            registry=registry,
        )
        self.refusals = Counter(
            "even_grant_errors",
            "Access requests answered with another error (invalid, unavailable, ...), by mode"
            " and code.",
            ["mode", "code"],
            registry=registry,
        )
        self.grant_seconds = Histogram(
            "even_grant_duration_seconds",
            "Time to answer an access request (any outcome), by mode.",
            ["mode"],
            buckets=GRANT_BUCKETS,
            registry=registry,
        )
        self.push_failures = Counter(
            "even_push_failures",
            "Pushes to hosts that failed (grant) or left lines behind (revoke).",
            ["operation"],
            registry=registry,
        )
        self.policy_reloads = Counter(
            "even_policy_reloads",
            "Policy reloads (SIGHUP), by result.",
            ["result"],
            registry=registry,
        )
        self.denial_codes = _codes_of(Denied, PolicyRejected)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._gauges: list[GaugeSource] = []
        self._state = StateCollector(self)
        if registry is not None:
            registry.register(self._state)

    def register_gauge(
        self, name: str, documentation: str, labels: Iterable[str], samples: GaugeSamples
    ) -> None:
        """Add a gauge read at every scrape. `samples()` runs on a worker thread; if it
        raises, that gauge is left out of the scrape (and logged), the rest still answers."""
        self._gauges.append(GaugeSource(name, documentation, tuple(labels), samples))

    def count_grant_answer(self, mode: str, status: int, code: str | None, seconds: float) -> None:
        """One answered access request (`POST /v1/access-requests` or the classic one)."""
        mode = mode if mode in MODES else "unknown"
        self.child(self.grant_seconds, mode).observe(seconds)
        if status in (200, 201):
            self.child(self.grants, mode).inc()
        elif code in self.denial_codes:
            self.child(self.denials, mode, code).inc()
        else:
            self.child(self.refusals, mode, code or f"http_{status}").inc()
        if code == "push_failed":
            self.child(self.push_failures, "grant").inc()

    def child(self, metric: _Labelled, *labels: str) -> _Labelled:
        """`metric.labels(*labels)`, remembered: `labels()` validates and locks on every
        call, a few microseconds on the grant path; the label sets are small and closed."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def exposition(self) -> bytes:
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self._state)
        return generate_latest(registry)

    def state_gauges(self) -> Iterator[Metric]:
        yield from self._audit_gauges()
        yield from self._jwks_gauges()
        yield self._policy_gauge()
        for source in list(self._gauges):
            try:
                family = GaugeMetricFamily(source.name, source.documentation, labels=source.labels)
                for labels, value in source.samples():
                    family.add_metric([labels[name] for name in source.labels], value)
            except Exception:
                log.exception("gauge %s left out of this scrape", source.name)
                continue
            yield family

    def _audit_gauges(self) -> Iterator[Metric]:
        components = self._components
        try:
            with read_only(components.engine) as conn:
                seq, _ = audit_store.head(conn)
                checkpoint = audit_store.latest_checkpoint(conn)
        except EvenError:
            return  # the store is down: /readyz says so; leave the gauges out
        yield GaugeMetricFamily("even_audit_head_seq", "Seq of the last audit record.", value=seq)
        if checkpoint is not None:
            signed = datetime.fromisoformat(str(checkpoint["time"]))
            age = (components.clock.now() - signed).total_seconds()
            yield GaugeMetricFamily(
                "even_audit_checkpoint_age_seconds",
                "Seconds since the latest signed audit checkpoint.",
                value=max(0.0, age),
            )

    def _jwks_gauges(self) -> Iterator[Metric]:
        components = self._components
        family = GaugeMetricFamily(
            "even_jwks_age_seconds",
            "Seconds since this worker last fetched each issuer's JWKS.",
            labels=["issuer"],
        )
        now = components.clock.now()
        for issuer, fetched in components.verifier.jwks_fetched_at().items():
            if fetched is not None:
                family.add_metric([issuer], max(0.0, (now - fetched).total_seconds()))
        yield family

    def _policy_gauge(self) -> Metric:
        family = GaugeMetricFamily(
            "even_policy_info", "The policy in force (1), by sha256.", labels=["sha256"]
        )
        family.add_metric([self._components.access.policy.sha256], 1)
        return family


class StateCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics.state_gauges())
