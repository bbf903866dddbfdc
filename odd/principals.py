"""The principal a login must carry to be accepted on this host (SPEC §4, §6).

Even signs host-bound certificates whose principals are `<login>@<hostname>`. sshd calls
`odd principals --hostname NAME %u` (via the `odd-principals` wrapper) and accepts a certificate
only if one of its principals equals a line printed here. Invariant: nothing is printed unless
both the login and the host identity are valid, so a bad input can only deny, never allow.
"""

from odd.names import check_host_identity, check_login


def principal_for(login: str, hostname: str) -> str:
    """Return `login@hostname`, or raise `InvalidLogin` / `InvalidHostname`."""
    return f"{check_login(login)}@{check_host_identity(hostname)}"
