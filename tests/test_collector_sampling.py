"""The Collector tail-sampling recipe (examples/collector/tail-sampling.yaml), structure-tested:
its policies, read from the file and evaluated the way the tail_sampling processor evaluates
them, keep whole sessions - the same sessions as SessionSampler at the same ratio."""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions import SessionSampler, SessionSpanProcessor, session
from langfuse_otel_sessions.spans.sampler import ratio_threshold

COLLECTOR = Path(__file__).resolve().parent.parent / "examples" / "collector"
RECIPE = COLLECTOR / "tail-sampling.yaml"
SESSION_CONDITION = re.compile(
    r'^attributes\["(?P<key>[^"]+)"\] != nil and '
    r'Substring\(SHA256\(attributes\["(?P=key)"\]\), 0, 16\) < "(?P<threshold>[0-9a-f]{16})"$'
)

Span = Mapping[str, Any]  # a span's attributes


@functools.cache
def _config() -> dict[str, Any]:
    return yaml.safe_load(RECIPE.read_text())


def _policies() -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in _config()["processors"]["tail_sampling"]["policies"]}


# --- the tail_sampling processor's policy semantics, for the policy types the recipe uses ---


def _ottl(policy: Mapping[str, Any], spans: Sequence[Span]) -> bool:
    """``ottl_condition``: sampled when a span satisfies a condition (OTTL compares strings as
    Go does, byte-wise, which for lowercase hex is Python's ``<``)."""
    for condition in policy["span"]:
        match = SESSION_CONDITION.match(condition)
        assert match, f"an OTTL condition this test does not know: {condition}"
        key, threshold = match["key"], match["threshold"]
        for span in spans:
            value = span.get(key)
            if isinstance(value, str):
                digest = hashlib.sha256(value.encode()).hexdigest()  # OTTL SHA256: lowercase hex
                if digest[:16] < threshold:
                    return True
    return False


def _string_attribute(policy: Mapping[str, Any], spans: Sequence[Span]) -> tuple[bool, bool]:
    """(sampled, inverted): with ``invert_match`` a match means InvertNotSampled."""
    values = [str(v) for v in policy["values"]]
    if policy.get("enabled_regex_matching"):
        patterns = [re.compile(v) for v in values]  # Go's MatchString: unanchored search

        def matches(value: str) -> bool:
            return any(p.search(value) for p in patterns)
    else:

        def matches(value: str) -> bool:
            return value in values

    found = any(
        isinstance(v := span.get(policy["key"]), str) and v and matches(v) for span in spans
    )
    if policy.get("invert_match"):
        return not found, True
    return found, False


def _probabilistic(policy: Mapping[str, Any], trace_id: int) -> bool:
    """Stands in for the trace-id hash: only its rate matters here."""
    digest = hashlib.sha256(trace_id.to_bytes(16, "big")).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < policy["sampling_percentage"] * 100


def _evaluate(policy: Mapping[str, Any], trace_id: int, spans: Sequence[Span]) -> bool:
    kind = policy["type"]
    if kind == "ottl_condition":
        return _ottl(policy["ottl_condition"], spans)
    if kind == "string_attribute":
        sampled, inverted = _string_attribute(policy["string_attribute"], spans)
        assert not inverted, "an inverted match outside an `and` would veto every policy"
        return sampled
    if kind == "probabilistic":
        return _probabilistic(policy["probabilistic"], trace_id)
    if kind == "and":  # Sampled when every sub-policy is; InvertNotSampled counts as NotSampled
        for sub in policy["and"]["and_sub_policy"]:
            if sub["type"] == "string_attribute":
                sampled, _ = _string_attribute(sub["string_attribute"], spans)
            else:
                sampled = _evaluate(sub, trace_id, spans)
            if not sampled:
                return False
        return True
    raise AssertionError(f"a policy type this test does not know: {kind}")


def _kept(trace_id: int, spans: Sequence[Span]) -> bool:
    """A trace is sampled when any policy samples it."""
    return any(_evaluate(p, trace_id, spans) for p in _policies().values())


# --- the recipe ------------------------------------------------------------------------------


def test_the_recipe_pipeline_samples_before_batching_and_exports_to_langfuse() -> None:
    config = _config()
    assert config["service"]["pipelines"]["traces"] == {
        "receivers": ["otlp"],
        "processors": ["tail_sampling", "batch"],
        "exporters": ["otlphttp/langfuse"],
    }
    base = yaml.safe_load((COLLECTOR / "otel-collector.yaml").read_text())
    assert config["exporters"] == base["exporters"]  # the Langfuse export, as in the base recipe
    assert config["receivers"] == base["receivers"]
    assert set(_policies()) == {"whole-sessions", "testers", "traces-without-a-session"}


def test_the_session_policy_keeps_exactly_what_session_sampler_keeps_at_ten_percent() -> None:
    (condition,) = _policies()["whole-sessions"]["ottl_condition"]["span"]
    match = SESSION_CONDITION.match(condition)
    assert match
    assert match["key"] == "langfuse.session.id"
    assert match["threshold"] == format(ratio_threshold(0.1), "016x")
    sampler = SessionSampler(0.1)
    policy = _policies()["whole-sessions"]
    for i in range(10_000):
        session_id = f"conversation-{i}"
        in_collector = _evaluate(policy, 0, [{"langfuse.session.id": session_id}])
        assert in_collector == sampler.keeps_hash_of(session_id), session_id


def test_the_caveat_about_several_collector_instances_is_written_down() -> None:
    text = RECIPE.read_text()
    assert "CAVEAT" in text
    assert "loadbalancing" in text
    assert "routing_key: traceID" in text
    guide = (Path(__file__).resolve().parent.parent / "docs" / "sampling.md").read_text()
    assert "tail-sampling.yaml" in guide
    assert "routing_key: traceID" in guide


def _workload() -> dict[int, list[Span]]:
    """Spans as a Collector receives them from apps with SessionSpanProcessor and no sampler:
    800 conversations of 3 turns, a tester's conversation, 2,000 traces without a session."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("app")
    conversations = [(f"conversation-{i}", f"user-{i % 7}") for i in range(800)]
    for session_id, user_id in [*conversations, ("qa-run", "qa@example.com")]:
        with session(session_id, user_id=user_id):
            for turn in range(3):
                with tracer.start_as_current_span(f"turn {turn}"):
                    tracer.start_span("llm call").end()
    for _ in range(2000):
        with tracer.start_as_current_span("health check"):
            pass
    traces: dict[int, list[Span]] = defaultdict(list)
    for span in memory.get_finished_spans():
        traces[span.context.trace_id].append(dict(span.attributes or {}))
    return traces


def test_through_the_recipe_every_session_is_kept_or_dropped_whole() -> None:
    decisions: dict[object, set[bool]] = defaultdict(set)
    without_session = []
    for trace_id, spans in _workload().items():
        kept = _kept(trace_id, spans)
        session_id = spans[0].get("langfuse.session.id")
        if session_id is None:
            without_session.append(kept)
        else:
            decisions[session_id].add(kept)
    assert all(len(d) == 1 for d in decisions.values())  # all traces in, or all out
    kept_sessions = {s for s, d in decisions.items() if d == {True}}
    expected = {s for s in decisions if SessionSampler(0.1).keeps_hash_of(str(s))}
    assert kept_sessions == expected | {"qa-run"}  # the tester's conversation too
    fraction = sum(without_session) / len(without_session)
    assert abs(fraction - 0.1) <= 4 * math.sqrt(0.1 * 0.9 / len(without_session))
