"""Fixtures for the audit tests: one real log per session, its keys and its tampered variants."""

from __future__ import annotations

from pathlib import Path

import pytest
from auditlog_cases import BuiltLog, TamperCase, build_log, new_signer, tamper_cases
from cryptography.hazmat.primitives import serialization


@pytest.fixture(scope="session")
def audit_log(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_log(tmp_path_factory.mktemp("auditdb") / "audit.db", new_signer())


@pytest.fixture(scope="session")
def audit_key_pem(audit_log: BuiltLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auditkey") / "audit.pub.pem"
    path.write_bytes(audit_log.signer.public_pem())
    return path


@pytest.fixture(scope="session")
def audit_key_ssh(audit_log: BuiltLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auditkey") / "audit.pub"
    line = audit_log.signer.public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    path.write_bytes(line + b" even-audit@test\n")
    return path


@pytest.fixture(scope="session")
def audit_cases(audit_log: BuiltLog) -> dict[str, TamperCase]:
    return {case.name: case for case in tamper_cases(audit_log, new_signer())}
