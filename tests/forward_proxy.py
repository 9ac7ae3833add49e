"""A small real forward proxy on loopback, as corporate networks run them: an absolute-form
request (``POST http://host:port/path``) is forwarded to its host, a ``CONNECT host:port`` is
tunnelled byte for byte. It records what it saw: each request line, its headers, and every byte
a client sent through a tunnel. With ``credentials``, it demands them (407 otherwise)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

_DROPPED = frozenset(("proxy-authorization", "proxy-connection", "connection", "keep-alive"))


@dataclass(frozen=True)
class ProxySeen:
    method: str
    target: str  # the request target as sent: absolute form, or CONNECT's authority
    headers: dict[str, str]  # lower-case names
    pairs: tuple[tuple[str, str], ...]  # as sent


class ForwardProxy:
    def __init__(self, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.seen: list[ProxySeen] = []
        self.tunnelled = bytearray()  # what clients sent inside CONNECT tunnels
        self.lock = threading.Lock()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.rfile, self.connection)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"

    def _handle(self, rfile: BinaryIO, connection: socket.socket) -> None:
        line = rfile.readline(65537)
        if not line:
            return
        method, target, _ = line.decode("latin-1").split(" ", 2)
        pairs = []
        while (header := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            pairs.append((name.strip(), value.strip()))
        headers = {name.lower(): value for name, value in pairs}
        with self.lock:
            self.seen.append(ProxySeen(method, target, headers, tuple(pairs)))
        if self.credentials is not None:
            wanted = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if headers.get("proxy-authorization") != wanted:
                connection.sendall(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                    b"Connection: close\r\n\r\n"
                )
                return
        if method == "CONNECT":
            self._tunnel(target, connection)
        else:
            body = rfile.read(int(headers.get("content-length", "0")))
            self._forward(method, target, pairs, body, connection)

    def _tunnel(self, target: str, connection: socket.socket) -> None:
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        back = threading.Thread(target=_pump, args=(upstream, connection, None), daemon=True)
        back.start()
        _pump(connection, upstream, self)
        back.join(10)
        upstream.close()

    def _forward(
        self,
        method: str,
        target: str,
        pairs: list[tuple[str, str]],
        body: bytes,
        connection: socket.socket,
    ) -> None:
        parts = urlsplit(target)
        upstream = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {name: value for name, value in pairs if name.lower() not in _DROPPED}
        try:
            upstream.request(method, path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        except OSError:
            connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        finally:
            upstream.close()
        head = f"HTTP/1.1 {response.status} {response.reason}\r\n"
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                head += f"{name}: {value}\r\n"
        head += f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        connection.sendall(head.encode("latin-1") + data)

    @contextmanager
    def running(self) -> Iterator[ForwardProxy]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)


def _pump(source: socket.socket, sink: socket.socket, record: ForwardProxy | None) -> None:
    try:
        while data := source.recv(65536):
            if record is not None:
                with record.lock:
                    record.tunnelled += data
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextmanager
def forward_proxy(credentials: str | None = None) -> Iterator[ForwardProxy]:
    with ForwardProxy(credentials).running() as proxy:
        yield proxy
