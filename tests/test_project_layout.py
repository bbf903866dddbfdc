"""The project's structural promises: dependency direction and the Dockerfile's safety."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package → packages of ours it must never import (DESIGN.md, "Dependency direction").
FORBIDDEN = {
    "piu": {"even", "audit", "odd"},
    "audit": {"even", "piu", "odd"},
    "odd": {"even", "audit", "piu"},
    "even": {"piu", "odd"},
}
CORE_WITHOUT_WEB_OR_SQL = [
    "even/policy.py",
    "even/ca.py",
    "even/identity",
    "even/notify",
    "audit/chain.py",
]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependency_direction(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        bad = _imports(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_odd_uses_only_the_standard_library() -> None:
    import sys

    for path in (ROOT / "odd").rglob("*.py"):
        outside = {n for n in _imports(path) if n not in sys.stdlib_module_names and n != "odd"}
        assert not outside, f"{path.relative_to(ROOT)} imports {outside}"


@pytest.mark.parametrize("place", CORE_WITHOUT_WEB_OR_SQL)
def test_core_modules_import_neither_fastapi_nor_sql(place: str) -> None:
    target = ROOT / place
    for path in [target] if target.is_file() else target.rglob("*.py"):
        assert not _imports(path) & {"fastapi", "starlette", "sqlalchemy", "sqlmodel"}, path


def test_dockerfile_runs_as_non_root_and_bakes_in_no_keys() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    copies = " ".join(line for line in lines if line.startswith(("COPY", "ADD")))
    for secret in ("user_ca", "audit_key", "push_key", "dev_issuer_key", ".pem", "even.yaml"):
        assert secret not in copies
