"""Cost per request of the session middlewares, with and without trace attributes.

Each configuration calls the middleware in-process (no network) around a trivial app, inside a
server span of a real SDK ``TracerProvider`` with ``SessionSpanProcessor`` (as when
OpenTelemetry's instrumentation is outside ours): the request carries ``X-Session-Id``, a
``traceparent`` and a ``baggage`` header with two plain entries. Rounds are interleaved
(shuffled order each round); the table shows the median µs per request and the median of the
per-round ratios to the middleware with no trace attributes.

A second table times a traced request as a server sees it: OpenTelemetry's ASGI / WSGI middleware
starts a real server span per request and the app one child span; the bare app, and ours outside
or inside theirs, with the median of the per-round ratios and differences (``+µs``) to the bare
app in the same run. The rows without ``SessionSpanProcessor`` split the cost: the bare one, to
the bare app with it, is what the processor's stamping of the two spans costs; ours inside, to
that bare one, is the middleware's own cost.

Times are the CPU time of the process (steadier than wall time on a shared machine).

Run: ``python benchmarks/middleware.py`` (``--rounds``/``--requests``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as ASGITraced
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as WSGITraced
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
NO_PROCESSOR = ", no SessionSpanProcessor"


def per_request(request: Any) -> dict[str, Any]:
    return {**STATIC, "tags": ["premium"], "metadata": {"plan": "enterprise"}, "version": "2"}


CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "no trace attributes": {},
    "static (3 tags, 2 metadata, environment)": {"trace_attributes": STATIC},
    "per-request trace_attributes callable": {"trace_attributes": per_request},
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
        getattr(result, "close", lambda: None)()  # as a WSGI server does

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


def traced_runners(
    provider: TracerProvider, plain: TracerProvider
) -> dict[tuple[str, str], Callable[[], None]]:
    """Per-request rows: a real server span per request (OpenTelemetry's ASGI / WSGI
    middleware) and one child span in the app; bare, and with ours inside or outside theirs.
    ``plain`` has no ``SessionSpanProcessor``: the rows with it show what the processor's
    stamping of the two spans costs, bare and with ours."""
    tracers = {provider: provider.get_tracer("app"), plain: plain.get_tracer("app")}
    tracer = tracers[provider]

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["bench.tracer"].start_span("llm call").end()
        start_response("200 OK", [])
        return [b""]

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        scope["bench.tracer"].start_span("llm call").end()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/chat",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "HTTP_X_SESSION_ID": "s-1",
        "HTTP_BAGGAGE": BAGGAGE,
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
    }
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/chat",
        "query_string": b"",
        "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"x-session-id", b"s-1"),
            (b"baggage", BAGGAGE.encode()),
            (b"user-agent", b"bench"),
            (b"accept", b"*/*"),
        ],
    }
    loop = asyncio.new_event_loop()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    def wsgi(app: Any, tracer: Any) -> Callable[[], None]:
        def run() -> None:
            result = app({**environ, "bench.tracer": tracer}, lambda *args: None)
            for _ in result:
                pass
            getattr(result, "close", lambda: None)()

        return run

    def asgi(app: Any, tracer: Any) -> Callable[[], None]:
        def run() -> None:
            loop.run_until_complete(app({**scope, "bench.tracer": tracer}, receive, send))

        return run

    rows: dict[tuple[str, str], Callable[[], None]] = {}
    for protocol, ours, theirs, app, run in (
        ("WSGI", WSGISessionMiddleware, WSGITraced, wsgi_app, wsgi),
        ("ASGI", ASGISessionMiddleware, ASGITraced, asgi_app, asgi),
    ):
        for suffix, used in (("", provider), (NO_PROCESSOR, plain)):
            traced = {"tracer_provider": used}
            bare = run(theirs(app, **traced), tracers[used])
            rows[(protocol, f"bare: server span + child{suffix}")] = bare
            inside = run(theirs(ours(app), **traced), tracers[used])
            rows[(protocol, f"ours inside{suffix}")] = inside
        for name, options in (("", {}), (", static attributes", {"trace_attributes": STATIC})):
            outside = ours(theirs(app, tracer_provider=provider), **options)
            rows[(protocol, f"ours outside{name}")] = run(outside, tracer)
            if options:
                inside = theirs(ours(app, **options), tracer_provider=provider)
                rows[(protocol, f"ours inside{name}")] = run(inside, tracer)
    return rows


def measure(
    runners: dict[tuple[str, str], Callable[[], None]], rounds: int, requests: int, span: Any
) -> dict[tuple[str, str], list[float]]:
    """µs per request of each runner, rounds interleaved in a shuffled order."""
    timings: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
    for _ in range(rounds):
        order = list(runners)
        random.shuffle(order)
        for key in order:
            run = runners[key]
            with span():
                start = time.process_time()
                for _ in range(requests):
                    run()
                elapsed = time.process_time() - start
            timings[key].append(elapsed / requests * 1e6)
    return timings


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
    timings = measure(
        runners, args.rounds, args.requests, lambda: tracer.start_as_current_span("GET /chat")
    )
    print("Inside one long-lived server span (the middleware alone):")
    print(f"{'protocol':<6} {'configuration':<56} {'µs/request':>11} {'ratio':>6}")
    for key, values in timings.items():
        base = timings[(key[0], "no trace attributes")]
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        print(f"{key[0]:<6} {key[1]:<56} {statistics.median(values):>11.2f} {ratio:>6.2f}")
    traced = measure(
        traced_runners(provider, TracerProvider()), args.rounds, args.requests // 4, nullcontext
    )
    print("\nA traced request: a real server span per request and one child span:")
    print(f"{'protocol':<6} {'configuration':<56} {'µs/request':>11} {'ratio':>6} {'+µs':>6}")
    for key, values in traced.items():
        plain = key[1].startswith("ours") and key[1].endswith(NO_PROCESSOR)
        base = traced[(key[0], "bare: server span + child" + (NO_PROCESSOR if plain else ""))]
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        delta = statistics.median(v - b for v, b in zip(values, base, strict=True))
        print(
            f"{key[0]:<6} {key[1]:<56} {statistics.median(values):>11.2f} {ratio:>6.2f}"
            f" {delta:>+6.1f}"
        )


if __name__ == "__main__":
    main()
