"""piu.transport's standard-library client against a real HTTP(S) server on loopback.

The server is http.server in a thread (plain and TLS with a CA made here); what is checked is
what EvenClient relies on: URL joining, headers, JSON bodies, status and headers back, no
redirect followed, keep-alive reuse and recovery when the server closed the idle connection,
connection and TLS verification failures as TransportFailure, and when httpx is chosen."""

from __future__ import annotations

import datetime
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.ports import free_port
from piu import transport
from piu.transport import HttpxHttp, StdlibHttp, TransportFailure, open_http

HEADERS = {"Authorization": "Bearer t0ken-value", "User-Agent": "piu/test"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict[str, object]]] = []
    connections: ClassVar[set[tuple[str, int]]] = set()

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Handler.seen.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        Handler.connections.add(self.client_address)
        if self.path.endswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "https://elsewhere.example/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = json.dumps({"ok": True}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "3")
        self.send_header("Content-Length", str(len(payload)))
        if self.path.endswith("/close"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


def _serve(context: ssl.SSLContext | None = None) -> Iterator[str]:
    Handler.seen, Handler.connections = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def server() -> Iterator[str]:
    yield from _serve()


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a leaf for 127.0.0.1 signed by it: (ca.pem, leaf.pem, leaf.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "piu test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    import ipaddress

    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = (directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key")
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(leaf.public_bytes(pem))
    paths[2].write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def _client(url: str, context: ssl.SSLContext | None = None) -> StdlibHttp:
    return StdlibHttp(url, HEADERS, timeout=5.0, connect_timeout=5.0, context=context)


def test_json_post_params_prefix_and_answer(server: str) -> None:
    http = _client(server + "/even/")
    answer = http.request("POST", "/v1/x", json={"reason": "é"}, headers={"Idempotency-Key": "k"})
    http.request("GET", "/v1/list", params={"status": "ACTIVE", "limit": "5"})
    http.close()
    post, get = Handler.seen
    assert post["path"] == "/even/v1/x" and get["path"] == "/even/v1/list?status=ACTIVE&limit=5"
    headers = post["headers"]
    assert isinstance(headers, dict)
    assert headers["Authorization"] == "Bearer t0ken-value"
    assert headers["Idempotency-Key"] == "k" and headers["Content-Type"] == "application/json"
    assert json.loads(post["body"]) == {"reason": "é"}  # type: ignore[arg-type]
    assert answer.status_code == 201 and answer.is_success and answer.json() == {"ok": True}
    assert answer.header("retry-after") == answer.header("Retry-After") == "3"


def test_keep_alive_reused_and_a_closed_connection_reopened(server: str) -> None:
    http = _client(server)
    for _ in range(3):
        http.request("GET", "/a")
    assert len(Handler.connections) == 1
    http.request("GET", "/close")  # the server closes after answering
    http.request("GET", "/b")
    assert len(Handler.connections) == 2
    http.close()


def test_redirect_is_answered_not_followed(server: str) -> None:
    answer = _client(server).request("GET", "/redirect")
    assert answer.status_code == 302 and answer.is_redirect
    assert [seen["path"] for seen in Handler.seen] == ["/redirect"]


def test_connection_refused_is_a_transport_failure() -> None:
    http = _client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransportFailure, match="refused") as caught:
        http.request("GET", "/v1/whoami")
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_tls_verified_with_cacert_and_refused_without(tmp_path: Path) -> None:
    ca, leaf, key = _tls_files(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(leaf, key)
    for url in _serve(server_context):
        trusted = ssl.create_default_context(cafile=str(ca))
        assert _client(url, trusted).request("GET", "/t").status_code == 201
        with pytest.raises(TransportFailure) as caught:
            _client(url, transport.default_context()).request("GET", "/t")
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


def test_httpx_when_a_proxy_is_configured_or_debug_is_on(
    monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    def kind() -> type:
        http = open_http(server, HEADERS, timeout=5.0, connect_timeout=5.0, verify=False)
        http.close()
        return type(http)

    for name in ("http_proxy", "HTTPS_PROXY", "ALL_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert kind() is StdlibHttp
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert kind() is HttpxHttp
    monkeypatch.delenv("HTTPS_PROXY")
    from piu import debug

    debug.enable()
    try:
        assert kind() is HttpxHttp
    finally:
        debug.disable()
