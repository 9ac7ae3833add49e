"""Decoding OTLP/protobuf trace requests into plain spans."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


class InvalidRequest(ValueError):
    """The request is one Langfuse answers with 400; the message is the body's error."""


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as Langfuse's OTel endpoint received it; ids are lowercase hex."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any] = field(default_factory=dict)
    scope_name: str = ""
    start_time_unix_nano: int = 0
    end_time_unix_nano: int = 0
    events: tuple[tuple[str, dict[str, Any]], ...] = ()
    status_code: int = 0
    #: The number of the request that brought the span (the receiver counts them from 1).
    batch: int = 0


def _value(value: AnyValue) -> Any:  # noqa: ANN401 - OTLP values are any JSON-like type
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:  # noqa: ANN401 - a repeated KeyValue field
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def spans_of(body: bytes, batch: int = 0) -> list[ReceivedSpan]:
    """The spans of an ``application/x-protobuf`` body; a span without trace or span id rejects
    the batch (v4). ``batch`` numbers the request."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as error:
        raise InvalidRequest(f"invalid protobuf: {error}") from None
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if not span.trace_id or not span.span_id:
                    raise InvalidRequest("every span needs a traceId and a spanId")
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        attributes=_attributes(span.attributes),
                        resource_attributes=resource,
                        scope_name=scope_spans.scope.name,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        events=tuple((e.name, _attributes(e.attributes)) for e in span.events),
                        status_code=span.status.code,
                        batch=batch,
                    )
                )
    return spans
