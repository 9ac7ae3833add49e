"""``python -m langfuse_otel_sessions serve``: the local session view (``docs/testing.md``)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import sys
from collections.abc import Sequence
from functools import partial

from .export.config import is_loopback
from .testing import LangfuseReceiver
from .testing._page import batch_line

DEFAULT_PORT = 4318


def serve(host: str, port: int) -> int:
    """Run the view until interrupted; 2 if it cannot listen."""
    if not is_loopback(host):
        print(
            f"Warning: {host} is not a loopback address: anyone who can reach this port can "
            "send spans to this view (it asks for no credentials). Use --host 127.0.0.1 to "
            "keep it local.",
            file=sys.stderr,
        )
    receiver = LangfuseReceiver(host=host, port=port, require_auth=False)
    try:
        receiver.start()
    except OSError as error:
        other = port + 1 if port else DEFAULT_PORT + 1
        taken = (
            f"Port {port} on {host} is already in use (another serve, a Collector or an agent?)."
            f"\nPick another port:  python -m langfuse_otel_sessions serve --port {other}\n"
            f"and point the app at it:  LANGFUSE_OTEL_COLLECTOR_ENDPOINT=http://{host}:{other}"
            "\n(--port 0 takes any free port and prints it)"
        )
        other_error = f"Cannot listen on {host}:{port}: {error.strerror or error}."
        print(taken if error.errno == errno.EADDRINUSE else other_error, file=sys.stderr)
        return 2
    url = receiver.url
    print(
        f"Listening for OTLP/HTTP on {url}/v1/traces. Point at it:\n"
        f"  our exporter (OTEL_TRACES_EXPORTER=langfuse, LangfuseSpanExporter()):"
        f" LANGFUSE_OTEL_COLLECTOR_ENDPOINT={url}\n"
        f"  or, with scores too: LANGFUSE_BASE_URL={url} and any LANGFUSE_PUBLIC_KEY/SECRET_KEY\n"
        f"  OpenTelemetry's otlp exporter or a Collector: OTEL_EXPORTER_OTLP_ENDPOINT={url}\n"
        f"Then open {url}/ in a browser: it updates as batches arrive.",
        flush=True,
    )
    batches = printed = 0
    seen: set[str] = set()  # the ids of the spans already told about
    with receiver, contextlib.suppress(KeyboardInterrupt):
        while True:
            if receiver.wait_for(partial(_more_than, receiver, printed), timeout=0.5):
                printed, batches, traces = len(receiver.requests()), batches + 1, receiver.traces()
                line = batch_line(traces, receiver.scores(), seen, url)
                print(f"batch {batches}: {line}", flush=True)
                seen = {span.span_id for trace in traces.values() for span in trace.spans}
    return 0


def _more_than(receiver: LangfuseReceiver, count: int) -> bool:
    return len(receiver.requests()) > count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m langfuse_otel_sessions")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="show sessions in a browser as spans arrive")
    serve_command.add_argument("--host", default="127.0.0.1")
    serve_command.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0: any free port"
    )
    args = parser.parse_args(argv)
    return serve(args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
