"""Which spans the exporter sends (``export_spans``, ``docs/exporter.md``); each local root is
always kept: Langfuse v4 takes a trace's name, input and output from its root."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

from opentelemetry.sdk.trace import ReadableSpan

from .._logging import RateLimitedLog, logger
from ..errors import ConfigurationError

#: ``all`` or ``llm``; read when ``LangfuseSpanExporter(export_spans=None)``.
ENV_EXPORT_SPANS = "LANGFUSE_OTEL_EXPORT_SPANS"

SpanPredicate = Callable[[ReadableSpan], bool]
ExportSpans = Literal["all", "llm"] | SpanPredicate | None

#: The Langfuse SDK's tracer name and its known LLM instrumentation scopes (langfuse-python
#: 5.0.4, ``_client/span_filter.py``): a scope matches a prefix or a dotted descendant of one.
_SCOPES = """langfuse-sdk agent_framework autogen-core ai haystack langsmith litellm openinference
pydantic-ai strands-agents vllm"""
_INSTRUMENTATIONS = """agno alephalpha anthropic bedrock cohere crewai google_generativeai groq
haystack langchain llamaindex mistralai ollama openai openai_agents openai_v2 replicate sagemaker
together transformers vertexai voyageai watsonx writer"""
KNOWN_LLM_SCOPES = frozenset(
    _SCOPES.split() + ["opentelemetry.instrumentation." + n for n in _INSTRUMENTATIONS.split()]
)

_log = RateLimitedLog()


def is_llm_span(span: ReadableSpan) -> bool:
    """The Langfuse SDK's default export rule: its own spans, spans with a ``gen_ai.*``
    attribute, and spans of a known LLM instrumentation scope."""
    scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
    if scope in KNOWN_LLM_SCOPES or any(
        scope.startswith(prefix + ".") for prefix in KNOWN_LLM_SCOPES
    ):
        return True
    return any(key.startswith("gen_ai.") for key in span.attributes or ())


def span_predicate(value: ExportSpans) -> SpanPredicate | None:
    """The predicate for ``export_spans`` (``None``: every span): argument >
    ``LANGFUSE_OTEL_EXPORT_SPANS`` > ``all``."""
    if value is None:
        raw = os.environ.get(ENV_EXPORT_SPANS, "").strip().lower()
        if raw not in {"", "all", "llm"}:
            logger.warning(
                "Ignoring %s=%r: expected all or llm; exporting all", ENV_EXPORT_SPANS, raw
            )
        value = "llm" if raw == "llm" else "all"
    if value in ("all", "llm"):
        return None if value == "all" else is_llm_span
    if callable(value):
        return value
    raise ConfigurationError("export_spans must be 'all', 'llm' or a callable taking a span")


def keep(
    spans: Sequence[ReadableSpan], predicate: SpanPredicate
) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    """``(kept, dropped)``: local roots and the spans ``predicate`` keeps. A predicate that
    raises keeps the span (logged, rate-limited)."""
    kept: list[ReadableSpan] = []
    dropped: list[ReadableSpan] = []
    for span in spans:
        parent = span.parent
        try:
            wanted = parent is None or parent.is_remote or predicate(span)
        except Exception:  # noqa: BLE001 - a user predicate must not break the export
            _log.exception("predicate", "The export_spans predicate raised; the span is kept")
            wanted = True
        (kept if wanted else dropped).append(span)
    return kept, dropped
