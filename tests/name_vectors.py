"""Test vectors for the name grammar (SPEC §1), shared by even.names, odd.names and piu.

Every copy of the grammar must give these answers: even decides on the server, odd on the
host (stdlib only) and piu checks the server's answers before building ssh commands.
"""

LONGEST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters

VALID_HOSTNAMES = [
    "db-1.prod.example.org",
    "a",
    "web1",
    "x1.y2",
    "a.b",
    "123.example.org",
    "a" * 63 + ".org",
    LONGEST,
    "localhost",  # grammatical; refused as a grant target and a host identity
    "localhost.example.org",
    "0x7f.example.org",  # only the last label makes an IP literal
]

INVALID_HOSTNAMES = [
    "",
    "DB.example.org",
    "db..example.org",
    ".example.org",
    "-db.example.org",
    "db-.example.org",
    "db.example.org.",
    "127.0.0.1",
    "127.1",
    "10.1",
    "010.0.0.1",
    "1.2.3.4.5",
    "2130706433",
    "0x7f.1",
    "a.0x7f",
    "a.0x",
    "host.example.123",
    "::1",
    "[::1]",
    "a" * 64 + ".org",
    LONGEST + "e",
    "db example.org",
    " db.example.org",
    "db.example.org\n",
    "db.example.org\x00",
    "db,x.org",
    "*.org",
    "dЬ.example.org",
    "ｄｂ.example.org",
    "héllo.example.org",
    "db_1.example.org",
    "$(id).org",
]

# Names every machine gives itself: never a grant target, never a host identity.
SELF_NAMES = ["localhost", "localhost.localdomain", "localhost6", "app.localhost"]

VALID_LOGINS = ["alice", "_svc", "deploy-1", "a.b", "a" * 32, "x"]
INVALID_LOGINS = ["", "Root", "-x", "a,b", "a b", "x\n", "a*", "é", "a" * 33, "1ab", "a\x00"]
