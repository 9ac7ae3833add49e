"""OTLP/JSON written by hand, as a user's framework posts it to the receiver."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


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
    """An export request holding ``spans`` under one resource and one scope."""
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": resource or {},
                    "scopeSpans": [{"scope": scope or {}, "spans": list(spans)}],
                }
            ]
        }
    ).encode()
