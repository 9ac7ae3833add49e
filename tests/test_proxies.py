"""Proxies, as users set them (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``), through a real
forward proxy on loopback: what goes over the wire to the proxy and beyond, what is refused,
and when credentials would travel in clear text."""

from __future__ import annotations

import base64
import http.server
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from langfuse_otel_sessions import LangfuseSpanExporter, ScoreClient

from .fault_server import fault_server
from .forward_proxy import forward_proxy
from .test_destinations import some_spans

KEYS = {"public_key": "pk-lf-proxy", "secret_key": "sk-lf-proxy-secret"}
LANGFUSE_AUTH = "Basic " + base64.b64encode(b"pk-lf-proxy:sk-lf-proxy-secret").decode()
PROXY_USER, PROXY_PASSWORD = "puser", "proxy-pass-w0rd"
PROXY_AUTH = "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def export_through(base_url: str, timeout: float = 5.0) -> LangfuseSpanExporter:
    exporter = LangfuseSpanExporter(base_url=base_url, timeout=timeout, **KEYS)
    exporter.export(some_spans(1))
    return exporter


# -- http:// destinations: absolute form, Proxy-Authorization --------------------------------


def test_an_http_destination_gets_the_proxy_credentials_and_its_own(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with fault_server() as langfuse, forward_proxy(f"{PROXY_USER}:{PROXY_PASSWORD}") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url(f"{PROXY_USER}:{PROXY_PASSWORD}"))
        with caplog.at_level(logging.INFO):
            exporter = export_through(langfuse.url)
        assert exporter.stats.exported_spans == 1
    [request] = proxy.seen
    assert request.method == "POST"
    assert request.target == f"{langfuse.url}/api/public/otel/v1/traces"  # absolute form
    assert request.headers["proxy-authorization"] == PROXY_AUTH
    assert request.headers["authorization"] == LANGFUSE_AUTH
    [arrived] = langfuse.seen
    assert "proxy-authorization" not in arrived.headers  # the proxy's own, it kept it
    assert arrived.headers["authorization"] == LANGFUSE_AUTH
    assert f"through the proxy http://127.0.0.1:{proxy.port} (from the environment)" in caplog.text
    assert PROXY_PASSWORD not in caplog.text + repr(exporter)


def test_scores_go_through_the_proxy_with_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        fault_server() as langfuse,
        forward_proxy(f"{PROXY_USER}:{PROXY_PASSWORD}") as proxy,
    ):
        monkeypatch.setenv("HTTP_PROXY", proxy.url(f"{PROXY_USER}:{PROXY_PASSWORD}"))
        client = ScoreClient(base_url=langfuse.url, **KEYS)
        client.score_session("s", name="helpful", value=1)
        assert client.flush(10) is True
        client.shutdown(1)
    assert proxy.seen[0].target == f"{langfuse.url}/api/public/ingestion"
    assert proxy.seen[0].headers["proxy-authorization"] == PROXY_AUTH
    assert langfuse.seen[0].headers["authorization"] == LANGFUSE_AUTH


def test_a_proxy_that_refuses_the_credentials_is_named_without_them(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with forward_proxy("someone:else") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url(f"{PROXY_USER}:{PROXY_PASSWORD}"))
        with caplog.at_level(logging.INFO):
            exporter = export_through("http://langfuse.example")
    assert exporter.stats.failed_spans == 1
    assert f"the proxy http://127.0.0.1:{proxy.port} answered 407" in caplog.text
    for secret in (PROXY_PASSWORD, PROXY_AUTH.split()[1]):
        assert secret not in caplog.text


def test_an_ipv6_destination_is_bracketed_in_the_request_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with forward_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        export_through("http://[::1]:9", timeout=2)  # the proxy cannot reach it: 502
    request = proxy.seen[0]
    assert request.target == "http://[::1]:9/api/public/otel/v1/traces"
    assert request.headers["host"] == "[::1]:9"


# -- https:// destinations: CONNECT ---------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "authority"),
    [("https://langfuse.example", "langfuse.example:443"), ("https://[::1]:9", "[::1]:9")],
)
def test_connect_carries_the_proxy_credentials_and_a_valid_authority(
    monkeypatch: pytest.MonkeyPatch, base_url: str, authority: str
) -> None:
    with forward_proxy(f"{PROXY_USER}:{PROXY_PASSWORD}") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url(f"{PROXY_USER}:{PROXY_PASSWORD}"))
        exporter = export_through(base_url, timeout=2)  # the proxy cannot reach it
    assert exporter.stats.failed_spans == 1
    request = proxy.seen[0]
    assert (request.method, request.target) == ("CONNECT", authority)
    assert request.headers["proxy-authorization"] == PROXY_AUTH
    assert "authorization" not in request.headers  # Langfuse's keys only inside TLS


def test_a_refused_connect_is_said_without_the_credentials(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with forward_proxy("someone:else") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url(f"{PROXY_USER}:{PROXY_PASSWORD}"))
        with caplog.at_level(logging.INFO):
            export_through("https://langfuse.example", timeout=2)
    assert "Tunnel connection failed: 407 Proxy Authentication Required" in caplog.text
    assert PROXY_PASSWORD not in caplog.text


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@contextmanager
def tls_langfuse(cert: Path, key: Path) -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_https_through_the_tunnel_arrives_and_the_proxy_sees_only_ciphertext(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    with tls_langfuse(*certificate) as (url, seen), forward_proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url(f"{PROXY_USER}:{PROXY_PASSWORD}"))
        exporter = export_through(url)
    assert exporter.stats.exported_spans == 1
    assert seen[0]["authorization"] == LANGFUSE_AUTH
    assert proxy.seen[0].method == "CONNECT"
    assert proxy.tunnelled  # TLS went through the tunnel ...
    for secret in (b"sk-lf-proxy-secret", LANGFUSE_AUTH.split()[1].encode(), b"/api/public"):
        assert secret not in proxy.tunnelled  # ... and nothing readable did


# -- a proxy we cannot speak to -------------------------------------------------------------


@pytest.mark.parametrize("base_url", ["https://langfuse.example", "http://langfuse.example"])
def test_a_socks_proxy_without_pysocks_gets_nothing_and_the_log_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, base_url: str
) -> None:
    with socket.socket() as listener:  # a plain TCP listener where the proxy should be
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        proxy = f"socks5://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}"
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        monkeypatch.setenv("HTTP_PROXY", proxy)
        with caplog.at_level(logging.INFO):
            started = time.monotonic()
            exporter = export_through(base_url, timeout=5)
            elapsed = time.monotonic() - started
            client = ScoreClient(base_url=base_url, **KEYS)
            client.score_session("s", name="helpful", value=1)
            assert client.flush(5) is False
            client.shutdown(1)
        with pytest.raises(socket.timeout):
            listener.accept()  # not even a connection
    assert exporter.stats.failed_spans == 1
    assert client.stats.failed == 1
    assert elapsed < 1  # a setting to change: not retried for the whole timeout
    assert "SOCKS" in caplog.text
    assert f"nothing was sent to Langfuse at {base_url}/api/public/otel/v1/traces" in caplog.text
    assert PROXY_PASSWORD not in caplog.text + repr(exporter)


@pytest.mark.parametrize("proxy", ["http://[bad", "http://:3128", "http://proxy.example:port"])
def test_a_malformed_proxy_url_is_an_error_not_an_exception(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, proxy: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    with caplog.at_level(logging.INFO):
        exporter = export_through("https://langfuse.example")
    assert exporter.stats.failed_spans == 1
    assert "nothing was sent" in caplog.text  # a setting to fix: not retried


# -- NO_PROXY -------------------------------------------------------------------------------


def test_no_proxy_sends_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    with fault_server() as langfuse, forward_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        monkeypatch.setenv("NO_PROXY", "example.com, 127.0.0.0/8")
        exporter = export_through(langfuse.url)
    assert exporter.stats.exported_spans == 1
    assert proxy.seen == []


# -- clear text on the wire -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "proxy", "warned"),
    [
        # credentials to a loopback Langfuse, but through a proxy on the network: clear text
        ("http://127.0.0.1:4000", "http://proxy-a.example:3128", "credentials go to"),
        # a loopback proxy forwarding plain http to a remote Langfuse: clear text
        ("http://langfuse-b.example", "http://127.0.0.1:3128", "credentials go to"),
        ("http://127.0.0.1:4001", "http://u:p4ss@proxy-d.example:3128", "credentials go to"),
        # https through any proxy is a tunnel; a proxy's own credentials are not warned about
        ("https://langfuse-c.example", "http://u:p4ss@proxy-c.example:3128", None),
        ("https://langfuse-e.example", "http://proxy-e.example:3128", None),
        ("https://langfuse-f.example", "http://u:p4ss@127.0.0.1:3129", None),
        ("http://127.0.0.1:4002", "http://127.0.0.1:3130", None),
    ],
)
def test_the_clear_text_warning_follows_the_wire(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    base_url: str,
    proxy: str,
    warned: str | None,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    with caplog.at_level(logging.WARNING):
        LangfuseSpanExporter(base_url=base_url, **KEYS)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned is None:
        assert warnings == []
    else:
        assert any(warned in w and "unencrypted" in w for w in warnings), warnings
    assert "p4ss" not in caplog.text


def test_no_proxy_means_no_proxy_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://u:p4ss@proxy-g.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    with caplog.at_level(logging.WARNING):
        LangfuseSpanExporter(base_url="http://127.0.0.1:4003", **KEYS)
    assert caplog.records == []
