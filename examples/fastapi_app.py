"""FastAPI: one line puts every span of every request — server span included — in its session.

``python examples/fastapi_app.py`` serves a few demo requests and prints the sessions;
``python examples/fastapi_app.py --serve`` keeps serving on http://127.0.0.1:8000
(try ``curl -H 'X-Session-Id: my-chat' localhost:8000/chat?q=hi``).
"""

from __future__ import annotations

import sys
import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from langfuse_otel_sessions import ASGISessionMiddleware, configure

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _local_langfuse import langfuse_or_local

app = FastAPI()
app.add_middleware(ASGISessionMiddleware, user_header="X-User-Id")  # <- the one line
tracer = trace.get_tracer("chat-app")


@app.get("/chat")
async def chat(q: str) -> dict[str, str]:
    with tracer.start_as_current_span("llm call") as span:
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        return {"answer": f"echo: {q}"}


def main() -> None:
    with langfuse_or_local():
        provider = configure()  # processor + Langfuse exporter on the global provider
        FastAPIInstrumentor.instrument_app(app)
        if "--serve" in sys.argv:
            uvicorn.run(app, host="127.0.0.1", port=8000)
            return
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        for session_id, user, question in [
            ("chat-1", "alice", "hi"),
            ("chat-1", "alice", "and?"),
            ("chat-2", "bob", "yo"),
        ]:
            httpx.get(
                f"http://127.0.0.1:{port}/chat",
                params={"q": question},
                headers={"X-Session-Id": session_id, "X-User-Id": user},
            )
        server.should_exit = True
        thread.join()
        provider.shutdown()


if __name__ == "__main__":
    main()
