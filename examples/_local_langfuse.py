"""For the examples: Langfuse if keys are set, else a local Langfuse-compatible receiver whose
sessions are printed at the end (with ``--view``, then shown in a browser until Ctrl-C)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from langfuse_otel_sessions.testing import LangfuseReceiver, render_sessions


@contextmanager
def langfuse_or_local() -> Iterator[LangfuseReceiver | None]:
    """Yields the local receiver (``None`` with real keys); prints its sessions on exit."""
    if os.environ.get("LANGFUSE_PUBLIC_KEY") and os.environ.get("LANGFUSE_SECRET_KEY"):
        yield None
        print("Sent to Langfuse: open Sessions in the Langfuse UI.")
        return
    with LangfuseReceiver() as receiver:
        os.environ.update(receiver.env())
        print(f"No Langfuse keys set: sending to a local receiver at {receiver.url}\n")
        yield receiver
        print(render_sessions(receiver.sessions().values()))
        if "--view" in sys.argv:
            print(f"\nSee them in a browser: {receiver.url}/  (Ctrl-C to stop)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
