"""A scripted HTTP server on loopback that misbehaves on purpose: redirects, trickled answers,
huge bodies, refusals with JSON messages. Each request takes the next :class:`Answer`."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO


@dataclass(frozen=True)
class Answer:
    """What to send back. ``trickle``: seconds between single bytes of the answer (of the body
    only with ``trickle_body``, else from the status line on); ``body_size``: a body of that many
    bytes, streamed (``body`` is ignored); ``raw``: exactly these bytes, status line and all."""

    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0
    trickle_body: bool = False
    body_size: int | None = None
    raw: bytes | None = None

    @staticmethod
    def json(status: int, payload: object, **headers: str) -> Answer:
        return Answer(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers}
        )


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    names: tuple[str, ...] = ()  # every header line's name, lower-case, repeats included


class FaultServer:
    """Answers each request with the next scripted :class:`Answer` (then ``default``)."""

    def __init__(self, default: Answer | None = None) -> None:
        self.default = default or Answer()
        self._script: deque[Answer] = deque()
        self.seen: list[Seen] = []
        self.stop = threading.Event()
        self.sent_bytes = 0
        self.lock = threading.Condition()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while not server.stop.is_set():
                    request = server._read(self.rfile)
                    if request is None:
                        return
                    with server.lock:
                        server.seen.append(request)
                        answer = server._script.popleft() if server._script else server.default
                        server.lock.notify_all()
                    if not server._send(self.connection, answer):
                        return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that hangs up mid-answer is what these tests provoke

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *answers: Answer) -> FaultServer:
        self._script.extend(answers)
        return self

    def wait_for(self, count: int, timeout: float = 10) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: len(self.seen) >= count, timeout)

    @staticmethod
    def _read(rfile: BinaryIO) -> Seen | None:
        line = rfile.readline()
        if not line:
            return None
        path = line.split()[1].decode()
        headers: dict[str, str] = {}
        names: list[str] = []
        while (header := rfile.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
            names.append(name.strip().lower())
        body = rfile.read(int(headers.get("content-length", "0")))
        return Seen(path, headers, body, tuple(names))

    def _send(self, connection: socket.socket, answer: Answer) -> bool:
        size = len(answer.body) if answer.body_size is None else answer.body_size
        head = f"HTTP/1.1 {answer.status} Scripted\r\nContent-Length: {size}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in answer.headers.items()) + "\r\n"
        try:
            if answer.raw is not None:
                connection.sendall(answer.raw)
                return True
            if answer.trickle:
                slow = head.encode() + answer.body
                if answer.trickle_body:
                    connection.sendall(head.encode())
                    slow = answer.body
                for byte in slow:
                    if self.stop.wait(answer.trickle):
                        return False
                    connection.sendall(bytes([byte]))
                    self.sent_bytes += 1
                return True
            connection.sendall(head.encode())
            if answer.body_size is None:
                connection.sendall(answer.body)
                return True
            chunk = b"x" * 65536
            left = answer.body_size
            while left > 0 and not self.stop.is_set():
                piece = chunk[: min(left, len(chunk))]
                connection.sendall(piece)
                self.sent_bytes += len(piece)
                left -= len(piece)
            return True
        except OSError:
            return False

    @contextmanager
    def running(self) -> Iterator[FaultServer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=10)


@contextmanager
def fault_server(*answers: Answer, default: Answer | None = None) -> Iterator[FaultServer]:
    """A :class:`FaultServer` on 127.0.0.1 (free port) with ``answers`` scripted."""
    with FaultServer(default).script(*answers).running() as server:
        yield server
