"""OTLP/protobuf encoding of finished spans by hand, for speed: the bytes of OpenTelemetry's
``encode_spans(spans).SerializeToString()`` (``tests/test_encoder.py``), probed once for the
installed release's choices."""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from .._logging import RateLimitedLog

# Span.kind (field 6): the OTLP enum is the SDK value + 1 (SPAN_KIND_UNSPECIFIED, 0, never sent).
_KIND_FIELD = {kind: b"\x30" + bytes((kind.value + 1,)) for kind in SpanKind}
# Span.status (field 15): the code (field 3) when not UNSET; alone, or after a message.
_STATUS_CODE = {code: b"\x18" + bytes((code.value,)) if code.value else b"" for code in StatusCode}
_STATUS_ONLY = {code: b"\x7a" + bytes((len(body),)) + body for code, body in _STATUS_CODE.items()}
# SpanFlags: the parent's is-remote bit is always known (0x100); set when remote (0x200).
_FLAGS_LOCAL = b"\x85\x01" + struct.pack("<I", 0x100)
_FLAGS_REMOTE = b"\x85\x01" + struct.pack("<I", 0x300)
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64 = 1 << 64

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack

CACHE_ENTRIES = 4096
CACHE_KEY_CHARS = 256  # longer keys are encoded each time, never cached
#: Sequences and mappings nested deeper are skipped (and logged), so that every body stays
#: within protobuf decoders' depth limit (100 messages in upb, OpenTelemetry's own); the stock
#: encoder sends such bodies, or skips the attribute, from 32 levels of mappings.
MAX_NESTING = 30
#: OTLP's dropped counts are uint32: a larger count is sent as the largest (the stock encoder
#: raises, losing the batch).
_UINT32_MAX = (1 << 32) - 1


class _Unencodable(Exception):
    """A value the stock encoder refuses: the attribute is skipped and logged."""


def _varint_uncached(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = tuple(_varint_uncached(n) for n in range(1 << 14))


def _varint(value: int) -> bytes:
    if value < 16384:
        return _SMALL_VARINTS[value]
    return _varint_uncached(value)


def _count(value: int) -> bytes:
    """A uint32 dropped count, clamped into range."""
    return _varint(min(max(value, 0), _UINT32_MAX))


def _delimited(tag: bytes, body: bytes) -> bytes:
    length = len(body)
    return tag + (_SMALL_VARINTS[length] if length < 16384 else _varint_uncached(length)) + body


@dataclass(frozen=True)
class StockFeatures:
    """What the installed OpenTelemetry encoder sends where releases differ."""

    scope_attributes: bool
    scope_schema_url: bool
    none_values: bool


_PROBE_KEY = "langfuse-otel-sessions.encoder-probe"


def _not_the_probe(record: logging.LogRecord) -> bool:
    """Hides the stock encoder's complaint about the probe's own attribute, nothing else."""
    return not (isinstance(record.args, tuple) and record.args[:1] == (_PROBE_KEY,))


@lru_cache(maxsize=1)
def stock_features() -> StockFeatures:
    """Probe the installed ``encode_spans`` once with a span that shows each difference."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: PLC0415 - only for the probe
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope  # noqa: PLC0415

    newest = StockFeatures(scope_attributes=True, scope_schema_url=True, none_values=True)
    span = ReadableSpan(
        name="probe",
        context=SpanContext(1, 1, is_remote=False),
        attributes={_PROBE_KEY: (None,)},  # a None member, as SDK attribute sequences allow
        instrumentation_scope=InstrumentationScope("probe", None, "probe-schema", {"probe": 1}),
    )
    stock_logger = logging.getLogger("opentelemetry.exporter.otlp.proto.common._internal")
    stock_logger.addFilter(_not_the_probe)
    try:
        scope_spans = encode_spans([span]).resource_spans[0].scope_spans[0]
    except Exception:  # noqa: BLE001 - an encoder we do not know: assume the newest behaviour
        return newest
    finally:
        stock_logger.removeFilter(_not_the_probe)
    return StockFeatures(
        scope_attributes=len(scope_spans.scope.attributes) > 0,
        scope_schema_url=scope_spans.schema_url == "probe-schema",
        none_values=len(scope_spans.spans[0].attributes) > 0,
    )


class SpanEncoder:
    """Encodes a batch of spans into an OTLP ``ExportTraceServiceRequest`` body."""

    def __init__(self, features: StockFeatures | None = None) -> None:
        self._features = features or stock_features()
        self._keys: dict[str, bytes] = {}  # KeyValue key fields, bounded like a cache
        self._log = RateLimitedLog()

    def encode(
        self,
        spans: Sequence[ReadableSpan],
        attributes: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> bytes:
        """The request body: the bytes of the stock ``encode_spans(spans)``, serialised, with
        ``attributes[i]`` (if given) in place of the attributes of ``spans[i]``."""
        # Grouped by equal resource and scope in order of first appearance, as the stock
        # encoder does; looked up by identity first (hashing a Resource serialises it to JSON).
        grouped: dict[Any, dict[Any, list[bytes]]] = {}
        by_identity: dict[int, dict[Any, list[bytes]]] = {}
        keep_alive = []  # identities stay valid only while their objects live
        span_field = self._span
        for span, own in zip(spans, attributes or [span.attributes for span in spans], strict=True):
            resource = span.resource
            scopes = by_identity.get(id(resource))
            if scopes is None:
                scopes = grouped.get(resource)
                if scopes is None:
                    scopes = grouped[resource] = {}
                by_identity[id(resource)] = scopes
                keep_alive.append(resource)
            scope = span.instrumentation_scope or None
            body = span_field(span, own)
            length = len(body)
            encoded = (
                b"\x12" + (_SMALL_VARINTS[length] if length < 16384 else _varint(length)) + body
            )
            bucket = scopes.get(scope)
            if bucket is None:
                scopes[scope] = [encoded]
            else:
                bucket.append(encoded)
        return b"".join(
            _delimited(b"\x0a", self._resource_spans(resource, scopes))
            for resource, scopes in grouped.items()
        )

    # -- containers ------------------------------------------------------------------------

    def _resource_spans(self, resource: Any, scopes: dict[Any, list[bytes]]) -> bytes:  # noqa: ANN401 - an SDK Resource
        parts = [_delimited(b"\x0a", self._attribute_list(resource.attributes, b"\x0a"))]
        for scope, spans in scopes.items():
            parts.append(_delimited(b"\x12", self._scope_spans(scope, spans)))
        if resource.schema_url:
            parts.append(_delimited(b"\x1a", resource.schema_url.encode()))
        return b"".join(parts)

    def _scope_spans(self, scope: Any, spans: list[bytes]) -> bytes:  # noqa: ANN401 - an SDK InstrumentationScope or None
        body = b""
        if scope is not None:
            parts = []
            if scope.name:
                parts.append(_delimited(b"\x0a", scope.name.encode()))
            if scope.version:
                parts.append(_delimited(b"\x12", scope.version.encode()))
            if self._features.scope_attributes:
                parts.append(self._attribute_list(scope.attributes, b"\x1a"))
            body = b"".join(parts)
        parts = [_delimited(b"\x0a", body), *spans]
        if self._features.scope_schema_url and scope is not None and scope.schema_url:
            parts.append(_delimited(b"\x1a", scope.schema_url.encode()))
        return b"".join(parts)

    # -- spans -----------------------------------------------------------------------------

    def _span(self, span: ReadableSpan, attributes: Mapping[str, Any] | None) -> bytes:  # noqa: PLR0912 - a branch per optional field, inline for speed
        context = span.get_span_context()
        parent = span.parent
        name = span.name
        kind = span.kind
        start, end = span.start_time, span.end_time
        events = span.events
        links = span.links
        status = span.status
        if context is None:
            raise ValueError("a span without a span context cannot be encoded")
        parts = [
            b"\x0a\x10",
            context.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            context.span_id.to_bytes(8, "big"),
        ]
        append = parts.append
        trace_state = context.trace_state
        if trace_state:
            append(
                _delimited(b"\x1a", ",".join(f"{k}={v}" for k, v in trace_state.items()).encode())
            )
        if parent:
            append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        if name:
            append(_delimited(b"\x2a", name.encode()))
        append(_KIND_FIELD[kind])
        if start:
            append(b"\x39" + _pack_fixed64(start))
        if end:
            append(b"\x41" + _pack_fixed64(end))
        if attributes:
            append(self._attribute_list(attributes, b"\x4a"))
        dropped = span.dropped_attributes
        if dropped:
            append(b"\x50" + _count(dropped))
        if events:
            for event in events:
                append(_delimited(b"\x5a", self._event(event)))
        dropped = span.dropped_events
        if dropped:
            append(b"\x60" + _count(dropped))
        if links:
            for link in links:
                append(_delimited(b"\x6a", self._link(link)))
        dropped = span.dropped_links
        if dropped:
            append(b"\x70" + _count(dropped))
        if status is not None:
            description = status.description
            if description:
                body = _delimited(b"\x12", description.encode()) + _STATUS_CODE[status.status_code]
                append(_delimited(b"\x7a", body))
            else:
                append(_STATUS_ONLY[status.status_code])
        append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
        return b"".join(parts)

    def _event(self, event: Any) -> bytes:  # noqa: ANN401 - an SDK Event
        parts = []
        if event.timestamp:
            parts.append(b"\x09" + _pack_fixed64(event.timestamp))
        if event.name:
            parts.append(_delimited(b"\x12", event.name.encode()))
        if event.attributes:
            parts.append(self._attribute_list(event.attributes, b"\x1a"))
        if event.dropped_attributes:
            parts.append(b"\x20" + _count(event.dropped_attributes))
        return b"".join(parts)

    def _link(self, link: Any) -> bytes:  # noqa: ANN401 - an OTel Link
        context = link.context
        parts = [
            b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        ]
        if link.attributes:
            parts.append(self._attribute_list(link.attributes, b"\x22"))
        if link.dropped_attributes:
            parts.append(b"\x28" + _count(link.dropped_attributes))
        parts.append(b"\x35" + struct.pack("<I", 0x300 if context.is_remote else 0x100))
        return b"".join(parts)

    # -- attributes ------------------------------------------------------------------------

    def _attribute_list(self, attributes: Mapping[str, Any] | None, tag: bytes) -> bytes:
        """Each attribute as a KeyValue field ``tag``; one that cannot be encoded is skipped and
        logged, as the stock encoder does (scalars are written inline: this loop is most of the
        encoder's cost)."""
        if not attributes:
            return b""
        keys = self._keys
        parts = []
        for key in attributes:  # not .items(): on the SDK's attributes, a generator in Python
            try:
                value = attributes[key]
                kind = type(value)
                if kind is str or kind is bool or kind is int or kind is float:
                    if kind is str:
                        any_value = _delimited(b"\x0a", value.encode())
                    elif kind is bool:
                        any_value = b"\x10\x01" if value else b"\x10\x00"
                    elif kind is float:
                        any_value = b"\x21" + _pack_double(value)
                    elif 0 <= value <= _INT64_MAX:
                        any_value = b"\x18" + _varint(value)
                    else:
                        any_value = self._any_value(value, 0)
                    body = (keys.get(key) or self._key_prefix(key)) + _delimited(b"\x12", any_value)
                    parts.append(_delimited(tag, body))
                else:
                    parts.append(tag + self._key_value(key, value))
            except Exception as error:  # noqa: BLE001 - as the stock encoder: skip this one only
                self._log.exception("encode", "Failed to encode key %s: %s", key, error)
        return b"".join(parts)

    def _key_prefix(self, key: str) -> bytes:
        """The KeyValue's key field, remembered per key (bounded like the value cache)."""
        prefix = _key_field(key)
        if len(key) <= CACHE_KEY_CHARS:
            if len(self._keys) >= CACHE_ENTRIES:
                self._keys.clear()
            self._keys[key] = prefix
        return prefix

    def _key_value(self, key: str, value: object, depth: int = 0) -> bytes:
        """A length-prefixed KeyValue message (without the field tag)."""
        body = self._key_prefix(key) if depth == 0 else _key_field(key)
        body += _delimited(b"\x12", self._any_value(value, depth))
        return _varint(len(body)) + body

    def _any_value(self, value: object, depth: int) -> bytes:  # noqa: PLR0911 - one return per AnyValue member
        """An AnyValue message body, choosing the member as the stock encoder does."""
        if value is None:
            if not self._features.none_values:
                raise _Unencodable(f"Invalid type {type(value)} of value {value}")
            return b""
        if isinstance(value, bool):
            return b"\x10\x01" if value else b"\x10\x00"
        if isinstance(value, str):
            return _delimited(b"\x0a", value.encode())
        if isinstance(value, int):
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise _Unencodable(f"Value out of range: {value}")
            return b"\x18" + _varint(value if value >= 0 else value + _UINT64)
        if isinstance(value, float):
            return b"\x21" + _pack_double(value)
        if isinstance(value, bytes):
            return _delimited(b"\x3a", value)
        if depth >= MAX_NESTING and isinstance(value, (Sequence, Mapping)):
            raise _Unencodable(f"nested deeper than {MAX_NESTING} levels")
        if isinstance(value, Sequence):
            members = b"".join(_delimited(b"\x0a", self._any_value(v, depth + 1)) for v in value)
            return _delimited(b"\x2a", members)
        if isinstance(value, Mapping):
            members = b"".join(
                b"\x0a" + self._key_value(str(k), v, depth + 1) for k, v in value.items()
            )
            return _delimited(b"\x32", members)
        raise _Unencodable(f"Invalid type {type(value)} of value {value}")


def _key_field(key: str) -> bytes:
    if not isinstance(key, str):  # the stock encoder's KeyValue refuses it too
        raise TypeError(f"an attribute key is a string, not {type(key).__name__}")
    encoded = key.encode()
    return _delimited(b"\x0a", encoded) if encoded else b""
