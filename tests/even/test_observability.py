"""In-process: policy reload (even.reload), /metrics counting at the edge, JSON log lines."""

from __future__ import annotations

import json
import logging
import logging.config

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from even.clock import FixedClock
from even.config import Settings
from even.logs import JsonFormatter, RequestContext, current, log_config, redact
from even.reload import last_recorded_sha256, reload_policy
from even.store.db import read_only
from even.wiring import Components
from tests.conftest import TEST_POLICY
from tests.even.conftest import auth

BOB_RULE = """
  - name: bob-lab
    subjects: {users: [bob]}
    hosts: ["*.lab.even.test"]
    logins: ["{username}"]
    max_lifetime_minutes: 30
    reason: {min_length: 5}
"""


def _policy_loaded_count(components: Components) -> int:
    with read_only(components.engine) as conn:
        rows = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM audit_records WHERE type = 'policy.loaded'"
        ).scalar()
    return int(rows or 0)


def _write_policy(settings: Settings, text: str) -> None:
    settings.path(settings.policy_file).write_text(text, encoding="utf-8")


def test_reload_swaps_records_once_and_dedupes(settings: Settings, components: Components) -> None:
    components.access.record_policy_loaded("policy_file")
    old = components.access.policy.sha256
    _write_policy(settings, TEST_POLICY + BOB_RULE)
    first = reload_policy(components)
    assert first.changed and first.recorded and first.outcome == "reloaded"
    assert components.access.policy.sha256 == first.sha256 != old
    # Another worker (here: another reload of the same file) finds it on record already.
    components.access.replace_policy(
        components.access.policy.__class__(document=components.access.policy.document, sha256=old)
    )
    second = reload_policy(components)
    assert second.changed and not second.recorded
    with read_only(components.engine) as conn:
        assert last_recorded_sha256(conn) == first.sha256
    assert _policy_loaded_count(components) == 2
    assert reload_policy(components).outcome == "unchanged"


def test_invalid_policy_keeps_the_old_one(settings: Settings, components: Components) -> None:
    old = components.access.policy
    _write_policy(settings, "rules: [ {name: x\n")
    result = reload_policy(components)
    assert result.error is not None and "not valid YAML" in result.error
    assert result.outcome == "failed"
    assert components.access.policy is old
    assert _policy_loaded_count(components) == 0


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_count_lane_and_route_answers(
    client: TestClient, components: Components, clock: FixedClock, user_key: str
) -> None:
    body = {"hostname": "web-1.lab.even.test", "reason": "lab LAB-1 check", "public_key": user_key}
    assert (
        client.post("/v1/access-requests", json=body, headers=auth(components, clock)).status_code
        == 201
    )
    # The FastAPI route (an Idempotency-Key) counts like the lane.
    headers = {**auth(components, clock), "Idempotency-Key": "k-1"}
    assert client.post("/v1/access-requests", json=body, headers=headers).status_code == 201
    denied = client.post("/v1/access-requests", json=body, headers=auth(components, clock, "bob"))
    assert denied.status_code == 403
    push = {**body, "mode": "push", "public_key": None}
    refused = client.post("/v1/access-requests", json=push, headers=auth(components, clock, "bob"))
    assert refused.status_code in (403, 422, 503)
    assert (
        client.get("/v1/access-requests/nope", headers=auth(components, clock)).status_code == 404
    )
    assert client.get("/no/such/path").status_code == 404
    text = client.get("/metrics").text
    samples = _samples(text)
    assert samples[("even_grants_total", (("mode", "certificate"),))] == 2
    key = ("even_denials_total", (("code", "no_matching_rule"), ("mode", "certificate")))
    assert samples[key] == 1
    assert samples[("even_grant_duration_seconds_count", (("mode", "certificate"),))] == 3
    by_route = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "even_http_requests_total"
    }
    assert (
        by_route[
            (("method", "GET"), ("route", "/v1/access-requests/{request_id}"), ("status", "404"))
        ]
        == 1
    )
    assert by_route[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    assert samples[("even_audit_head_seq", ())] >= 3
    assert ("even_policy_info", (("sha256", components.access.policy.sha256),)) in samples
    for name in ("alice", "bob", "web-1", "nope"):
        assert name not in text


def test_registered_gauges_are_read_at_scrape(client: TestClient) -> None:
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    metrics.register_gauge(
        "even_example_pending", "An example.", ["kind"], lambda: [({"kind": "a"}, 3)]
    )

    def broken() -> list[tuple[dict[str, str], float]]:
        raise RuntimeError("not today")

    metrics.register_gauge("even_example_broken", "Fails.", [], broken)
    samples = _samples(client.get("/metrics").text)
    assert samples[("even_example_pending", (("kind", "a"),))] == 3
    assert not any(name == "even_example_broken" for name, _ in samples)


def test_json_lines_carry_the_request_context_and_redact_secrets() -> None:
    formatter = JsonFormatter()
    token = current.set(RequestContext(request_id="abc", method="GET", route="/x", username="u"))
    try:
        record = logging.LogRecord(
            "even",
            logging.WARNING,
            __file__,
            1,
            "saw %s",
            ("eyJhbGciOi.eyJzdWIiOiJ1In0.c2ln",),
            None,
        )
        line = json.loads(formatter.format(record))
    finally:
        current.reset(token)
    assert line["request_id"] == "abc" and line["route"] == "/x" and line["username"] == "u"
    assert line["level"] == "warning" and "eyJ" not in line["message"]
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----"
    assert "b3Blbn" not in redact(pem)
    assert "AAAAC3NzaC1lZDI1NTE5AAAAI" not in redact("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoo bar")


def test_log_config_is_valid_for_dict_config() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        for fmt in ("text", "json"):
            logging.config.dictConfig(log_config(fmt, "info"))  # type: ignore[arg-type]
            (handler,) = root.handlers
            kind = JsonFormatter if fmt == "json" else logging.Formatter
            assert isinstance(handler.formatter, kind)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
