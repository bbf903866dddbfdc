"""list-access, whoami and revoke against the fake Even."""

from __future__ import annotations

import json

from piu_fakes import REQUEST_ID, Piu

ITEM = {
    "id": REQUEST_ID,
    "status": "GRANTED",
    "username": "alice",
    "login": "alice",
    "hostname": "db-1.prod.example.org",
    "mode": "certificate",
    "reason": "debug INC-1 \x1b[2J\u202egnp.exe\tend\\",
    "serial": 42,
    "valid_before": "2030-01-01T01:00:00Z",
    "created": "2030-01-01T00:00:00Z",
}


def test_list_text_escapes_control_and_bidi_characters(run: Piu) -> None:
    run.fake.list_items = [ITEM]
    result = run("list-access")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    assert r"debug INC-1 \x1b[2J\u202egnp.exe\x09end\\" in result.stdout
    assert "alice@db-1.prod.example.org" in result.stdout


def test_list_tsv_keeps_one_line_per_item(run: Piu) -> None:
    run.fake.list_items = [ITEM, {**ITEM, "reason": "a\nb", "serial": None}]
    result = run("list-access", "-o", "tsv")
    lines = result.stdout.rstrip("\n").split("\n")
    assert len(lines) == 3
    assert lines[0].split("\t")[0] == "id"
    assert all(len(line.split("\t")) == 10 for line in lines)
    assert lines[2].split("\t")[-1] == r"a\x0ab"
    assert lines[2].split("\t")[6] == ""


def test_list_json_is_the_page_with_ascii_escapes(run: Piu) -> None:
    run.fake.list_items = [ITEM]
    result = run("list-access", "-o", "json")
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    assert json.loads(result.stdout) == {"items": [ITEM], "next": None}


def test_list_filters_become_query_parameters(run: Piu) -> None:
    assert run("list-access", "--status", "granted", "--hostname", "h.example.org", "--limit", "5")
    params = dict(run.fake.requests[-1].url.params)
    assert params == {"status": "GRANTED", "hostname": "h.example.org", "limit": "5"}


def test_list_empty(run: Piu) -> None:
    result = run("list-access")
    assert result.exit_code == 0
    assert "no access requests" in result.stdout


def test_whoami_text_and_json(run: Piu) -> None:
    result = run("whoami")
    assert result.exit_code == 0, result.output
    assert "username: alice" in result.stdout
    assert "sre-prod: {username}, deploy on *.prod.example.org" in result.stdout
    assert json.loads(run("whoami", "-o", "json").stdout)["username"] == "alice"


def test_revoke_posts_to_the_request(run: Piu) -> None:
    result = run("revoke", REQUEST_ID, "--reason", "done")
    assert result.exit_code == 0, result.output
    request = run.fake.requests[-1]
    assert (request.method, request.url.path) == (
        "POST",
        f"/v1/access-requests/{REQUEST_ID}/revoke",
    )
    assert json.loads(request.content) == {"reason": "done"}
    assert f"Revoked {REQUEST_ID} (status REVOKED)" in result.stdout


def test_revoke_unknown_is_1(run: Piu) -> None:
    result = run("revoke", "01HZZZZZZZZZZZZZZZZZZZZZZZ")
    assert result.exit_code == 1
    assert "404" in result.stderr
