"""The front service: decides the session from the X-Session-Id header and calls the back
service with an instrumented HTTP client, which sends the session along in baggage (it opted
in for the back service's host: by default the ids this package writes are sent nowhere).

``python front.py PORT BACK_URL`` serves it (``run.py`` starts it for you).
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

import httpx
import uvicorn
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from langfuse_otel_sessions import ASGISessionMiddleware, LangfuseSpanExporter, SessionSpanProcessor

BACK = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8001"

provider = TracerProvider(resource=Resource.create({"service.name": "front"}))
# Untrusting (the edge of the system), and the session goes to the back service only: calls to
# any other host (an LLM API, say) carry no session or user id.
provider.add_span_processor(SessionSpanProcessor(propagate_session_to=[urlsplit(BACK).netloc]))
provider.add_span_processor(BatchSpanProcessor(LangfuseSpanExporter()))
trace.set_tracer_provider(provider)
HTTPXClientInstrumentor().instrument()

app = FastAPI()
app.add_middleware(ASGISessionMiddleware)
FastAPIInstrumentor.instrument_app(app)


@app.get("/ask")
async def ask(q: str) -> dict[str, str | None]:
    async with httpx.AsyncClient() as client:
        found = (await client.get(f"{BACK}/retrieve", params={"q": q})).json()
    return {"answer": f"based on {found['documents']}", "back saw session": found["session"]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
