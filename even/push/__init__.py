"""Push mode's transport (SPEC §5): odd command lines, the hosts a grant touches, pinned SSH.

- `commands`: the `odd grant-ssh-access` argv Even sends, validated word by word (pure).
- `plan`: which hosts a push grant touches, in which order, with which login (pure).
- `known_hosts`: the OpenSSH known_hosts file every host key is pinned from (pure parsing).
- `pusher`: the `Pusher` interface and its paramiko implementation (the only network code).
- `runner`: a plan carried out over a Pusher: all-or-nothing grants, idempotent revokes.

No SQL, no FastAPI, no audit: the use cases in `even.service.push_access` own those.
"""
