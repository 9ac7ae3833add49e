"""Cost per request of the session middlewares, with and without trace attributes.

Each configuration calls the middleware in-process (no network) around a trivial app, inside a
server span of a real SDK ``TracerProvider`` with ``SessionSpanProcessor`` (as when
OpenTelemetry's instrumentation is outside ours): the request carries ``X-Session-Id``, a
``traceparent`` and a ``baggage`` header with two plain entries. Rounds are interleaved
(shuffled order each round); the table shows the median µs per request and the median of the
per-round ratios to the middleware with no trace attributes.

Run: ``python benchmarks/middleware.py`` (``--rounds``/``--requests``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from langfuse_otel_sessions import (
    ASGISessionMiddleware,
    SessionSpanProcessor,
    WSGISessionMiddleware,
)

STATIC: dict[str, Any] = {
    "tags": ["web", "beta", "eu"],
    "metadata": {"tenant": "acme", "plan": "pro"},
    "environment": "production",
}
BAGGAGE = "tenant.region=eu,feature=x"


def per_request(request: Any) -> dict[str, Any]:
    return {"tags": ["premium"], "metadata": {"plan": "enterprise"}, "version": "2"}


CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "no trace attributes": {},
    "static (3 tags, 2 metadata, environment)": STATIC,
    "static + trace_attributes_from": {**STATIC, "trace_attributes_from": per_request},
}


def wsgi_runner(options: dict[str, Any]) -> Callable[[], None]:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]

    middleware = WSGISessionMiddleware(app, **options)
    environ = {
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": "",
        "HTTP_X_SESSION_ID": "s-1",
        "HTTP_BAGGAGE": BAGGAGE,
    }

    def run() -> None:
        result = middleware(dict(environ), lambda *args: None)
        for _ in result:
            pass
        result.close()  # type: ignore[attr-defined]

    return run


def asgi_runner(options: dict[str, Any]) -> Callable[[], None]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    middleware = ASGISessionMiddleware(app, **options)
    scope = {
        "type": "http",
        "query_string": b"",
        "headers": [(b"x-session-id", b"s-1"), (b"baggage", BAGGAGE.encode())],
    }
    loop = asyncio.new_event_loop()

    def run() -> None:
        loop.run_until_complete(middleware(scope, None, None))  # type: ignore[arg-type]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    tracer = provider.get_tracer("server")
    runners = {
        (protocol, name): build(options)
        for protocol, build in (("WSGI", wsgi_runner), ("ASGI", asgi_runner))
        for name, options in CONFIGURATIONS.items()
    }
    timings: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
    for _ in range(args.rounds):
        order = list(runners)
        random.shuffle(order)
        for key in order:
            run = runners[key]
            with tracer.start_as_current_span("GET /chat"):  # the server span, stamped
                start = time.perf_counter()
                for _ in range(args.requests):
                    run()
                elapsed = time.perf_counter() - start
            timings[key].append(elapsed / args.requests * 1e6)
    print(f"{'protocol':<6} {'configuration':<44} {'µs/request':>11} {'ratio':>6}")
    for key, values in timings.items():
        base = timings[(key[0], "no trace attributes")]
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        print(f"{key[0]:<6} {key[1]:<44} {statistics.median(values):>11.2f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
