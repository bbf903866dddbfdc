import pytest

from even.names import is_hostname, is_login


@pytest.mark.parametrize("good", ["db-1.prod.example.org", "a", "x1.y2", "a" * 63 + ".org"])
def test_good_hostnames(good: str) -> None:
    assert is_hostname(good)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "DB.example.org",
        "db..example.org",
        "-db.example.org",
        "db-.example.org",
        "db.example.org.",
        "127.0.0.1",
        "127.1",
        "010.0.0.1",
        "a" * 64 + ".org",
        ("a" * 62 + ".") * 4 + "abc",
        "db example.org",
        "db.example.org\n",
        "db,x.org",
        "*.org",
        "dЬ.example.org",
        "ｄｂ.example.org",
        "db_1.example.org",
        "$(id).org",
    ],
)
def test_bad_hostnames(bad: str) -> None:
    assert not is_hostname(bad)


@pytest.mark.parametrize("bad", ["", "Root", "-x", "a,b", "a b", "x\n", "a*", "é", "a" * 33, "1ab"])
def test_bad_logins(bad: str) -> None:
    assert not is_login(bad)


def test_good_logins() -> None:
    assert all(is_login(x) for x in ["alice", "_svc", "deploy-1", "a.b", "a" * 32])
