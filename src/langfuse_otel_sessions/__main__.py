"""``python -m langfuse_otel_sessions serve``: a local session view.

Listens for OTLP/HTTP on a loopback port (``/v1/traces``, and Langfuse's own
``/api/public/otel/v1/traces`` and score routes, with or without Langfuse keys) and prints each
session as its spans arrive: its traces in order, each trace's span tree, its scores. Point our
exporter at it (``LANGFUSE_OTEL_COLLECTOR_ENDPOINT=http://127.0.0.1:4318``, or
``LANGFUSE_BASE_URL`` with any keys), or OpenTelemetry's ``otlp`` exporter or a Collector
(``OTEL_EXPORTER_OTLP_ENDPOINT``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .testing import LangfuseReceiver, render_session


def serve(host: str, port: int, stop_after: int | None = None) -> None:
    """Run the view until interrupted (or after ``stop_after`` batches, for tests)."""
    with LangfuseReceiver(host=host, port=port, require_auth=False) as receiver:
        print(f"Listening for OTLP/HTTP on {receiver.url}/v1/traces", flush=True)
        for line in (
            "Point at it:",
            f"  our exporter (OTEL_TRACES_EXPORTER=langfuse, LangfuseSpanExporter()):"
            f" LANGFUSE_OTEL_COLLECTOR_ENDPOINT={receiver.url}",
            f"  or, with scores too: LANGFUSE_BASE_URL={receiver.url}"
            " and any LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY",
            "  OpenTelemetry's otlp exporter or a Collector:"
            f" OTEL_EXPORTER_OTLP_ENDPOINT={receiver.url}",
        ):
            print(line, flush=True)
        printed = batches = 0

        def more_than(count: int) -> Callable[[], bool]:
            return lambda: len(receiver.requests()) > count

        try:
            while stop_after is None or batches < stop_after:
                if not receiver.wait_for(more_than(printed), timeout=0.5):
                    continue
                printed = len(receiver.requests())
                batches += 1
                print(f"\n--- {len(receiver.spans())} spans received ---", flush=True)
                for session in receiver.sessions().values():
                    print("\n".join(render_session(session)), flush=True)
        except KeyboardInterrupt:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m langfuse_otel_sessions")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="print sessions as spans arrive")
    serve_command.add_argument("--host", default="127.0.0.1")
    serve_command.add_argument("--port", type=int, default=4318)
    serve_command.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.stop_after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
