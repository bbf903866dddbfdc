"""Which hosts a push grant touches, in which order, as whom (pure: values in, values out).

Through a bastion (the rule's `bastion`, SPEC §3/§5), a grant is two host steps:
1. the bastion: the requester's own account there (`ssh -J USERNAME@BASTION`, as in
   certificate mode), a line that allows only the hop to the target (`--jump-to TARGET`);
2. the target, reached through the bastion: the granted login, with the rule's
   `source_addresses` as `--from`.
Without a bastion, only the target step, reached directly.

Each registered key gets its own managed line (odd takes one key per grant id), with ids
`grant_id(request_id, i)`. The plan is recorded in `access.push_started` (`details.push`), so
revoke, expiry and the reconciler undo exactly what was pushed, whatever the config says later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from even.push.commands import command_line, grant_argv, grant_id, revoke_argv

Role = Literal["bastion", "target"]


@dataclass(frozen=True)
class HostStep:
    host: str  # the bastion's name, or the target's hostname
    role: Role
    login: str
    via: str | None = None  # the bastion (by name) whose connection reaches this host
    jump_to: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "role": self.role,
            "login": self.login,
            "via": self.via,
            "jump_to": list(self.jump_to),
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class PushKey:
    key_type: str
    base64: str
    fingerprint: str


@dataclass(frozen=True)
class PushPlan:
    """What to write where; `steps` in push order (the bastion first, so the hop is warm)."""

    steps: tuple[HostStep, ...]
    grant_ids: tuple[str, ...]

    def grant_commands(
        self, keys: Sequence[PushKey], expires: datetime
    ) -> list[tuple[HostStep, str, str]]:
        """(step, grant id, command line) for every line to write, in order."""
        if len(keys) != len(self.grant_ids):
            raise ValueError("one grant id per key")
        return [
            (
                step,
                gid,
                command_line(
                    grant_argv(
                        grant_id=gid,
                        login=step.login,
                        expires=expires,
                        key_type=key.key_type,
                        key_base64=key.base64,
                        sources=step.sources,
                        jump_to=step.jump_to,
                    )
                ),
            )
            for step in self.steps
            for gid, key in zip(self.grant_ids, keys, strict=True)
        ]

    def revoke_commands(
        self, steps: Sequence[HostStep] | None = None, *, end_sessions: bool = False
    ) -> list[tuple[HostStep, str]]:
        """(step, command line) removing every line of this grant from `steps` (default all)."""
        return [
            (step, command_line(revoke_argv(grant_id=gid, login=step.login, end_sessions=end)))
            for step in (self.steps if steps is None else steps)
            for gid in self.grant_ids
            # Sessions end only on the target: on the bastion the login is the requester's
            # own account, which may have unrelated sessions.
            for end in [end_sessions and step.role == "target"]
        ]

    def as_json(self) -> dict[str, Any]:
        return {"steps": [s.as_json() for s in self.steps], "grant_ids": list(self.grant_ids)}

    @property
    def hosts(self) -> list[str]:
        return [step.host for step in self.steps]


def plan_push(
    *,
    request_id: str,
    username: str,
    login: str,
    hostname: str,
    bastion: str | None,
    sources: Sequence[str],
    key_count: int,
) -> PushPlan:
    grant_ids = tuple(grant_id(request_id, i) for i in range(key_count))
    if bastion is None:
        return PushPlan((HostStep(hostname, "target", login, sources=tuple(sources)),), grant_ids)
    return PushPlan(
        (
            HostStep(bastion, "bastion", username, jump_to=(hostname,)),
            HostStep(hostname, "target", login, via=bastion, sources=tuple(sources)),
        ),
        grant_ids,
    )


def plan_from_json(data: Any) -> PushPlan:
    """The plan recorded in `access.push_started`; ValueError if it is not one."""
    try:
        steps = tuple(
            HostStep(
                host=str(s["host"]),
                role="bastion" if s["role"] == "bastion" else "target",
                login=str(s["login"]),
                via=None if s.get("via") is None else str(s["via"]),
                jump_to=tuple(str(h) for h in s.get("jump_to", [])),
                sources=tuple(str(c) for c in s.get("sources", [])),
            )
            for s in data["steps"]
        )
        grant_ids = tuple(str(g) for g in data["grant_ids"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a push plan: {exc}") from exc
    if not steps or not grant_ids:
        raise ValueError("not a push plan: no steps or no grant ids")
    return PushPlan(steps, grant_ids)
