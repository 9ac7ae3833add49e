"""What a score costs the caller, and how fast scores reach a loopback Langfuse.

1. Caller's thread: median µs per ``score_session`` call (validation, span-event check, enqueue;
   the sender thread runs meanwhile), with a ``TracerProvider`` set as in any traced app,
   against two baselines measured in the same run: putting a ready dict on a ``queue.Queue``
   (the least any background sender does), and the Langfuse SDK's ``create_score`` (when
   ``langfuse`` is installed; its sender waits on a port that never answers, and its queue is
   abandoned at the end rather than flushed for minutes).
2. Throughput: scores per second delivered to the testing receiver running in another process
   (``flush`` marks the end), median over runs.

Run: ``python benchmarks/scores.py`` (``--rounds``, ``--scores`` to change the size).
"""

from __future__ import annotations

import argparse
import logging
import math
import queue
import random
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from langfuse_otel_sessions import ScoreClient

SESSION = "session_0123456789abcdef01234567"

RECEIVER = textwrap.dedent(
    """
    import sys
    from langfuse_otel_sessions.testing import Fault, LangfuseReceiver
    receiver = LangfuseReceiver().start()
    if sys.argv[1:] == ["slow"]:  # every request takes 10 s: the sender waits on the network
        receiver.fail_next("ingestion", *[Fault(delay=10.0)] * 100_000)
    print(receiver.url, flush=True)
    sys.stdin.read()
    """
)


def start_receiver(*args: str) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def per_call_micros(call: Callable[[int], object], calls: int) -> float:
    begin = time.perf_counter_ns()
    for i in range(calls):
        call(i)
    return (time.perf_counter_ns() - begin) / calls / 1000


def langfuse_sdk(url: str) -> tuple[Callable[[int], object], Callable[[], None]] | None:
    """The Langfuse SDK's ``create_score`` for one session and its shutdown, or ``None``
    without the SDK."""
    try:
        from langfuse import Langfuse  # noqa: PLC0415 - optional: the row is left out without it
    except ImportError:
        return None
    logging.getLogger("langfuse").setLevel(logging.CRITICAL)  # its queue is abandoned too
    sdk = Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", host=url)  # noqa: S106
    return lambda i: sdk.create_score(
        name="helpful", value=float(i % 2 == 0), session_id=SESSION, data_type="BOOLEAN"
    ), sdk.shutdown


def silent_server() -> tuple[socket.socket, str]:
    """A loopback port that takes connections and never answers: the SDK's sender waits on
    the network, as ours does on the slow receiver."""
    listener = socket.create_server(("127.0.0.1", 0))
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def caller_cost(
    client: ScoreClient, rounds: int, sdk: Callable[[int], object] | None
) -> dict[str, float]:
    """Median µs per score_session call, per baseline call, per SDK call (if any), and the
    median per-round ratios of the score call to the baseline and to the SDK."""
    baseline: queue.Queue[dict[str, object]] = queue.Queue()
    cases: dict[str, Callable[[int], object]] = {
        "score": lambda i: client.score_session(SESSION, name="helpful", value=i % 2 == 0),
        "baseline": lambda i: baseline.put_nowait(
            {"name": "helpful", "value": i % 2, "sessionId": "s"}
        ),
    }
    if sdk is not None:
        cases["sdk"] = sdk
    micros: dict[str, list[float]] = {name: [] for name in cases}
    ratios: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        order = list(cases.items())
        random.shuffle(order)
        this_round = {name: per_call_micros(call, 1000) for name, call in order}
        for name, value in this_round.items():
            micros[name].append(value)
            ratios[name].append(this_round["score"] / value)
    figures = {f"{name} µs": statistics.median(values) for name, values in micros.items()}
    figures.update({f"ratio to {name}": statistics.median(ratios[name]) for name in cases})
    return figures


def run(rounds: int, scores: int) -> dict[str, float]:
    trace.set_tracer_provider(TracerProvider())  # as in any traced app
    slow, slow_url = start_receiver("slow")
    fast, fast_url = start_receiver()
    silent, silent_url = silent_server()
    try:
        waiting = ScoreClient("pk-lf-test", "sk-lf-test", slow_url)
        sdk = langfuse_sdk(silent_url)
        idle = caller_cost(waiting, rounds, None if sdk is None else sdk[0])
        waiting.shutdown(0.1)  # a benchmark: what is still queued is abandoned
        if sdk is not None:  # its shutdown waits for every queued score (minutes): not for it
            threading.Thread(target=sdk[1], daemon=True).start()
        client = ScoreClient("pk-lf-test", "sk-lf-test", fast_url)
        busy = caller_cost(client, rounds, None)
        assert client.flush(120)
        throughput = []
        for _ in range(3):
            begin = time.perf_counter()
            for i in range(scores):
                client.score_session("session_throughput", name=f"n{i % 50}", value=i)
            assert client.flush(300)
            throughput.append(scores / (time.perf_counter() - begin))
        stats = client.stats
        assert stats.failed == stats.dropped == 0, stats
        client.shutdown(30)
    finally:
        for server in (slow, fast):
            server.communicate("", timeout=30)
        silent.close()
    return {
        "idle µs": idle["score µs"],
        "baseline µs": idle["baseline µs"],
        "idle ratio": idle["ratio to baseline"],
        "sdk µs": idle.get("sdk µs", math.nan),
        "ratio to sdk": idle.get("ratio to sdk", math.nan),
        "busy µs": busy["score µs"],
        "busy ratio": busy["ratio to baseline"],
        "delivered per second": statistics.median(throughput),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--scores", type=int, default=20_000)
    args = parser.parse_args(argv)
    figures = run(args.rounds, args.scores)
    print(
        f"Python {sys.version.split()[0]}; {args.rounds} rounds x 1,000 calls; "
        f"3 x {args.scores:,} scores delivered"
    )
    print()
    print("| measure | median | ratio to baseline |")
    print("| --- | ---: | ---: |")
    print(f"| baseline: `Queue.put_nowait(dict)` | {figures['baseline µs']:.1f} µs | 1.0x |")
    print(f"| Langfuse SDK `create_score` | {figures['sdk µs']:.2f} µs | |")
    print(
        f"| `score_session`, sender waiting on the network | {figures['idle µs']:.2f} µs "
        f"| {figures['idle ratio']:.1f}x ({figures['ratio to sdk']:.2f}x the SDK's) |"
    )
    print(
        f"| `score_session`, sender delivering at full speed | {figures['busy µs']:.2f} µs "
        f"| {figures['busy ratio']:.1f}x |"
    )
    print(
        f"| delivered to a loopback receiver | {figures['delivered per second']:,.0f} scores/s | |"
    )


if __name__ == "__main__":
    main()
