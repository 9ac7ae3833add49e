"""Two services, one session: start both, ask the front service twice in one conversation
(and once with a forged baggage header), then print what Langfuse would show.

``python examples/two_services/run.py``
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _local_langfuse import langfuse_or_local  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def main() -> None:
    with langfuse_or_local():
        back_port, front_port = free_port(), free_port()
        back_url, front_url = f"http://127.0.0.1:{back_port}", f"http://127.0.0.1:{front_port}"
        env = dict(os.environ)
        services = [
            subprocess.Popen([sys.executable, str(HERE / "back.py"), str(back_port)], env=env),
            subprocess.Popen(
                [sys.executable, str(HERE / "front.py"), str(front_port), back_url], env=env
            ),
        ]
        try:
            wait_until_up(back_url + "/docs")
            wait_until_up(front_url + "/docs")
            for question in ("what is OTel?", "and baggage?"):
                answer = httpx.get(
                    front_url + "/ask", params={"q": question}, headers={"X-Session-Id": "conv-42"}
                ).json()
                print(f"front answered: {answer}")
            forged = httpx.get(
                front_url + "/ask",
                params={"q": "sneaky"},
                headers={"baggage": "langfuse_session_id=conv-42"},  # no trusted source
            ).json()
            print(f"forged request: {forged}\n")
        finally:
            for service in services:
                service.send_signal(signal.SIGINT)  # graceful: each flushes its spans
            for service in services:
                service.wait(timeout=30)


if __name__ == "__main__":
    main()
