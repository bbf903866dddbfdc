"""Join one login to the grants index and name its class (SPEC §14). Pure.

Classes, checked in this order for the grant a login names:
- `unexplained`: no grant names it (a password or other non-key method, a static key, a
  certificate from a CA Even never used, an unknown key ID + serial), or the grant's CA,
  key or login differ from what sshd logged;
- `wrong_host`: the grant is for another host;
- `outside_window`: before `valid_after`, at or after `valid_before`, or after the grant's
  `access.revoked` (a host that had not yet synced its KRL, or an odd that failed to remove a
  pushed key);
- `explained`: otherwise.
A certificate login names at most one grant (key ID + serial). A plain key login may match
several push grants of the same key: the first on the right host and login whose window
holds the time explains it; failing that, the class is the best any of them reaches.

Time is fail-closed: a stamp with a precision of one second covers [t, t + 1), and a login is
outside the window if any of that interval is (a login in the same second as its revocation
is flagged, not waved through).

Host names: the log's host (syslog's host field, journald's `_HOSTNAME`) matches a grant's
host if they are equal ignoring case and a trailing dot, or if the log's host is a single
label equal to the grant's first label (syslog daemons usually log the short name).
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.reconcile.grants_index import Grant, GrantsIndex, Sighting
from audit.reconcile.sshd_log import Accepted

EXPLAINED = "explained"
UNEXPLAINED = "unexplained"
OUTSIDE_WINDOW = "outside_window"
WRONG_HOST = "wrong_host"
UNUSED = "unused"
LOGIN_CLASSES = (EXPLAINED, UNEXPLAINED, OUTSIDE_WINDOW, WRONG_HOST)
_RANK = {EXPLAINED: 0, OUTSIDE_WINDOW: 1, WRONG_HOST: 2, UNEXPLAINED: 3}


@dataclass(frozen=True, slots=True)
class Verdict:
    cls: str
    reason: str
    grant: Grant | None = None


def same_host(logged: str, granted: str | None) -> bool:
    if granted is None:
        return False
    a, b = logged.lower().rstrip("."), granted.lower().rstrip(".")
    return a == b or ("." not in a and b.split(".", 1)[0] == a)


def classify(
    login: Accepted, time: float, precision: float, host: str, index: GrantsIndex
) -> Verdict:
    """The class of one accepted login on `host` at [time, time + precision)."""
    if login.method != "publickey":
        return Verdict(UNEXPLAINED, f"{login.method} login: Even grants only keys")
    if login.key_id is not None:
        return _certificate(login, time, precision, host, index)
    if login.fingerprint is None:
        return Verdict(UNEXPLAINED, "key login without a fingerprint")
    sightings = index.by_fingerprint.get(login.fingerprint)
    if not sightings:
        return Verdict(UNEXPLAINED, "key not granted by Even (a static key?)")
    best: Verdict | None = None
    for sighting in sightings:
        verdict = _push(login, time, precision, host, sighting)
        if verdict.cls == EXPLAINED:
            sighting.grant.used = True
            return verdict
        if best is None or _RANK[verdict.cls] < _RANK[best.cls]:
            best = verdict
    assert best is not None
    if best.grant is not None and best.cls != UNEXPLAINED:
        best.grant.used = True
    return best


def _certificate(
    login: Accepted, time: float, precision: float, host: str, index: GrantsIndex
) -> Verdict:
    assert login.key_id is not None and login.serial is not None
    sighting = index.by_certificate.get((login.key_id, login.serial))
    if sighting is None:
        if login.ca_fingerprint not in index.ca_fingerprints:
            return Verdict(UNEXPLAINED, "certificate from a CA Even never used")
        return Verdict(UNEXPLAINED, "no grant with this key ID and serial")
    grant = sighting.grant
    grant.used = True
    if grant.ca_fingerprint is not None and login.ca_fingerprint != grant.ca_fingerprint:
        return Verdict(UNEXPLAINED, "signed by another CA than the grant's", grant)
    if (
        login.fingerprint is not None
        and grant.fingerprint is not None
        and login.fingerprint != grant.fingerprint
    ):
        return Verdict(UNEXPLAINED, "the certificate's key is not the granted key", grant)
    if sighting.login is not None and login.user != sighting.login:
        return Verdict(UNEXPLAINED, f"granted for login {sighting.login!r}", grant)
    return _placed(time, precision, host, sighting)


def _push(login: Accepted, time: float, precision: float, host: str, sighting: Sighting) -> Verdict:
    if sighting.login is not None and login.user != sighting.login:
        return Verdict(UNEXPLAINED, "key granted for another login", sighting.grant)
    return _placed(time, precision, host, sighting)


def _placed(time: float, precision: float, host: str, sighting: Sighting) -> Verdict:
    grant = sighting.grant
    if not same_host(host, sighting.host):
        return Verdict(WRONG_HOST, f"granted for host {sighting.host!r}", grant)
    if time < grant.valid_after:
        return Verdict(OUTSIDE_WINDOW, "before valid_after", grant)
    if time + precision > grant.valid_before:
        return Verdict(OUTSIDE_WINDOW, "at or after valid_before", grant)
    if grant.revoked_at is not None and time + precision > grant.revoked_at:
        return Verdict(OUTSIDE_WINDOW, "after the grant was revoked", grant)
    return Verdict(EXPLAINED, "", grant)
