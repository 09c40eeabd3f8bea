"""Callbacks from the outside: basic auth over HTTP, mTLS over HTTPS, retries (SPEC 7)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import ssl
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import start_cli_server
from launch_helpers import launch_model, wait_for, wait_task

pytestmark = pytest.mark.slow


class Receiver:
    """A callback receiver in a thread: records requests, answers ``statuses`` in turn."""

    def __init__(self, statuses: list[int] | None = None, tls: ssl.SSLContext | None = None):
        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                peer = self.connection.getpeercert() if tls is not None else None
                outer.requests.append(
                    {
                        "auth": self.headers.get("authorization"),
                        "body": json.loads(body),
                        "peer": peer,
                    }
                )
                code = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def make_pki(folder: Path) -> dict[str, Any]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key_pem(key: Any) -> str:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def cert(subject: str, key: Any, issuer: Any, issuer_key: Any, ca: bool, usage: Any = None):
        b = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if subject == "127.0.0.1":
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            b = b.add_extension(san, critical=False)
        return b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("test-ca", ca_key, name("test-ca"), ca_key, True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = cert(
        "127.0.0.1", srv_key, name("test-ca"), ca_key, False, ExtendedKeyUsageOID.SERVER_AUTH
    )
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = cert(
        "launch-client", cli_key, name("test-ca"), ca_key, False, ExtendedKeyUsageOID.CLIENT_AUTH
    )
    paths = {}
    for fname, text in (("ca.pem", ca), ("server.pem", srv), ("server.key", key_pem(srv_key))):
        (folder / fname).write_text(text)
        paths[fname] = str(folder / fname)
    return {"paths": paths, "client_cert": cli, "client_key": key_pem(cli_key)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("callbacks")
    pki = make_pki(root)
    old = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = pki["paths"]["ca.pem"]  # the server trusts the test CA
    try:
        args = [*launch_model(root), "--model-name", "echo", "--state-dir", str(root / "state")]
        srv = start_cli_server(args, cwd=root)
    finally:
        if old is None:
            os.environ.pop("SSL_CERT_FILE")
        else:
            os.environ["SSL_CERT_FILE"] = old
    client = httpx.Client(base_url=srv.url, timeout=30)
    try:
        yield client, pki
    finally:
        client.close()
        srv.close()  # kills it (and any workers), joins its output readers


def submit(client: httpx.Client, **fields: Any) -> str:
    body = {"args": {"instances": ["cb"]}, **fields}
    r = client.post("/v1/async-tasks?model_endpoint_id=echo", json=body)
    assert r.status_code == 200, r.text
    return r.json()["task_id"]


def test_basic_auth_over_http(setup):
    client, _ = setup
    rx = Receiver()
    try:
        auth = {"kind": "basic", "username": "launch", "password": "s3cret"}
        task_id = submit(client, callback_url=rx.url, callback_auth=auth)
        done = wait_task(client, task_id, until=("callback_status",))
        wait_for(lambda: len(rx.requests) == 1)
        req = rx.requests[0]
        assert base64.b64decode(req["auth"].split()[1]) == b"launch:s3cret"
        assert req["body"] == {
            "task_id": task_id,
            "status": "SUCCESS",
            "result": done["result"],
            "traceback": None,
        }
        wait_for(lambda: wait_task(client, task_id)["callback_status"] == "DELIVERED")
        final = wait_task(client, task_id)
        assert final["callback_attempts"] == 1 and final["callback_error"] is None
    finally:
        rx.close()


def test_mtls_over_https_with_the_system_trust_store(setup):
    client, pki = setup
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki["paths"]["server.pem"], pki["paths"]["server.key"])
    tls.load_verify_locations(pki["paths"]["ca.pem"])
    tls.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
    rx = Receiver(tls=tls)
    try:
        auth = {"kind": "mtls", "cert": pki["client_cert"], "key": pki["client_key"]}
        task_id = submit(client, callback_url=rx.url, callback_auth=auth)
        wait_for(lambda: len(rx.requests) == 1)
        subject = dict(x[0] for x in rx.requests[0]["peer"]["subject"])
        assert subject["commonName"] == "launch-client"
        assert rx.requests[0]["body"]["task_id"] == task_id
        wait_for(lambda: wait_task(client, task_id)["callback_status"] == "DELIVERED")
        # without a client certificate the receiver refuses: the delivery is retried
        plain = submit(client, callback_url=rx.url)
        wait_for(lambda: wait_task(client, plain)["callback_attempts"] >= 1)
        state = wait_task(client, plain)
        assert state["callback_status"] == "PENDING" and state["callback_error"]
        assert len(rx.requests) == 1
    finally:
        rx.close()


def test_receiver_failing_twice_then_accepting(setup):
    client, _ = setup
    rx = Receiver(statuses=[503, 500, 200])
    try:
        task_id = submit(client, callback_url=rx.url)
        wait_for(lambda: len(rx.requests) == 3, timeout=20)
        wait_for(lambda: wait_task(client, task_id)["callback_status"] == "DELIVERED")
        final = wait_task(client, task_id)
        assert final["callback_attempts"] == 3 and final["status"] == "SUCCESS"
        assert all(r["body"]["task_id"] == task_id for r in rx.requests)
        metrics = client.get("/metrics").text
        assert 'predictor_task_callbacks_total{outcome="retry"}' in metrics
    finally:
        rx.close()
