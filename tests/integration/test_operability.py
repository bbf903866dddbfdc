"""`even serve --workers 2` as an operator runs it: SIGHUP reloads the policy in both workers,
/metrics sums both workers, and `log_format: json` writes one clean JSON object per line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.even_server import EvenServer, even_command, start_even
from harness.ports import free_port
from harness.waiting import eventually
from tests.conftest import TEST_POLICY, make_live_even_dir

BOB_RULE = """
  - name: bob-lab
    subjects: {users: [bob]}
    hosts: ["*.lab.even.test"]
    logins: ["{username}"]
    max_lifetime_minutes: 30
    reason: {min_length: 5}
"""
HOST = "web-1.lab.even.test"
LOG_FIELDS = ("time", "level", "event", "request_id", "route", "status", "duration_ms", "username")


@dataclass
class Lab:
    server: EvenServer
    config: Path
    public_key: str
    tokens: dict[str, str]

    def grant(self, user: str) -> httpx.Response:
        # A connection of its own each time: the kernel hands it to either worker.
        return httpx.post(
            self.server.url + "/v1/access-requests",
            json={"hostname": HOST, "reason": "ops OPS-19 check", "public_key": self.public_key},
            headers={"Authorization": f"Bearer {self.tokens[user]}"},
            trust_env=False,
            timeout=30,
        )

    def get(self, path: str, user: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.get(self.server.url + path, headers=headers, trust_env=False, timeout=30)

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.server.log_text().splitlines() if line]

    def policy_loaded(self) -> list[dict[str, Any]]:
        answer = self.get("/v1/audit/events?type=policy.loaded&limit=500", "carol")
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    def write_policy(self, text: str) -> None:
        (self.config.parent / "policy.yaml").write_text(text, encoding="utf-8")


def _token(config: Path, user: str, *groups: str) -> str:
    argv = [*even_command(), "dev-token", "--config", str(config), "--user", user]
    for group in groups:
        argv += ["--groups", group]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    port = free_port()
    config = make_live_even_dir(tmp_path / "even", port)
    config.write_text(config.read_text() + "log_format: json\n")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    server = start_even(
        config,
        log_path=tmp_path / "even.log",
        port=port,
        workers=2,
        serve_args=["--log-level", "info"],
    )
    try:
        tokens = {
            "alice": _token(config, "alice"),
            "bob": _token(config, "bob"),
            "carol": _token(config, "carol", "audit"),
        }
        yield Lab(server, config, (tmp_path / "k.pub").read_text().strip(), tokens)
    finally:
        server.stop()


def _worker_pids(lab: Lab) -> set[int]:
    """The two workers' pids, from the lines each wrote at start."""
    assert eventually(lambda: len(_started(lab)) >= 2, 30), lab.server.log_text()
    return _started(lab)


def _started(lab: Lab) -> set[int]:
    master = lab.server.process.pid
    return {
        line["pid"]
        for line in lab.log_lines()
        if line["pid"] != master and "Application startup complete" in line["message"]
    }


def _reloaded_by(lab: Lab, needle: str) -> set[int]:
    return {line["pid"] for line in lab.log_lines() if needle in line["message"]}


def test_sighup_reloads_both_workers_and_records_one_policy(lab: Lab) -> None:
    workers = _worker_pids(lab)
    assert lab.grant("bob").status_code == 403
    before = lab.policy_loaded()
    old_sha = lab.get("/readyz").json()["policy"]["sha256"]
    lab.write_policy(TEST_POLICY + BOB_RULE)
    sent = time.monotonic()
    lab.server.process.send_signal(signal.SIGHUP)
    both = eventually(lambda: _reloaded_by(lab, "policy reloaded") >= workers, 2.0)
    assert both, lab.server.log_text()
    assert time.monotonic() - sent < 2.5
    # Decisions changed: whichever worker answers, bob is granted now.
    for _ in range(8):
        answer = lab.grant("bob")
        assert answer.status_code == 201, answer.text
    new_sha = lab.get("/readyz").json()["policy"]["sha256"]
    assert new_sha != old_sha
    after = lab.policy_loaded()
    added = after[len(before) :]
    assert [r["details"]["sha256"] for r in added] == [new_sha], added
    assert added[0]["details"]["source"] == "reload"
    assert lab.server.process.poll() is None


def test_invalid_policy_keeps_the_old_one_and_says_why(lab: Lab) -> None:
    workers = _worker_pids(lab)
    before = lab.policy_loaded()
    old_sha = lab.get("/readyz").json()["policy"]["sha256"]
    lab.write_policy(TEST_POLICY + "  - name: broken\n    subjects: {users: [bob]}\n")
    lab.server.process.send_signal(signal.SIGHUP)
    assert eventually(lambda: _reloaded_by(lab, "policy reload failed") >= workers, 5.0)
    failures = [line for line in lab.log_lines() if "policy reload failed" in line["message"]]
    assert all(line["level"] == "error" for line in failures)
    assert all(old_sha[:12] in line["message"] for line in failures)
    assert "policy.yaml" in failures[0]["message"]  # why: the file and what is wrong in it
    for _ in range(6):
        assert lab.grant("alice").status_code == 201
        assert lab.grant("bob").status_code == 403
        assert lab.get("/readyz").json()["policy"]["sha256"] == old_sha
    assert lab.policy_loaded() == before
    assert lab.server.process.poll() is None


def _scrape(lab: Lab) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = lab.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _by_pid(lab: Lab, route: str) -> set[int]:
    return {
        line["pid"]
        for line in lab.log_lines()
        if line["event"] == "http.request" and line["route"] == route
    }


def test_metrics_count_across_both_workers_without_names(lab: Lab) -> None:
    workers = _worker_pids(lab)
    grants = denials = 0
    # Until both workers have answered a grant (each connection goes to either).
    while _by_pid(lab, "/v1/access-requests") < workers or not denials:
        assert lab.grant("alice").status_code == 201
        grants += 1
        assert lab.grant("bob").status_code == 403
        denials += 1
        assert grants < 60, "one worker never answered"
    grant_key = ("even_grants_total", (("mode", "certificate"),))
    denial_key = ("even_denials_total", (("code", "no_matching_rule"), ("mode", "certificate")))
    scrapes = 0
    while _by_pid(lab, "/metrics") < workers or scrapes < 2:
        samples = _scrape(lab)
        scrapes += 1
        assert samples[grant_key] == grants
        assert samples[denial_key] == denials
        count = ("even_grant_duration_seconds_count", (("mode", "certificate"),))
        assert samples[count] == grants + denials
        requests = (
            "even_http_requests_total",
            (("method", "POST"), ("route", "/v1/access-requests"), ("status", "201")),
        )
        assert samples[requests] == grants
        assert samples[("even_audit_head_seq", ())] >= grants + denials
        assert scrapes < 60, "one worker never answered /metrics"
    text = lab.get("/metrics").text
    for name in ("alice", "bob", "carol", "lab.even.test", "web-1"):
        assert name not in text
    machine = socket.gethostname()
    if len(machine) > 3:
        assert machine not in text


def test_json_log_lines_of_a_grant(lab: Lab) -> None:
    answer = lab.grant("alice")
    assert answer.status_code == 201
    request_id = answer.headers["x-request-id"]
    certificate = answer.json()["certificate"]
    eventually(lambda: any(line["request_id"] == request_id for line in lab.log_lines()), 5)
    text = lab.server.log_text()
    lines = [json.loads(line) for line in text.splitlines() if line]  # every line is JSON
    mine = [line for line in lines if line["request_id"] == request_id]
    assert mine, text
    for line in mine:
        assert set(LOG_FIELDS) <= set(line), line
        assert line["route"] == "/v1/access-requests"
        assert line["username"] == "alice"
    access = [line for line in mine if line["event"] == "http.request"]
    assert len(access) == 1
    assert access[0]["status"] == 201
    assert isinstance(access[0]["duration_ms"], float)
    secrets = [lab.tokens["alice"], certificate.split()[1], lab.public_key.split()[1]]
    for secret in secrets:
        assert secret not in text
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None  # the test process stays clean


def test_sighup_reloads_a_single_process_server(tmp_path: Path) -> None:
    """Without --workers there is no supervisor: the server process itself reloads."""
    port = free_port()
    config = make_live_even_dir(tmp_path / "even", port)
    server = start_even(config, log_path=tmp_path / "even.log", port=port)
    try:
        url = server.url + "/readyz"
        old = httpx.get(url, trust_env=False).json()["policy"]["sha256"]
        (config.parent / "policy.yaml").write_text(TEST_POLICY + BOB_RULE, encoding="utf-8")
        server.process.send_signal(signal.SIGHUP)

        def changed() -> bool:
            return httpx.get(url, trust_env=False).json()["policy"]["sha256"] != old

        assert eventually(changed, 2.0), server.log_text()
        assert server.process.poll() is None
    finally:
        server.stop()
