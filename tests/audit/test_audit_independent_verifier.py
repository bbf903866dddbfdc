"""A second verifier, written from SPEC §8 alone, must agree with `even-audit verify`.

Nothing below imports `audit`: the verifier uses hashlib, json, base64 and cryptography's
Ed25519, with its own canonical form (JCS restricted to the audit domain) and its own parser
for the `ssh-ed25519` key line. The files come from fixtures (a real log built with
`audit.store`, and the tampered variants); `even-audit` runs as a subprocess. Agreement means
the same verdict and, when INVALID, the same seq.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_SAFE = 2**53 - 1
GENESIS = "0" * 64
RECORD_MEMBERS = {
    *("seq", "time", "type", "username", "login", "hostname", "request_id", "reason"),
    *("details", "prev_hash", "hash"),
}


class Reject(Exception):
    """INVALID at `seq`."""

    def __init__(self, seq: int, why: str) -> None:
        super().__init__(f"record {seq}: {why}")
        self.seq = seq


# --- JCS (RFC 8785) for strings, safe integers, booleans, null, arrays and objects ----------


def jcs(value: Any) -> bytes:
    return _jcs(value).encode("utf-8")


def _jcs(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE:
            raise ValueError("integer outside the audit domain")
        return str(value)
    if isinstance(value, str):
        # json.dumps escapes exactly what JCS escapes: " \ and U+0000..U+001F (short forms
        # for \b \t \n \f \r, else \u00xx lowercase); everything else stays as it is.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        # JCS sorts member names by their UTF-16 code units.
        names = sorted(value, key=lambda name: name.encode("utf-16-be"))
        return "{" + ",".join(f"{_jcs(n)}:{_jcs(value[n])}" for n in names) + "}"
    raise ValueError(f"{type(value).__name__} is outside the audit domain")


# --- keys and signatures ------------------------------------------------------------------


def load_ssh_ed25519(line: str) -> tuple[str, Ed25519PublicKey]:
    """(key_id, key) from `ssh-ed25519 BASE64 comment`, parsing the SSH wire format by hand."""
    kind, b64 = line.split()[:2]
    blob = base64.b64decode(b64)
    (n,) = struct.unpack(">I", blob[:4])
    name, rest = blob[4 : 4 + n], blob[4 + n :]
    (m,) = struct.unpack(">I", rest[:4])
    raw = rest[4 : 4 + m]
    assert kind == "ssh-ed25519" and name == b"ssh-ed25519" and len(raw) == 32
    return hashlib.sha256(raw).hexdigest(), Ed25519PublicKey.from_public_bytes(raw)


def signed_ok(keys: dict[str, Ed25519PublicKey], obj: dict[str, Any], body: dict[str, Any]) -> bool:
    key = keys.get(obj.get("key_id"))  # type: ignore[arg-type]
    if key is None or not isinstance(obj.get("signature"), str):
        return False
    try:
        signature = base64.b64decode(obj["signature"], validate=True)
        key.verify(signature, jcs(body))
    except (ValueError, InvalidSignature):
        return False
    return len(signature) == 64


# --- the verifier -----------------------------------------------------------------------------


def strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise ValueError("repeated member name")
    return dict(pairs)


def no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def independent_verify(
    data: bytes,
    keys: dict[str, Ed25519PublicKey],
    receipts: list[dict[str, Any]],
    saved: list[dict[str, Any]],
) -> int | None:
    """None if VALID, else the seq an INVALID verdict names."""
    try:
        return _verify(data, keys, receipts, saved)
    except Reject as reject:
        return reject.seq


def _verify(
    data: bytes,
    keys: dict[str, Ed25519PublicKey],
    receipts: list[dict[str, Any]],
    saved: list[dict[str, Any]],
) -> None:
    anchors: dict[int, str] = {}
    for r in receipts:
        if not signed_ok(keys, r, {"seq": r["seq"], "hash": r["hash"]}):
            raise Reject(r["seq"], "receipt signature")
        anchors[r["seq"]] = r["hash"]
    for c in saved:
        body = {k: c[k] for k in ("origin", "size", "head", "time")}
        if not signed_ok(keys, c, body):
            raise Reject(c["size"], "saved checkpoint signature")
        anchors[c["size"]] = c["head"]

    seq, head, covered = 0, GENESIS, 0
    for line in data.split(b"\n"):  # JSONL: "\n" only
        if not line.strip(b" \t\r"):
            continue
        try:
            item = json.loads(line, object_pairs_hook=strict_object, parse_constant=no_constants)
        except ValueError as exc:
            raise Reject(seq + 1, "unparseable line") from exc
        if not isinstance(item, dict):
            raise Reject(seq + 1, "not an object")
        if item.get("type") == "checkpoint" and "seq" not in item:
            covered = _checkpoint(item, keys, seq, head)
            continue
        n = item.get("seq")
        if not isinstance(n, int) or isinstance(n, bool):
            raise Reject(seq + 1, "no seq")
        if n > seq + 1 or n < 1:
            raise Reject(seq + 1, "gap")
        if n < seq + 1:
            raise Reject(n, "duplicate or out of order")
        if not set(item) >= RECORD_MEMBERS:
            raise Reject(n, "a member SPEC §8 requires is missing")
        body = {k: v for k, v in item.items() if k != "hash"}
        try:
            digest = hashlib.sha256(b"even-audit-v1:" + jcs(body)).hexdigest()
        except ValueError as exc:
            raise Reject(n, "outside the domain") from exc
        if digest != item.get("hash") or item.get("prev_hash") != head:
            raise Reject(n, "hash or link")
        if n in anchors and anchors[n] != digest:
            raise Reject(n, "anchor")
        seq, head = n, digest
    if seq == 0:
        raise Reject(1, "empty")
    if covered < seq:
        raise Reject(covered + 1, "not covered by a checkpoint")
    beyond = [s for s in anchors if s > seq]
    if beyond:
        raise Reject(min(beyond), "file shorter than an anchor")


def _checkpoint(
    item: dict[str, Any], keys: dict[str, Ed25519PublicKey], seq: int, head: str
) -> int:
    size = item.get("size")
    named = size if isinstance(size, int) and not isinstance(size, bool) and size >= 1 else seq
    named = max(named, 1)
    expected = {"type", "origin", "size", "head", "time", "key_id", "signature"}
    if set(item) != expected:
        raise Reject(named, "checkpoint members")
    body = {k: item[k] for k in ("origin", "size", "head", "time")}
    if not signed_ok(keys, item, body):
        raise Reject(named, "checkpoint signature")
    if size != seq or item["head"] != head:
        raise Reject(named, "checkpoint position or head")
    return seq


# --- agreement ----------------------------------------------------------------------------------


def test_the_independent_verifier_really_is_independent() -> None:
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {
        name for name in imported if name.split(".")[0] in ("audit", "even", "auditlog_cases")
    }


def test_both_verifiers_agree_on_the_valid_log_and_every_tampered_file(
    audit_cases: dict[str, Any], audit_key_ssh: Path, tmp_path: Path
) -> None:
    key_id, key = load_ssh_ed25519(audit_key_ssh.read_text(encoding="ascii"))
    keys = {key_id: key}
    runs = {}
    for name, case in audit_cases.items():
        log = tmp_path / f"{name}.jsonl"
        log.write_bytes(b"".join(line + b"\n" for line in case.lines))
        argv = [sys.executable, "-m", "audit.cli", "verify", str(log)]
        argv += ["--public-key", str(audit_key_ssh)]
        for kind, objs in (("receipt", case.receipts), ("checkpoint", case.saved_checkpoints)):
            for i, obj in enumerate(objs):
                anchor = tmp_path / f"{name}.{kind}{i}.json"
                anchor.write_text(json.dumps(obj), encoding="utf-8")
                argv += [f"--{kind}", str(anchor)]
        # Started together, awaited below: the CLI's start-up dominates each run.
        runs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    for name, case in audit_cases.items():
        out, err = runs[name].communicate(timeout=60)
        mine = independent_verify(log_bytes(case), keys, case.receipts, case.saved_checkpoints)
        assert mine == case.seq, name
        if mine is None:
            assert runs[name].returncode == 0, (name, out, err)
            assert out.decode().startswith("VALID: "), name
        else:
            assert runs[name].returncode == 1, (name, out, err)
            assert out.decode().startswith(f"INVALID: record {mine}: "), (name, out)


def log_bytes(case: Any) -> bytes:
    return b"".join(line + b"\n" for line in case.lines)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [True, None, "x"]}, b'{"a":[true,null,"x"],"b":1}'),
        (
            {"\ufb33": 3, "\U0001f600": 2, "\u20ac": 1},
            '{"\u20ac":1,"\U0001f600":2,"\ufb33":3}'.encode(),
        ),
        ('\x00\x1f\x7f\u2028"\\/', b'"\\u0000\\u001f\x7f\xe2\x80\xa8\\"\\\\/"'),
    ],
)
def test_the_independent_jcs_follows_rfc8785(value: Any, expected: bytes) -> None:
    assert jcs(value) == expected
