"""OTLP spans written by hand in OTLP/JSON's shape (hex ids), posted to the receiver as protobuf."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def value(raw: object) -> dict[str, Any]:
    """An OTLP ``AnyValue``: a list, a bool, an int or (anything else) a string."""
    if isinstance(raw, list):
        return {"arrayValue": {"values": [value(item) for item in raw]}}
    if isinstance(raw, bool):
        return {"boolValue": raw}
    if isinstance(raw, int):
        return {"intValue": str(raw)}
    return {"stringValue": raw}


def pairs(attributes: Mapping[str, object]) -> list[dict[str, Any]]:
    return [{"key": key, "value": value(raw)} for key, raw in attributes.items()]


def json_span(
    trace_id: str,
    span_id: str,
    name: str,
    parent: str | None = None,
    attributes: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """A span in hex ids, starting at its span id's value in nanoseconds, 1 ns long."""
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "startTimeUnixNano": str(int(span_id, 16)),
        "endTimeUnixNano": str(int(span_id, 16) + 1),
        "attributes": pairs(attributes or {}),
    }
    if parent is not None:
        span["parentSpanId"] = parent
    return span


def request_body(
    *spans: dict[str, Any],
    resource: dict[str, Any] | None = None,
    scope: dict[str, Any] | None = None,
) -> bytes:
    """An export request holding ``spans`` under one resource and one scope, as protobuf."""
    binary = [
        {
            key: base64.b64encode(bytes.fromhex(value)).decode() if key.endswith("Id") else value
            for key, value in span.items()
        }
        for span in spans
    ]
    document = {
        "resourceSpans": [
            {
                "resource": resource or {},
                "scopeSpans": [{"scope": scope or {}, "spans": binary}],
            }
        ]
    }
    request = json_format.ParseDict(document, ExportTraceServiceRequest())
    return request.SerializeToString()  # type: ignore[no-any-return]
