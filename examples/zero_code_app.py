"""Zero code: no OpenTelemetry setup in this file; ``opentelemetry-instrument`` does it.

Run it as the README says:
``OTEL_TRACES_EXPORTER=langfuse OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none
opentelemetry-instrument python examples/zero_code_app.py``
with ``LANGFUSE_*`` keys set, or with ``LANGFUSE_OTEL_COLLECTOR_ENDPOINT`` pointing at
``python -m langfuse_otel_sessions serve``.
"""

from __future__ import annotations

from opentelemetry import trace

from langfuse_otel_sessions import session

tracer = trace.get_tracer("zero-code-app")

with session("zero-code-demo", user_id="alice"), tracer.start_as_current_span("answer"):
    call = tracer.start_span("chat gpt-4o")  # a library's span, say
    call.set_attribute("gen_ai.request.model", "gpt-4o")
    call.end()

print("2 spans in session zero-code-demo; they are exported when the program exits")
