"""What a score costs the caller, and how fast scores reach a loopback Langfuse.

1. Caller's thread: median µs per ``score_session`` call (validation, span-event check, enqueue;
   the sender thread runs meanwhile), against a baseline measured in the same run: putting a
   ready dict on a ``queue.Queue`` (the least any background sender does).
2. Throughput: scores per second delivered to the testing receiver running in another process
   (``flush`` marks the end), median over runs.

Run: ``python benchmarks/scores.py`` (``--rounds``, ``--scores`` to change the size).
"""

from __future__ import annotations

import argparse
import queue
import random
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence

from langfuse_otel_sessions import ScoreClient

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


def caller_cost(client: ScoreClient, rounds: int) -> tuple[float, float, float]:
    """Median µs per score_session call, per baseline call, and median per-round ratio."""
    baseline: queue.Queue[dict[str, object]] = queue.Queue()
    cases: dict[str, Callable[[int], object]] = {
        "score": lambda i: client.score_session(
            "session_0123456789abcdef01234567", name="helpful", value=i % 2 == 0
        ),
        "baseline": lambda i: baseline.put_nowait(
            {"name": "helpful", "value": i % 2, "sessionId": "s"}
        ),
    }
    micros: dict[str, list[float]] = {name: [] for name in cases}
    ratios: list[float] = []
    for _ in range(rounds):
        order = list(cases.items())
        random.shuffle(order)
        this_round = {name: per_call_micros(call, 1000) for name, call in order}
        for name, value in this_round.items():
            micros[name].append(value)
        ratios.append(this_round["score"] / this_round["baseline"])
    return (
        statistics.median(micros["score"]),
        statistics.median(micros["baseline"]),
        statistics.median(ratios),
    )


def run(rounds: int, scores: int) -> dict[str, float]:
    slow, slow_url = start_receiver("slow")
    fast, fast_url = start_receiver()
    try:
        waiting = ScoreClient("pk-lf-test", "sk-lf-test", slow_url)
        idle = caller_cost(waiting, rounds)
        waiting.shutdown(0.1)  # a benchmark: what is still queued is abandoned
        client = ScoreClient("pk-lf-test", "sk-lf-test", fast_url)
        busy = caller_cost(client, rounds)
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
    return {
        "idle µs": idle[0],
        "baseline µs": idle[1],
        "idle ratio": idle[2],
        "busy µs": busy[0],
        "busy ratio": busy[2],
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
    print(
        f"| `score_session`, sender waiting on the network | {figures['idle µs']:.1f} µs "
        f"| {figures['idle ratio']:.1f}x |"
    )
    print(
        f"| `score_session`, sender delivering at full speed | {figures['busy µs']:.1f} µs "
        f"| {figures['busy ratio']:.1f}x |"
    )
    print(
        f"| delivered to a loopback receiver | {figures['delivered per second']:,.0f} scores/s | |"
    )


if __name__ == "__main__":
    main()
