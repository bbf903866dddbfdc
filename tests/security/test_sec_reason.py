"""Reasons: length and whitespace rules, and hostile-but-legal text stored verbatim and shown
escaped by readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from audit import store as audit_store


@pytest.mark.parametrize("reason", ["", "   ", "\t\n ", "INC-1 " + "x" * 1019, "\x00INC-12 nul"])
def test_bad_reasons(secure, reason) -> None:
    response = secure.post(secure.body(reason=reason))
    assert response.status_code == 422, response.text
    secure.assert_nothing_issued()


@pytest.mark.parametrize("escaped", ["\\ud800", "\\udfff", "\\udc00\\ud800"])
def test_lone_surrogates(secure, escaped) -> None:
    body = json.dumps(secure.body(reason="INC-12 REPLACE here")).replace("REPLACE", escaped)
    response = secure.client.post(
        "/v1/access-requests",
        content=body.encode(),
        headers={
            "Authorization": f"Bearer {secure.dev_token()}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 422, response.text
    secure.assert_nothing_issued()


def test_invalid_utf8_in_body(secure) -> None:
    raw = json.dumps(secure.body()).encode().replace(b"latency", b"lat\xff\xfe")
    response = secure.client.post(
        "/v1/access-requests",
        content=raw,
        headers={
            "Authorization": f"Bearer {secure.dev_token()}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 400
    secure.assert_nothing_issued()


def test_exactly_1024_code_points_is_fine(secure) -> None:
    reason = "INC-12 " + "é" * 1017
    assert len(reason) == 1024
    assert secure.post(secure.body(reason=reason)).status_code == 201


HOSTILE = "debug INC-123 \x1b[31mred\x1b[0m \u202eevil\u202c done"


def test_ansi_and_rtl_are_stored_verbatim_and_shown_escaped(secure, tmp_path) -> None:
    response = secure.post(secure.body(reason=HOSTILE))
    assert response.status_code == 201
    with secure.components.engine.connect() as conn:
        records = list(audit_store.iter_records(conn))
    assert records[-1]["reason"] == HOSTILE  # verbatim in the chain
    export = tmp_path / "audit.jsonl"
    export.write_text("".join(json.dumps(r) + "\n" for r in records))
    shown = subprocess.run(
        [sys.executable, "-m", "audit.cli", "show", str(export)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "\x1b" not in shown and "\u202e" not in shown
    assert "\\x1b[31mred" in shown and "\\u202e" in shown


def test_piu_shows_hostile_reason_escaped(secure, tmp_path) -> None:
    secure.post(secure.body(reason=HOSTILE))
    listing = secure.client.get(
        "/v1/access-requests", headers={"Authorization": f"Bearer {secure.dev_token()}"}
    ).json()
    from piu.render import escape  # the same escaping piu uses for every server string

    shown = escape(listing["items"][0]["reason"])
    assert "\x1b" not in shown and "\u202e" not in shown
    assert os.linesep not in shown
