"""The back service: trusts its caller (the front service), so the session arrives in baggage.

``python back.py PORT`` serves it (``run.py`` starts it for you).
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from langfuse_otel_sessions import (
    ASGISessionMiddleware,
    LangfuseSpanExporter,
    SessionSpanProcessor,
    current_session_id,
)

provider = TracerProvider(resource=Resource.create({"service.name": "back"}))
# Behind a trusted edge: accept the session from the caller's baggage.
provider.add_span_processor(SessionSpanProcessor(trust_remote_baggage=True))
provider.add_span_processor(BatchSpanProcessor(LangfuseSpanExporter()))
trace.set_tracer_provider(provider)

app = FastAPI()
app.add_middleware(ASGISessionMiddleware, trust_remote_baggage=True)
FastAPIInstrumentor.instrument_app(app)
tracer = trace.get_tracer("back")


@app.get("/retrieve")
async def retrieve(q: str) -> dict[str, str | None]:
    with tracer.start_as_current_span("vector search"):
        return {"documents": f"docs about {q}", "session": current_session_id()}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
