"""Flask: one line puts every span of every request — server span included — in its session.

``python examples/flask_app.py`` serves a few demo requests and prints the sessions;
``python examples/flask_app.py --serve`` keeps serving on http://127.0.0.1:8000.
"""

from __future__ import annotations

import sys
import threading
from wsgiref.simple_server import make_server

import httpx
from flask import Flask, request
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor

from langfuse_otel_sessions import WSGISessionMiddleware, configure

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _local_langfuse import langfuse_or_local

app = Flask(__name__)
app.wsgi_app = WSGISessionMiddleware(app.wsgi_app, session_cookie="chat")  # <- the one line
tracer = trace.get_tracer("chat-app")


@app.route("/chat")
def chat() -> dict[str, str]:
    with tracer.start_as_current_span("llm call"):
        return {"answer": f"echo: {request.args.get('q', '')}"}


def main() -> None:
    with langfuse_or_local():
        provider = configure()  # processor + Langfuse exporter on the global provider
        FlaskInstrumentor().instrument_app(app)
        port = 8000 if "--serve" in sys.argv else 0
        server = make_server("127.0.0.1", port, app)
        if "--serve" in sys.argv:
            server.serve_forever()
            return
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}/chat"
        for chat_id, question in [("chat-a", "hi"), ("chat-a", "more"), ("chat-b", "hello")]:
            httpx.get(url, params={"q": question}, cookies={"chat": chat_id})
        server.shutdown()
        provider.shutdown()


if __name__ == "__main__":
    main()
