"""The grant lane answers exactly as the FastAPI route would, and takes only its own requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from even.api import grant_lane
from even.api.app import create_app
from even.api.grant_lane import GrantLane
from even.config import load_settings
from even.store.db import make_engine
from even.store.schema import upgrade
from tests.conftest import APPROVAL_POLICY, make_even_dir
from tests.even.conftest import auth

PATH = "/v1/access-requests"


@pytest.fixture
def even_config(tmp_path: Path) -> Path:
    """The test policy with rules that need approvers (202) and allow break-glass."""
    config = make_even_dir(tmp_path / "even", APPROVAL_POLICY)
    upgrade(make_engine(load_settings(config).resolved_database_url))
    return config


# Differ between any two grants: compared by presence only.
_PER_GRANT = {"id", "serial", "key_id", "certificate", "receipt"}


@pytest.fixture
def both(settings, components) -> Iterator[tuple[TestClient, TestClient]]:
    """(with the lane, FastAPI's route alone), on the same components."""
    route_only = create_app(settings, components=components)
    route_only.user_middleware = [m for m in route_only.user_middleware if m.cls is not GrantLane]
    with (
        TestClient(create_app(settings, components=components)) as lane,
        TestClient(route_only) as route,
    ):
        yield lane, route


def _cases(components, clock, user_key: str) -> list[tuple[str, dict[str, str], Any]]:
    bearer = auth(components, clock)
    json_type = {**bearer, "Content-Type": "application/json"}
    body = {"hostname": "db-1.prod.even.test", "reason": "debug INC-123", "public_key": user_key}

    def encoded(value: dict[str, Any]) -> bytes:
        return json.dumps(value).encode()

    ca_line = components.ca_registry.configured_active.public_line
    return [
        ("grant", json_type, encoded(body)),
        ("grant with a bastion login", json_type, encoded({**body, "login": "deploy"})),
        ("no token", {"Content-Type": "application/json"}, encoded(body)),
        (
            "bad token",
            {"Authorization": "Bearer nope", "Content-Type": "application/json"},
            encoded(body),
        ),
        (
            "basic auth",
            {"Authorization": "Basic eDp5", "Content-Type": "application/json"},
            encoded(body),
        ),
        ("no token and a bad body", {"Content-Type": "text/plain"}, b"{"),
        ("form body", {**bearer, "Content-Type": "application/x-www-form-urlencoded"}, b"a=b"),
        ("malformed JSON", json_type, b"{"),
        ("not UTF-8", json_type, b"\xff\xfe"),
        ("duplicate key", json_type, b'{"hostname": "a", "hostname": "b"}'),
        ("too deep", json_type, b"[[[[[[[[[[[[]]]]]]]]]]]]"),
        ("too large", json_type, b"x" * 70000),
        # No Content-Length: the limit cuts the stream inside the lane (BodyTooLarge).
        ("too large, chunked", json_type, [b"x" * 40000, b"x" * 40000]),
        ("unknown field", json_type, encoded({**body, "extra": 1})),
        ("IP literal", json_type, encoded({**body, "hostname": "127.0.0.1"})),
        ("reason with NUL", json_type, encoded({**body, "reason": "INC-1 \x00"})),
        ("lifetime as text", json_type, encoded({**body, "lifetime_minutes": "30"})),
        ("too long for the policy", json_type, encoded({**body, "lifetime_minutes": 24 * 60})),
        ("denied host", json_type, encoded({**body, "hostname": "elsewhere.example.org"})),
        ("the CA's own key", json_type, encoded({**body, "public_key": ca_line})),
        ("push mode", json_type, encoded({**body, "mode": "push"})),
        ("needs approval", json_type, encoded({**body, "hostname": "db-1.approve.even.test"})),
        (
            "break-glass",
            json_type,
            encoded({**body, "hostname": "db-1.approve.even.test", "emergency": True}),
        ),
        (
            "break-glass not allowed",
            json_type,
            encoded({**body, "hostname": "vault-1.approve.even.test", "emergency": True}),
        ),
    ]


def _body(content: Any) -> Any:
    """A list of chunks is sent chunked (no Content-Length), afresh for every request."""
    return iter(content) if isinstance(content, list) else content


def _reaches_the_service(case: str) -> bool:
    """Cases that pass authentication and body parsing (the rest never call grant_answer)."""
    return case in {
        "grant",
        "grant with a bastion login",
        "IP literal",
        "too long for the policy",
        "denied host",
        "the CA's own key",
        "push mode",
        "needs approval",
        "break-glass",
        "break-glass not allowed",
    }


def _comparable(response) -> tuple[Any, ...]:
    headers = {
        name: response.headers.get(name)
        for name in (
            "content-type",
            "www-authenticate",
            "retry-after",
            "cache-control",
            "x-content-type-options",
            "content-security-policy",
        )
    }
    body = response.json()
    if response.status_code in (201, 202):
        body = {k: (k in body) if k in _PER_GRANT else v for k, v in body.items()}
    return response.status_code, headers, body


def test_the_lane_answers_as_the_route_does(both, components, clock, user_key, monkeypatch) -> None:
    lane, route = both
    through_lane: list[str] = []
    answer = grant_lane.grant_answer

    async def counted(*args: Any) -> bytes:
        through_lane.append("grant")
        return await answer(*args)

    monkeypatch.setattr(grant_lane, "grant_answer", counted)
    statuses = set()
    for name, headers, content in _cases(components, clock, user_key):
        from_lane = lane.post(PATH, headers=headers, content=_body(content))
        from_route = route.post(PATH, headers=headers, content=_body(content))
        assert _comparable(from_lane) == _comparable(from_route), name
        statuses.add(from_lane.status_code)
    # Only the lane's client went through the lane: the route's answers are FastAPI's own.
    assert len(through_lane) == sum(
        1 for name, *_ in _cases(components, clock, user_key) if _reaches_the_service(name)
    )
    # Grants, and every kind of refusal, were compared.
    assert statuses == {201, 202, 400, 401, 403, 413, 415, 422}


def test_the_lane_takes_only_grants_without_an_idempotency_key(components) -> None:
    passed_on: list[tuple[str, str]] = []

    async def inner(scope, receive, send) -> None:
        passed_on.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    client = TestClient(GrantLane(inner, components=components))  # no lifespan: no `with`
    # Answered by the lane itself (no token: its 401), never passed on.
    assert client.post(PATH, json={}).status_code == 401
    # Everything else goes on to FastAPI.
    assert client.post(PATH, json={}, headers={"Idempotency-Key": "k1"}).status_code == 204
    assert client.get(PATH).status_code == 204
    assert client.post(PATH + "/", json={}).status_code == 204
    assert client.post(PATH + "/x/revoke", json={}).status_code == 204
    assert passed_on == [
        ("POST", PATH),
        ("GET", PATH),
        ("POST", PATH + "/"),
        ("POST", PATH + "/x/revoke"),
    ]


def test_the_lane_is_a_setting_and_off_leaves_the_route(settings, components, clock, user_key):
    """`grant_lane: false` builds the app without the lane; the route answers the same."""
    plain = create_app(settings.model_copy(update={"grant_lane": False}), components=components)
    assert all(m.cls is not GrantLane for m in plain.user_middleware)
    assert any(
        m.cls is GrantLane for m in create_app(settings, components=components).user_middleware
    )
    body = {"hostname": "db-1.prod.even.test", "reason": "debug INC-123", "public_key": user_key}
    with TestClient(plain) as client:
        answer = client.post(PATH, headers=auth(components, clock), json=body)
    assert answer.status_code == 201 and answer.json()["status"] == "GRANTED"
