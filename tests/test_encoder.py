"""The hand-written OTLP encoder sends exactly what OpenTelemetry's own encoder sends."""

from __future__ import annotations

import math
import re
import sys

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from langfuse_otel_sessions.export.encoder import SpanEncoder

TRACE = 0x0123456789ABCDEF0123456789ABCDEF


def stock(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializePartialToString()


def assert_same(spans: list[ReadableSpan]) -> None:
    ours = SpanEncoder().encode(spans)
    theirs = stock(spans)
    if ours != theirs:  # show the difference message by message before failing
        assert decoded(ours) == decoded(theirs)
    assert ours == theirs


def decoded(body: bytes) -> str:
    from google.protobuf import text_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return text_format.MessageToString(ExportTraceServiceRequest.FromString(body))


def context(
    span_id: int = 1,
    *,
    remote: bool = False,
    trace_id: int = TRACE,
    state: TraceState | None = None,
) -> SpanContext:
    return SpanContext(
        trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(1), trace_state=state
    )


def span(name: str = "s", span_id: int = 1, **kwargs: object) -> ReadableSpan:
    kwargs.setdefault("context", context(span_id))
    kwargs.setdefault("start_time", 1_700_000_000_000_000_000)
    kwargs.setdefault("end_time", 1_700_000_000_500_000_000)
    return ReadableSpan(name=name, **kwargs)  # type: ignore[arg-type]


def test_empty_batch() -> None:
    assert_same([])


def test_spans_from_the_sdk() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t", "1.0", schema_url="https://schema")
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes={"a": 1}) as root:
        root.add_event("e", {"k": "v", "n": [1, 2]})
        with tracer.start_as_current_span(
            "child", links=[Link(root.get_span_context(), {"l": True})]
        ) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
            child.record_exception(ValueError("bad"))
    provider.get_tracer("other").start_span("lonely", kind=SpanKind.CONSUMER).end()
    spans = list(memory.get_finished_spans())
    assert len(spans) == 3
    assert_same(spans)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain",
        "ünïcødé ✓ 日本語 🎉",
        "x" * 100_000,
        True,
        False,
        0,
        1,
        -1,
        127,
        128,
        2**63 - 1,
        -(2**63),
        2**63,
        -(2**63) - 1,
        10**30,
        0.0,
        -0.0,
        1.5,
        -1e308,
        math.inf,
        -math.inf,
        math.nan,
        5e-324,
        b"",
        b"\x00\xff",
        (),
        ("a", "b"),
        (True, False),
        (1, -2, 3),
        (1.0, math.nan),
        ("a", None),
        (None,),
        [[1, 2], ["x"]],
        {"k": "v", "n": {"m": 1}},
        {},
        "\ud800",
        ("ok", "\udfff"),
        object(),
        (object(),),
        bytearray(b"ab"),
    ],
    ids=lambda value: re.sub(r" at 0x[0-9a-f]+", "", repr(value)),
)
def test_every_attribute_value(value: object) -> None:
    assert_same([span(attributes={"before": "x", "key": value, "after": 2})])


def test_keys_and_names() -> None:
    assert_same([span(name="", attributes={"": "empty key", "ключ": "v", "k" * 5000: 1})])
    assert_same([span(name="名前 " * 1000)])


def test_status_kinds_times_and_counts() -> None:
    for code, description in [
        (StatusCode.UNSET, None),
        (StatusCode.OK, None),
        (StatusCode.ERROR, None),
        (StatusCode.ERROR, "why"),
    ]:
        for kind in SpanKind:
            assert_same([span(status=Status(code, description), kind=kind)])
    assert_same([span(start_time=None, end_time=None), span(start_time=0, end_time=2**64 - 1)])


def test_parents_trace_state_and_flags() -> None:
    state = TraceState([("vendor", "value"), ("other", "x")])
    assert_same(
        [
            span(parent=context(9, remote=True)),
            span(parent=context(9, remote=False), span_id=2),
            span(parent=context(0), span_id=3),
            span(context=context(4, state=state)),
            span(context=context(5, state=TraceState())),
            span(context=SpanContext(0, 0, is_remote=False)),
        ]
    )


def test_events_and_links() -> None:
    events = [
        Event("e1", {"a": 1}, timestamp=5),
        Event("", {}, timestamp=0),
        Event("e3", {"x": ("a",)}, timestamp=7),
    ]
    links = [
        Link(context(7, remote=True), {"l": 1.5}),
        Link(context(8, state=TraceState([("a", "b")]))),
        Link(SpanContext(1, 2, is_remote=False), {}),
    ]
    assert_same([span(events=events, links=links)])


def test_dropped_counts() -> None:
    from opentelemetry.sdk.trace import SpanLimits

    memory = InMemorySpanExporter()
    provider = TracerProvider(
        span_limits=SpanLimits(
            max_span_attributes=2,
            max_events=1,
            max_links=1,
            max_event_attributes=1,
            max_link_attributes=1,
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("limits")
    links = [Link(context(7), {"a": 1, "b": 2}), Link(context(8))]
    with tracer.start_as_current_span("s", links=links, attributes={"a": 1, "b": 2, "c": 3}) as s:
        s.add_event("e1", {"a": 1, "b": 2})
        s.add_event("e2")
    spans = list(memory.get_finished_spans())
    assert spans[0].dropped_attributes
    assert spans[0].dropped_events
    assert spans[0].dropped_links
    assert_same(spans)


def test_several_resources_and_scopes() -> None:
    r1 = Resource.create({"service.name": "a"})
    r2 = Resource({"service.name": "b", "list": ("x", "y")}, schema_url="https://r")
    s1 = InstrumentationScope("lib", "1.2", "https://s", {"scope.attr": "v"})
    s2 = InstrumentationScope("lib2")
    spans = [
        span(resource=r1, instrumentation_scope=s1, span_id=1),
        span(resource=r2, instrumentation_scope=s2, span_id=2),
        span(resource=r1, instrumentation_scope=s2, span_id=3),
        span(resource=r1, instrumentation_scope=None, span_id=4),
        span(resource=r2, instrumentation_scope=s1, span_id=5),
        span(resource=r1, instrumentation_scope=s1, span_id=6),
    ]
    assert_same(spans)


def test_types_are_told_apart() -> None:
    encoder = SpanEncoder()
    for value in (True, 1, 1.0, "1", False, 0, 0.0, -0.0, -0.0, 0.0, 0, False, "1", 1.0, 1, True):
        one = span(attributes={"k": value})
        assert encoder.encode([one]) == stock([one]), value


def test_the_key_cache_stays_right_when_it_overflows(monkeypatch: pytest.MonkeyPatch) -> None:
    from langfuse_otel_sessions.export import encoder as module

    monkeypatch.setattr(module, "CACHE_ENTRIES", 8)  # the same bound, reached sooner
    encoder = SpanEncoder()
    for _ in range(2):
        for i in range(20):
            one = span(attributes={f"k{i}": i, "x" * (module.CACHE_KEY_CHARS + 1): "long"})
            assert encoder.encode([one]) == stock([one])


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="hypothesis pin differs on 3.10; same strategies"
)
def test_random_spans_match_the_stock_encoder() -> None:
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.text(max_size=30),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.binary(max_size=20),
        st.none(),
    )
    values = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(tuple),
            st.dictionaries(st.text(max_size=5), inner, max_size=3),
        ),
        max_leaves=8,
    )
    # keys of other types: the stock encoder skips the attribute (the SDK's own spans have none)
    keys = st.one_of(st.text(max_size=12), st.integers())
    attributes = st.dictionaries(keys, values, max_size=6)
    ids = st.integers(min_value=0, max_value=2**64 - 1)
    contexts = st.builds(
        lambda t, s, remote: SpanContext(t, s, is_remote=remote),
        st.integers(min_value=0, max_value=2**128 - 1),
        ids,
        st.booleans(),
    )
    events = st.builds(
        lambda n, a, t: Event(n, a, timestamp=t), st.text(max_size=8), attributes, ids
    )
    links = st.builds(Link, contexts, attributes)
    statuses = st.builds(
        Status, st.sampled_from(list(StatusCode)), st.one_of(st.none(), st.text(max_size=10))
    )
    texts = st.one_of(st.none(), st.text(max_size=8))
    resource_values = st.one_of(
        st.text(max_size=8),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.lists(st.text()).map(tuple),
    )  # what a Resource keeps (it hashes its attributes as JSON: no bytes)
    resources = st.builds(
        Resource, st.dictionaries(st.text(max_size=8), resource_values, max_size=4), texts
    )
    scopes = st.one_of(
        st.none(), st.builds(InstrumentationScope, st.text(max_size=8), texts, texts, attributes)
    )
    counts = st.integers(min_value=0, max_value=2**32 - 1)
    spans = st.builds(
        _Dropped,
        dropped=st.tuples(counts, counts, counts),
        name=st.text(max_size=20),
        context=contexts,
        parent=st.one_of(st.none(), contexts),
        resource=resources,
        attributes=attributes,
        events=st.lists(events, max_size=3),
        links=st.lists(links, max_size=2),
        kind=st.sampled_from(list(SpanKind)),
        status=statuses,
        start_time=st.one_of(st.none(), ids),
        end_time=st.one_of(st.none(), ids),
        instrumentation_scope=scopes,
    )

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(spans, max_size=5))
    def check(batch: list[ReadableSpan]) -> None:
        assert SpanEncoder().encode(batch) == stock(batch)

    check()


class _Dropped(ReadableSpan):
    """A span of someone else's that reports its own dropped counts."""

    def __init__(self, dropped: tuple[int, int, int], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._counts = dropped

    @property
    def dropped_attributes(self) -> int:
        return self._counts[0]

    @property
    def dropped_events(self) -> int:
        return self._counts[1]

    @property
    def dropped_links(self) -> int:
        return self._counts[2]


def only_span(body: bytes):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans[0]


def test_an_attribute_with_a_key_that_is_not_a_string_is_skipped_alone(caplog) -> None:
    batch = [
        span(attributes={1: "x", "ok": "y", (2,): 2}, events=[Event("e", {3.5: 1.5, "n": 1})]),
        span(span_id=2),
    ]
    assert_same(batch)  # the stock encoder skips those attributes and keeps the batch
    assert [a.key for a in only_span(SpanEncoder().encode(batch)).attributes] == ["ok"]
    assert "Failed to encode key 1" in caplog.text


def nested(levels: int, *, mapping: bool) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = {"k": value} if mapping else (value,)
    return value


@pytest.mark.parametrize("mapping", [False, True], ids=["sequences", "mappings"])
def test_values_nested_too_deep_for_decoders_are_skipped(mapping: bool, caplog) -> None:
    from langfuse_otel_sessions.export.encoder import MAX_NESTING

    for levels in (MAX_NESTING + 1, 200):
        deep = span(
            attributes={"deep": nested(levels, mapping=mapping), "ok": 1},
            events=[Event("e", {"deep": nested(levels, mapping=mapping), "ok": 2})],
            links=[Link(context(7), {"deep": nested(levels, mapping=mapping), "ok": 3})],
        )
        decoded_span = only_span(SpanEncoder().encode([deep]))  # upb decodes it: depth <= 100
        assert [a.key for a in decoded_span.attributes] == ["ok"]
        assert [a.key for a in decoded_span.events[0].attributes] == ["ok"]
        assert [a.key for a in decoded_span.links[0].attributes] == ["ok"]
    assert f"nested deeper than {MAX_NESTING} levels" in caplog.text
    # up to the limit, the same bytes as the stock encoder (which decodes them)
    assert_same([span(attributes={"deep": nested(MAX_NESTING, mapping=mapping)})])


def test_dropped_counts_beyond_uint32_are_sent_as_the_largest() -> None:
    big = _Dropped((2**32 + 5, 2**40, 2**32), name="s", context=context(1))
    decoded_span = only_span(SpanEncoder().encode([big]))  # the stock encoder raises
    assert decoded_span.dropped_attributes_count == 2**32 - 1
    assert decoded_span.dropped_events_count == 2**32 - 1
    assert decoded_span.dropped_links_count == 2**32 - 1


class _MySpan(ReadableSpan):
    """A span type of someone else's: read through the public API only."""

    @property
    def attributes(self):  # type: ignore[override]
        return {"from": "the public property"}


def test_other_span_types_use_the_public_api() -> None:
    spans = [_MySpan(name="mine", context=context(3), attributes={"hidden": 1}), span(span_id=4)]
    assert_same(spans)
    assert b"the public property" in SpanEncoder().encode(spans)
    assert b"hidden" not in SpanEncoder().encode(spans)


@pytest.mark.parametrize("compression", [None, "gzip", "none"])
def test_the_exporter_sends_what_the_stock_encoder_makes(compression: str | None) -> None:
    """End to end: what the receiver gets (decompressed) is the stock encoding of the batch."""
    from langfuse_otel_sessions import LangfuseSpanExporter
    from langfuse_otel_sessions.testing import LangfuseReceiver

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root", attributes={"input.value": "hello"}) as root:
        root.add_event("e", {"n": (1, 2)})
        tracer.start_span("child", attributes={"gen_ai.request.model": "m", "x": 1.5}).end()
    batch = list(memory.get_finished_spans())
    with LangfuseReceiver() as receiver:
        exporter = LangfuseSpanExporter(
            public_key="pk-lf-test",
            secret_key="sk-lf-test",
            base_url=receiver.url,
            compression=compression,
        )
        assert exporter.export(batch).name == "SUCCESS"
        exporter.shutdown()
        (request,) = receiver.requests("traces")
    assert request.body == stock(batch)


def test_deflate_is_refused_for_langfuse_which_cannot_decode_it() -> None:
    from langfuse_otel_sessions import LangfuseSpanExporter
    from langfuse_otel_sessions.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="Langfuse decodes gzip only"):
        LangfuseSpanExporter(
            public_key="pk", secret_key="sk", base_url="http://127.0.0.1:9", compression="deflate"
        )
    collector = LangfuseSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", compression="deflate")
    assert collector.mode == "collector"
    collector.shutdown()
