"""``python -m langfuse_otel_sessions serve``: a local session view.

Listens for OTLP/HTTP on a loopback port (``/v1/traces``, and Langfuse's own
``/api/public/otel/v1/traces`` and score routes, with or without Langfuse keys), shows the
sessions, their turns, span trees and scores, and the traces in no session on a page at ``/``
that updates as batches arrive, and prints one line per batch (what changed, and the URL).
Point our exporter at it (``LANGFUSE_OTEL_COLLECTOR_ENDPOINT=http://127.0.0.1:4318``,
or ``LANGFUSE_BASE_URL`` with any keys), or OpenTelemetry's ``otlp`` exporter or a Collector
(``OTEL_EXPORTER_OTLP_ENDPOINT``).
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable, Sequence

from .export.config import is_loopback
from .testing import LangfuseReceiver
from .testing._live import ChangeView
from .testing._model import build_sessions

DEFAULT_PORT = 4318


def _cannot_listen(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        other = port + 1 if port else DEFAULT_PORT + 1
        return (
            f"Port {port} on {host} is already in use (another serve, a Collector or an agent?).\n"
            f"Pick another port:  python -m langfuse_otel_sessions serve --port {other}\n"
            f"and point the app at it:  LANGFUSE_OTEL_COLLECTOR_ENDPOINT=http://{host}:{other}\n"
            f"(OpenTelemetry's otlp exporter, a Collector: OTEL_EXPORTER_OTLP_ENDPOINT)\n"
            "(--port 0 takes any free port and prints it)"
        )
    return f"Cannot listen on {host}:{port}: {error.strerror or error}. Pick another --host/--port."


def serve(host: str, port: int, stop_after: int | None = None) -> int:
    """Run the view until interrupted (or after ``stop_after`` batches, for tests).
    Returns the exit status: 2 when it cannot listen."""
    if not is_loopback(host):
        print(
            f"Warning: {host} is not a loopback address: anyone who can reach this port can "
            "send spans to this view (it asks for no credentials). Use --host 127.0.0.1 to "
            "keep it local.",
            file=sys.stderr,
            flush=True,
        )
    receiver = LangfuseReceiver(host=host, port=port, require_auth=False)
    try:
        receiver.start()
    except OSError as error:
        print(_cannot_listen(host, port, error), file=sys.stderr, flush=True)
        return 2
    with receiver:
        for line in (
            f"Listening for OTLP/HTTP on {receiver.url}/v1/traces. Point at it:",
            f"  our exporter (OTEL_TRACES_EXPORTER=langfuse, LangfuseSpanExporter()):"
            f" LANGFUSE_OTEL_COLLECTOR_ENDPOINT={receiver.url}",
            f"  or, with scores too: LANGFUSE_BASE_URL={receiver.url}"
            " and any LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY",
            "  OpenTelemetry's otlp exporter or a Collector:"
            f" OTEL_EXPORTER_OTLP_ENDPOINT={receiver.url}",
            f"Then open {receiver.url}/ in a browser: it updates as batches arrive.",
        ):
            print(line, flush=True)
        view = ChangeView()
        printed = batches = 0

        def more_than(count: int) -> Callable[[], bool]:
            return lambda: len(receiver.requests()) > count

        try:
            while stop_after is None or batches < stop_after:
                if not receiver.wait_for(more_than(printed), timeout=0.5):
                    continue
                printed = len(receiver.requests())
                batches += 1
                traces = receiver.traces()
                sessions = build_sessions(traces.values(), receiver.scores())
                print(f"batch {batches}: {view.line(traces, sessions, receiver.url)}", flush=True)
        except KeyboardInterrupt:
            pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m langfuse_otel_sessions")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="show sessions in a browser as spans arrive")
    serve_command.add_argument("--host", default="127.0.0.1")
    serve_command.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0: any free port"
    )
    serve_command.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return serve(args.host, args.port, args.stop_after)


if __name__ == "__main__":
    sys.exit(main())
