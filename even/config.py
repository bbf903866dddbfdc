"""Settings: `even.yaml` under `EVEN_*` environment variables (SPEC §10).

Read once at the edge (`even serve`, the CLI) and passed down as a value. Relative paths in the
file, SQLite URLs included, resolve against the file's own directory, so a config directory can
be moved as a whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from even.errors import ConfigError
from even.issuer_urls import InsecureUrl, check_key_url
from even.notify.settings import (
    InvalidSecret,
    NotificationSettings,
    check_subscriptions,
    read_secret,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IssuerSettings(_Strict):
    issuer: str
    audience: str
    username_claim: str
    groups_claim: str = "groups"
    username_prefix: str = ""
    token_typ: Literal["at+jwt", "any"] = "at+jwt"
    # Pinned by the server, never taken from the token header.
    algorithms: list[Literal["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]] = [
        "RS256",
        "ES256",
    ]
    jwks_refetch_cooldown_seconds: int = Field(default=60, ge=1)
    jwks_max_staleness_seconds: int = Field(default=86400, ge=60)

    @field_validator("issuer")
    @classmethod
    def _https_or_loopback(cls, value: str) -> str:
        # Parsed as a URL: `http://localhost.attacker.net` is not loopback (SPEC §2).
        try:
            return check_key_url(value, what="issuer")
        except InsecureUrl as exc:
            raise ValueError(str(exc)) from exc


def _https_or_loopback_url(value: str) -> str:
    if not (
        value.startswith("https://")
        or value.startswith("http://127.0.0.1")
        or value.startswith("http://localhost")
        or value.startswith("http://[::1]")
    ):
        raise ValueError("issuer must be https (plain http only on loopback)")
    return value


class ConsoleSettings(_Strict):
    """The web console's sign-in (OIDC authorization code + PKCE). Absent: no console.

    `issuer` must also be one of `identity.issuers`: the console's access token is checked by
    the same verifier as the API's, so it must be a token for Even's audience.
    """

    issuer: str
    client_id: str = Field(min_length=1, max_length=255)
    # Absent: a public client (PKCE alone); present: client_secret_basic at the token endpoint.
    client_secret_file: str | None = None
    # RFC 8707 resource indicator sent with the authorization and token requests, for IdPs
    # that pick the access token's audience from it.
    resource: str | None = None
    scopes: list[str] = ["openid"]
    # A session never outlives its token, nor this.
    session_max_hours: int = Field(default=12, ge=1, le=24)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return _https_or_loopback_url(value)

    @field_validator("scopes")
    @classmethod
    def _openid(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("scopes must include openid (the ID token carries the nonce)")
        return value


class IdentitySettings(_Strict):
    issuers: list[IssuerSettings] = []
    dev_issuer: bool = False
    dev_issuer_key: str = "dev_issuer_key"
    leeway_seconds: int = Field(default=60, ge=0, le=300)


class CaSettings(_Strict):
    keys: list[str] = ["user_ca"]


class AuditSettings(_Strict):
    signing_key: str = "audit_key"
    origin: str | None = None
    checkpoint_every_records: int = Field(default=1000, ge=1)
    checkpoint_every_seconds: int = Field(default=60, ge=1)


class BastionSettings(_Strict):
    name: str
    address: str
    hosts: list[str] = []


class PushSettings(_Strict):
    user: str = "granting-service"
    private_key: str = "push_key"
    known_hosts: str = "known_hosts"
    # The whole push of one grant (every host) must finish within this; a `push_started`
    # older than it without an outcome is the reconciler's (SPEC §5).
    timeout_seconds: int = Field(default=30, ge=2, le=600)
    connect_timeout_seconds: int = Field(default=5, ge=1, le=60)
    # A session to a host behind a bastion is kept for the next push until idle this long
    # (even.push.hops); 0 opens a new one for every command.
    hop_idle_seconds: int = Field(default=60, ge=0, le=3600)
    # Where to connect for a name Even reaches directly (a bastion, or a host without one),
    # as "host:port"; the name itself stays the known_hosts key. Hosts behind a bastion are
    # always reached by name, as the bastion's permitopen and resolver see them.
    host_addresses: dict[str, str] = {}

    @field_validator("host_addresses")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for address in value.values():
            parse_address(address)
        return value


def parse_address(value: str, default_port: int = 22) -> tuple[str, int]:
    """`host[:port]` or `[v6]:port` → (host, port); ValueError if it is neither."""
    host, port = value, default_port
    if value.startswith("["):
        inner, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"address {value!r}: expected [IPv6]:PORT")
        host, rest = inner, rest[1:]
        port = int(rest) if rest.isdigit() else (default_port if not rest else -1)
    elif value.count(":") == 1:
        host, text = value.split(":")
        port = int(text) if text.isdigit() else -1
    bare_v6 = ":" in host and not value.startswith("[")
    if not host or bare_v6 or not 1 <= port <= 65535 or any(c.isspace() or c in "/@" for c in host):
        raise ValueError(f"address {value!r}: expected HOST:PORT")
    return host, port


class RateLimitSettings(_Strict):
    per_user_per_second: float = 20
    burst: int = 40
    failed_auth_per_ip_per_second: float = 10


class Settings(BaseSettings):
    """Everything `even serve` needs; paths already absolute once loaded via `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="EVEN_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    base_url: str = "http://127.0.0.1:8080"
    database_url: str = "sqlite:///even.db"
    database_admin_url: str | None = None
    policy_file: str = "policy.yaml"
    identity: IdentitySettings = IdentitySettings()
    ca: CaSettings = CaSettings()
    audit: AuditSettings = AuditSettings()
    bastions: list[BastionSettings] = []
    push: PushSettings = PushSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    trusted_proxies: list[str] = []
    notifications: list[NotificationSettings] = []
    console: ConsoleSettings | None = None
    docs_enabled: bool = False
    # Answer POST /v1/access-requests without FastAPI's routing (even.api.grant_lane): the
    # same answers (a test compares them), ~0.3 ms less CPU per grant; off takes the route.
    grant_lane: bool = True
    # Log lines: classic text, or one JSON object per line (even.logs).
    log_format: Literal["text", "json"] = "text"
    config_dir: str = "."

    @field_validator("notifications")
    @classmethod
    def _unique_notifications(cls, value: list[NotificationSettings]) -> list[NotificationSettings]:
        check_subscriptions(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment over the YAML file (passed as init values), as SPEC §10 promises.
        return (env_settings, init_settings)

    def path(self, value: str) -> Path:
        """A path from the config, resolved against the config file's directory."""
        candidate = Path(value)
        return candidate if candidate.is_absolute() else Path(self.config_dir) / candidate

    @property
    def resolved_database_url(self) -> str:
        return resolve_sqlite_url(self.database_url, Path(self.config_dir))

    @property
    def dev_issuer_url(self) -> str:
        return self.base_url.rstrip("/") + "/dev-issuer"

    @property
    def audit_origin(self) -> str:
        return self.audit.origin or self.base_url


def resolve_sqlite_url(url: str, base: Path) -> str:
    """`sqlite:///rel.db` → absolute against `base`; other URLs unchanged."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:":
            return prefix + str((base / rest).resolve())
    return url


def load_settings(config_file: Path | str, **overrides: Any) -> Settings:
    """Read `even.yaml`, apply `EVEN_*` env, then explicit overrides (from CLI flags)."""
    path = Path(config_file).resolve()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    raw["config_dir"] = str(path.parent)
    try:
        settings = Settings(**raw)
        if overrides:
            settings = settings.model_copy(update=overrides)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    check_notification_secrets(settings)
    return settings


def check_notification_secrets(settings: Settings) -> None:
    """Every configured webhook secret file is readable and a valid key (at load, not at the
    first delivery, so a typo stops `even serve` instead of silently dropping notifications)."""
    for item in settings.notifications:
        if item.secret_file is None:
            continue
        try:
            read_secret(settings.path(item.secret_file))
        except InvalidSecret as exc:
            raise ConfigError(f"notification {item.name!r}: secret_file {exc}") from exc
