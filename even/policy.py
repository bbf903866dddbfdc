"""Access policy (SPEC §3): YAML validated at load, evaluated in file order, default deny.

Pure: no I/O beyond `load_policy` reading the file, no clock. The first rule whose subjects,
hosts, login and mode all match decides; the reason and lifetime are then checked against that
rule only. A denial without a matching rule names no rule, so probing reveals nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from even.errors import (
    ConfigError,
    LifetimeTooLong,
    LoginNotAllowed,
    NoMatchingRule,
    ReasonRejected,
)
from even.names import is_bastion_name, is_login
from even.policy_approval import (
    ApprovalRule,
    ApproverCheck,
    EmergencyRule,
    check_rule,
    emergency_max_lifetime,
)

USERNAME_PLACEHOLDER = "{username}"
# Extensions OpenSSH knows; anything else is a typo that would silently grant nothing.
KNOWN_EXTENSIONS = frozenset(
    {
        "permit-X11-forwarding",
        "permit-agent-forwarding",
        "permit-port-forwarding",
        "permit-pty",
        "permit-user-rc",
        "no-touch-required",
    }
)
_HOST_PATTERN_RE = re.compile(r"[a-z0-9.*?-]{1,253}")

Mode = Literal["certificate", "push"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReasonRule(_Strict):
    min_length: int = Field(default=10, ge=1, le=1024)
    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"reason pattern does not compile: {exc}") from exc
        return value


class Subjects(_Strict):
    users: list[str] = []
    groups: list[str] = []


class Defaults(_Strict):
    max_lifetime_minutes: int = Field(default=60, ge=1, le=24 * 60)
    reason: ReasonRule = ReasonRule()


class Role(_Strict):
    groups: list[str] = []
    users: list[str] = []


class Rule(_Strict):
    name: str = Field(min_length=1, max_length=64)
    subjects: Subjects
    hosts: list[str] = Field(min_length=1)
    logins: list[str] = Field(min_length=1)
    modes: list[Mode] = ["certificate"]
    max_lifetime_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    reason: ReasonRule | None = None
    bastion: str | None = None
    principals: Literal["host-bound", "login"] = "host-bound"
    extensions: list[str] = ["permit-pty"]
    source_addresses: list[str] = []
    approval: ApprovalRule | None = None  # SPEC §11: approvers before anything is issued
    emergency: EmergencyRule | None = None  # SPEC §11: break-glass, reviewed afterwards

    @property
    def needs_approval(self) -> bool:
        return self.approval is not None

    @property
    def emergency_allowed(self) -> bool:
        return self.emergency is not None and self.emergency.allowed

    @field_validator("subjects")
    @classmethod
    def _some_subject(cls, value: Subjects) -> Subjects:
        if not value.users and not value.groups:
            raise ValueError("a rule needs at least one user or group")
        return value

    @field_validator("hosts")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            # fnmatch would also honour [...] classes; SPEC allows only * and ?.
            if not _HOST_PATTERN_RE.fullmatch(pattern):
                raise ValueError(f"host pattern {pattern!r}: lowercase letters, digits, . - * ?")
        return value

    @field_validator("logins")
    @classmethod
    def _logins(cls, value: list[str]) -> list[str]:
        for login in value:
            if login != USERNAME_PLACEHOLDER and not is_login(login):
                raise ValueError(f"login {login!r} is not a valid login")
        return value

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - KNOWN_EXTENSIONS)
        if unknown:
            raise ValueError(f"unknown certificate extensions: {', '.join(unknown)}")
        if len(set(value)) != len(value):
            raise ValueError("duplicate extensions")
        return value

    @field_validator("source_addresses")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"source address {cidr!r}: {exc}") from exc
        return value

    @field_validator("bastion")
    @classmethod
    def _bastion(cls, value: str | None) -> str | None:
        if value is not None and not is_bastion_name(value):
            raise ValueError(f"bastion name {value!r} is not valid")
        return value


class PolicyDocument(_Strict):
    defaults: Defaults = Defaults()
    roles: dict[str, Role] = {}
    rules: list[Rule] = []

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyDocument:
        names = [rule.name for rule in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("rule names must be unique")
        return self


@dataclass(frozen=True)
class Subject:
    username: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """What the deciding rule allows for one request."""

    rule: Rule
    lifetime_minutes: int


@dataclass(frozen=True)
class Policy:
    document: PolicyDocument
    sha256: str

    def roles_for(self, subject: Subject) -> list[str]:
        return sorted(
            name
            for name, role in self.document.roles.items()
            if subject.username in role.users or set(subject.groups) & set(role.groups)
        )

    def rules_for(self, subject: Subject) -> list[Rule]:
        return [rule for rule in self.document.rules if _subject_matches(rule, subject)]

    def decide(self, subject: Subject, *, hostname: str, login: str, mode: Mode) -> Rule:
        """The deciding rule, or NoMatchingRule / LoginNotAllowed (neither names a rule)."""
        login_was_the_problem = False
        for rule in self.rules_for(subject):
            if mode not in rule.modes or not _host_matches(rule, hostname):
                continue
            if login in _expand_logins(rule, subject):
                return rule
            login_was_the_problem = True
        if login_was_the_problem:
            raise LoginNotAllowed(f"login {login!r} is not allowed on {hostname}")
        raise NoMatchingRule("no policy rule allows this request")

    def check(self, rule: Rule, *, reason: str, lifetime_minutes: int | None) -> Grant:
        """Apply the deciding rule's reason and lifetime conditions."""
        reason_rule = rule.reason or self.document.defaults.reason
        if len(reason.strip()) < reason_rule.min_length:
            raise ReasonRejected(
                f"rule {rule.name}: the reason needs at least {reason_rule.min_length} characters",
                rule=rule.name,
            )
        if reason_rule.pattern and not re.search(reason_rule.pattern, reason):
            raise ReasonRejected(
                f"rule {rule.name}: the reason must match {reason_rule.pattern!r} "
                "(for example a ticket id)",
                rule=rule.name,
            )
        maximum = self.max_lifetime(rule)
        lifetime = maximum if lifetime_minutes is None else lifetime_minutes
        if lifetime > maximum:
            raise LifetimeTooLong(
                f"rule {rule.name}: lifetime {lifetime} min exceeds the maximum of {maximum} min",
                rule=rule.name,
            )
        return Grant(rule=rule, lifetime_minutes=lifetime)

    def max_lifetime(self, rule: Rule) -> int:
        return rule.max_lifetime_minutes or self.document.defaults.max_lifetime_minutes

    def logins_for(self, rule: Rule, subject: Subject) -> list[str]:
        return _expand_logins(rule, subject)

    def emergency_max_lifetime(self, rule: Rule) -> int:
        """Break-glass lifetime cap (and default) under `rule` (≤ its ordinary maximum)."""
        return emergency_max_lifetime(rule, self.max_lifetime(rule))

    def is_approver(self, rule: Rule, subject: Subject, *, requester: str) -> bool:
        """May `subject` approve a request by `requester` under `rule`? Never their own."""
        if rule.approval is None:
            return False
        return ApproverCheck.of(rule.approval).is_approver(
            subject.username, subject.groups, requester=requester
        )

    def rules_approved_by(self, subject: Subject) -> list[str]:
        """Names of the rules whose approvers list `subject` (for GET /v1/approvals and
        /v1/reviews; the requester's own requests are left out by the caller)."""
        return [
            rule.name
            for rule in self.document.rules
            if rule.approval is not None
            and ApproverCheck.of(rule.approval).is_listed(subject.username, subject.groups)
        ]

    def rule_named(self, name: str) -> Rule | None:
        """The rule called `name` in this policy (a pending request names its rule)."""
        return next((rule for rule in self.document.rules if rule.name == name), None)


def _subject_matches(rule: Rule, subject: Subject) -> bool:
    return subject.username in rule.subjects.users or bool(
        set(subject.groups) & set(rule.subjects.groups)
    )


def _host_matches(rule: Rule, hostname: str) -> bool:
    return any(fnmatchcase(hostname, pattern) for pattern in rule.hosts)


def _expand_logins(rule: Rule, subject: Subject) -> list[str]:
    return [subject.username if x == USERNAME_PLACEHOLDER else x for x in rule.logins]


def parse_policy(
    data: bytes, *, bastions: frozenset[str] = frozenset(), push_user: str | None = None
) -> Policy:
    """Validate policy bytes; raise ConfigError with every problem spelled out."""
    try:
        raw = yaml.safe_load(data.decode("utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"policy is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("policy: the top level must be a mapping")
    try:
        document = PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"policy is invalid: {exc}") from exc
    for rule in document.rules:
        if rule.bastion is not None and rule.bastion not in bastions:
            raise ConfigError(
                f"policy rule {rule.name}: bastion {rule.bastion!r} is not configured"
            )
        if push_user is not None and push_user in rule.logins:
            raise ConfigError(f"policy rule {rule.name}: the push user may not be a login")
        rule_max = rule.max_lifetime_minutes or document.defaults.max_lifetime_minutes
        problems = check_rule(rule, rule_max)
        if problems:
            raise ConfigError("; ".join(problems))
    return Policy(document=document, sha256=hashlib.sha256(data).hexdigest())


def load_policy(
    path: Path, *, bastions: frozenset[str] = frozenset(), push_user: str | None = None
) -> Policy:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read policy {path}: {exc.strerror}") from exc
    return parse_policy(data, bastions=bastions, push_user=push_user)
