"""What one sshd log line says: its time, host and program, and the login an `Accepted` names.

Pure: strings in, values out (no files, no clock; the year of an RFC 3164 stamp is decided
from a reference time the caller passes).

The message formats are OpenSSH's own. `auth_log` (auth.c) writes

    Accepted METHOD[/SUBMETHOD] for USER from ADDRESS port PORT ssh2[: INFO]

and INFO, for a public key (`format_method_key`), is `KEYTYPE FINGERPRINT`, or for a
certificate `KEYTYPE-CERT FINGERPRINT ID KEY_ID (serial N) CA CATYPE CA_FINGERPRINT` (before
OpenSSH 8.x the certificate's own fingerprint is missing: `KEYTYPE-CERT ID …`), either followed
by `, EXTRA` when the method adds details. Only `Accepted` counts: `Failed`, `Partial` and
`Postponed` lines are not logins. The key ID is free text chosen by whoever signed the
certificate, so it is matched greedily up to the last `(serial N) CA X Y` and the user, which
sshd has already checked against the password database, non-greedily.

Line framings: syslog files in RFC 3164 form (`Dec  6 15:24:31 host sshd[123]: …`, the host may
be missing), with an ISO 8601 / RFC 3339 stamp (rsyslog's high-precision format), or RFC 5424
(`<38>1 2026-12-06T15:24:31.5Z host sshd 123 - - …`); and `journalctl -o json` entries
(`__REALTIME_TIMESTAMP`, `_HOSTNAME`, `SYSLOG_IDENTIFIER`, `MESSAGE`). A line from any other
program is not a login, whatever it says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

SSHD_PROGRAMS = frozenset(("sshd", "sshd-session", "sshd-auth"))
"""Program names sshd logs under (OpenSSH 9.8 split the per-connection work out)."""

# Leeway for RFC 3164 year inference: a stamp may be this much after the reference (clock
# skew between hosts, or a file copied just before its last line was written).
YEAR_LEEWAY = timedelta(days=1)

_LOGIN_PREFIX = re.compile(r"Accepted \S+ for ")
_ACCEPTED = re.compile(r"Accepted (\S+) for (.+?) from (\S+) port (\d+) ssh2(?:: (.*))?\Z")
_CERT = re.compile(
    r"(\S+-CERT)(?: (?!ID )(\S+))? ID (.*) \(serial (\d+)\) CA (\S+) (\S+?)(?:, .*)?\Z"
)
_KEY = re.compile(r"(\S+) (\S+?)(?:, .*)?\Z")
_TAG = re.compile(r"([^\s\[\]:]+)(?:\[(\d+)\])?: (.*)\Z")
_RFC3164 = re.compile(r"(?:<\d{1,3}>)?([A-Z][a-z]{2}) ([ \d]?\d) (\d\d):(\d\d):(\d\d) (.*)\Z")
_ISO = re.compile(
    r"(?:<\d{1,3}>)?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (.*)\Z"
)
_RFC5424 = re.compile(
    r"<\d{1,3}>1 (\S+) (\S+) (\S+) (\S+) \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(.*)\Z"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}


class UnreadableLine(ValueError):
    """A line that mentions an acceptance but whose framing or message cannot be read."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """The login an `Accepted` message names (fields as sshd wrote them)."""

    method: str
    user: str
    source: str
    port: int
    key_type: str | None = None
    fingerprint: str | None = None
    key_id: str | None = None
    serial: int | None = None
    ca_key_type: str | None = None
    ca_fingerprint: str | None = None

    @property
    def is_certificate(self) -> bool:
        return self.key_id is not None


@dataclass(frozen=True, slots=True)
class Framed:
    """A log line's framing: when (epoch seconds, and how coarse), where, who, what."""

    time: float
    precision: float  # the stamp says "time <= t < time + precision"
    host: str | None
    program: str
    message: str


def parse_accepted(message: str) -> Accepted | None:
    """The login in an sshd message, None if it is not an `Accepted` line.

    At LogLevel VERBOSE sshd also logs `Accepted key …` and `Accepted certificate ID …` while
    it checks a key; those are steps, not logins. Raises UnreadableLine for an
    `Accepted METHOD for …` message whose shape is not OpenSSH's.
    """
    found = _ACCEPTED.match(message)
    if found is None:
        if _LOGIN_PREFIX.match(message):
            raise UnreadableLine("an Accepted message in an unknown format")
        return None
    method, user, source, port, info = found.groups()
    if info is None:
        return Accepted(method, user, source, int(port))
    cert = _CERT.match(info)
    if cert is not None:
        key_type, fingerprint, key_id, serial, ca_type, ca_fingerprint = cert.groups()
        return Accepted(
            method,
            user,
            source,
            int(port),
            key_type=key_type,
            fingerprint=fingerprint,
            key_id=key_id,
            serial=int(serial),
            ca_key_type=ca_type,
            ca_fingerprint=ca_fingerprint,
        )
    key = _KEY.match(info)
    if key is None or key.group(1).endswith("-CERT"):
        raise UnreadableLine("an Accepted message with an unknown key description")
    return Accepted(
        method, user, source, int(port), key_type=key.group(1), fingerprint=key.group(2)
    )


def frame_syslog(line: str, reference: datetime, zone: tzinfo) -> Framed | None:
    """The framing of one syslog line; None if it does not look like syslog at all.

    RFC 3164 stamps have no year and no zone: they are read in `zone`, in the latest year
    that puts them no later than `reference` + YEAR_LEEWAY (a log is read after it was
    written, and a file that crosses New Year keeps December in the year before).
    """
    first = line[:1]
    found = _RFC5424.match(line) if first == "<" else None
    if found is not None:
        stamp, host, app, _procid, message = found.groups()
        when, precision = _iso_time(stamp)
        return Framed(when, precision, _nil(host), app, message)
    found = _ISO.match(line) if first == "<" or first.isdigit() else None
    if found is not None:
        stamp, rest = found.groups()
        when, precision = _iso_time(stamp)
        return _with_tag(when, precision, rest)
    found = _RFC3164.match(line)
    if found is None:
        return None
    month_name, day, hour, minute, second, rest = found.groups()
    month = _MONTHS.get(month_name)
    if month is None:
        return None
    when = _place_year(month, int(day), int(hour), int(minute), int(second), reference, zone)
    return _with_tag(when, 1.0, rest)


def frame_journal(entry: Any) -> Framed | None:
    """The framing of one `journalctl -o json` entry (a parsed JSON object)."""
    if not isinstance(entry, dict):
        raise UnreadableLine("a journal line that is not a JSON object")
    message = _journal_text(entry.get("MESSAGE"))
    program = _journal_text(entry.get("SYSLOG_IDENTIFIER")) or _journal_text(entry.get("_COMM"))
    if message is None or program is None:
        return None
    stamp = entry.get("__REALTIME_TIMESTAMP")
    if not isinstance(stamp, str) or not stamp.isdigit():
        raise UnreadableLine("a journal entry without __REALTIME_TIMESTAMP")
    host = _journal_text(entry.get("_HOSTNAME"))
    return Framed(int(stamp) / 1_000_000, 1e-6, host or None, program, message)


def is_sshd(program: str) -> bool:
    return program.rsplit("/", 1)[-1] in SSHD_PROGRAMS


def _with_tag(when: float, precision: float, rest: str) -> Framed:
    """`HOST TAG[PID]: MSG`, or `TAG[PID]: MSG` where the writer left the host out."""
    host, _, after = rest.partition(" ")
    if host.endswith(":"):  # the first word is the tag (a host name never ends with ':')
        host, after = "", rest
    tagged = _TAG.match(after)
    if tagged is None:
        raise UnreadableLine("a syslog line without a program tag")
    return Framed(when, precision, host or None, tagged.group(1), tagged.group(3))


def _iso_time(stamp: str) -> tuple[float, float]:
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise UnreadableLine(f"a bad timestamp ({exc})") from None
    if moment.tzinfo is None:
        raise UnreadableLine("a timestamp without a zone")
    fraction = stamp.partition(".")[2]
    digits = len(fraction) - len(fraction.lstrip("0123456789"))
    return moment.timestamp(), 10.0 ** -min(digits, 6) if digits else 1.0


def _place_year(
    month: int, day: int, hour: int, minute: int, second: int, reference: datetime, zone: tzinfo
) -> float:
    """Epoch seconds of the stamp, in the latest year not after `reference` + leeway."""
    key = (month, day, hour, minute, reference, zone)
    start = _MINUTES.get(key)
    if start is None:
        start = _minute_start(month, day, hour, minute, reference, zone)
        if len(_MINUTES) >= _MINUTES_MAX:
            _MINUTES.clear()
        _MINUTES[key] = start
    moment = start + second
    if moment > (reference + YEAR_LEEWAY).timestamp():  # only within the reference minute
        return _minute_start(month, day, hour, minute, reference, zone, second) + second
    return moment


# A log holds long runs of lines from the same minute: the year and zone arithmetic is done
# once per minute (zone offsets change on whole minutes). Bounded, so memory stays flat.
_MINUTES: dict[tuple[int, int, int, int, datetime, tzinfo], float] = {}
_MINUTES_MAX = 4096


def _minute_start(
    month: int,
    day: int,
    hour: int,
    minute: int,
    reference: datetime,
    zone: tzinfo,
    second: int = 0,
) -> float:
    latest = reference + YEAR_LEEWAY
    # Up to 8 years back: enough to reach a 29 February from any reference.
    for year in range(latest.year, latest.year - 8, -1):
        try:
            moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
        except ValueError:
            continue  # 29 February in a common year, or 31 April
        if moment <= latest:
            return moment.replace(second=0).timestamp()
    raise UnreadableLine(f"no year has {month:02d}-{day:02d}")


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def _journal_text(value: object) -> str | None:
    # journalctl writes a field that is not valid UTF-8 (or has controls) as a byte array.
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value).decode("utf-8", "replace")
    return None
