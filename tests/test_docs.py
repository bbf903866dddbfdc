"""The documentation stands alone: README.md and docs/ link only inside the repository (or to
the web), every link resolves, nothing points at files outside the checkout, and the API
reference names every endpoint and every error code the server can answer."""

from __future__ import annotations

import re
import tempfile
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
# [text](target "title") and [label]: target
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
# Files of the team's working notes, which are not part of the product (and the checkout's
# parent directory on the team's machines, spelled so this file does not name it itself).
OUTSIDE_NAMES = re.compile(r"\.\./shared|\bSPEC\.md\b|\bDESIGN\.md\b|\bSPEC §|/wor[k]/")


def _links(text: str) -> list[str]:
    prose = FENCE.sub("", text)  # code blocks show commands, not links
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_~]|<[^>]+>", "", heading).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return anchors


def _problems(path: Path, text: str | None = None) -> list[str]:
    """What is wrong with the links of `text` (default: the file's), read as if at `path`."""
    text = path.read_text(encoding="utf-8") if text is None else text
    found = [f"names {m.group(0)!r}" for m in OUTSIDE_NAMES.finditer(text)]
    for target in _links(text):
        parts = urlsplit(target)
        if parts.scheme in ("http", "https", "mailto"):
            continue  # the web is not the file system
        if parts.scheme or parts.netloc:
            found.append(f"link {target!r}: only relative links or http(s) URLs")
            continue
        if parts.path.startswith("/"):
            found.append(f"link {target!r}: an absolute path points outside the repository")
            continue
        destination = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not destination.is_relative_to(ROOT):
            found.append(f"link {target!r} leaves the repository")
            continue
        if not destination.exists():
            found.append(f"link {target!r}: {destination.relative_to(ROOT)} does not exist")
            continue
        fragment = parts.fragment
        if fragment and destination.suffix == ".md" and fragment not in _anchors(destination):
            found.append(f"link {target!r}: no heading #{fragment}")
    return found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documentation_links_stay_inside_the_repository(path: Path) -> None:
    assert _problems(path) == []


def test_the_checker_catches_links_out() -> None:
    """A checker that cannot fail proves nothing: each bad link here must be reported."""
    page = ROOT / "docs" / "api.md"  # read as if written there
    cases = {
        "[spec](../../shared/SPEC.md)": "names",
        "[up](../../elsewhere.md)": "leaves the repository",
        "[abs](/etc/passwd)": "absolute path",
        "[file](file:///etc/passwd)": "only relative",
        "[gone](no-such-page.md)": "does not exist",
        "[anchor](operations.md#no-such-heading)": "no heading",
        "see ../shared/DESIGN.md": "names",
    }
    for markdown, expected in cases.items():
        problems = _problems(page, markdown + "\n")
        assert any(expected in problem for problem in problems), (markdown, problems)
    good = "[ok](operations.md#reloading-the-policy) [web](https://example.org) [top](#conventions)"
    assert _problems(page, good) == []


def test_api_reference_names_every_endpoint_and_code() -> None:
    from even.api.app import create_app
    from even.api.problems import status_for
    from even.config import load_settings
    from even.errors import EvenError
    from even.wiring import build_components
    from tests.conftest import make_even_dir

    reference = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = []
    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(make_even_dir(Path(scratch) / "even"))
        app = create_app(settings, components=build_components(settings))
        schema = app.openapi()
        app.state.components.engine.dispose()
    for route, methods in schema["paths"].items():
        for method in methods:
            if f"`{method.upper()} {route}`" not in reference:
                missing.append(f"{method.upper()} {route}")
    pending: list[type[EvenError]] = [EvenError]
    codes = set()
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        try:
            error = cls("x")
        except TypeError:
            error = cls("x", 1)  # type: ignore[call-arg]
        if status_for(error) != 500:
            codes.add(cls.code)
    body = (ROOT / "even" / "api" / "body.py").read_text(encoding="utf-8")
    codes.update(re.findall(r'ProblemError\(\s*\d+,\s*"(\w+)"', body))
    codes.update({"body_too_large", "method_not_allowed", "internal_error"})
    missing += [f"code {code}" for code in sorted(codes) if f"`{code}`" not in reference]
    assert missing == []


def test_the_verifier_sketch_in_the_audit_format_page_works(tmp_path: Path) -> None:
    """docs/audit-format.md's Python sketch accepts a real export and rejects an edited one."""
    import subprocess
    import sys

    from audit.signing import AuditSigner, generate_key_pem
    from bench.audit_verify import write_export

    page = (ROOT / "docs" / "audit-format.md").read_text(encoding="utf-8")
    (sketch,) = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    (tmp_path / "sketch.py").write_text(sketch, encoding="utf-8")
    key = tmp_path / "audit_key"
    key.write_bytes(generate_key_pem())
    signer = AuditSigner.from_file(key)
    (tmp_path / "audit.pem").write_bytes(signer.public_pem())
    write_export(tmp_path / "audit.jsonl", 2500, signer)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "sketch.py"], cwd=tmp_path, capture_output=True, text=True, check=False
        )

    result = run()
    assert (result.returncode, result.stdout) == (0, "chain and signatures check out up to 2500\n")
    lines = (tmp_path / "audit.jsonl").read_bytes().split(b"\n")
    lines[41] = lines[41].replace(b"INC-", b"INC-9")  # an edited reason
    (tmp_path / "audit.jsonl").write_bytes(b"\n".join(lines))
    assert run().returncode != 0
