"""The testing receiver answers as Langfuse's public API does."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions.testing import Fault, LangfuseReceiver, langfuse_receiver

from .otlp_json import json_span as otlp_span
from .otlp_json import request_body

__all__ = ["langfuse_receiver"]  # the public fixture, used here as users would

TRACE_ID = "5b8efff798038103d269b633813fc60c"


def post(
    receiver: LangfuseReceiver,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, Any, dict[str, str]]:
    kind = "application/x-protobuf" if path == TRACES else "application/json"
    sent = {"Authorization": receiver.authorization, "Content-Type": kind}
    sent.update(headers or {})
    request = urllib.request.Request(receiver.url + path, data=body, headers=sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), dict(error.headers)


otlp_json = request_body


def json_span(
    span_id: str, name: str, parent: str | None = None, **attributes: str
) -> dict[str, Any]:
    named = {key.replace("__", "."): text for key, text in attributes.items()}
    return otlp_span(TRACE_ID, span_id, name, parent, named)


TRACES = "/api/public/otel/v1/traces"
INGESTION = "/api/public/ingestion"


def protobuf_body() -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span("pb", attributes={"langfuse.session.id": "pb-s"}).end()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()  # type: ignore[no-any-return]


def test_accepts_protobuf_and_answers_json_not_otlp(langfuse_receiver: LangfuseReceiver) -> None:
    status, payload, headers = post(
        langfuse_receiver, TRACES, protobuf_body(), {"Content-Type": "application/x-protobuf"}
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert isinstance(payload, dict)
    assert payload
    assert list(langfuse_receiver.sessions()) == ["pb-s"]


def test_accepts_gzip_and_answers_otlp_json_415(langfuse_receiver: LangfuseReceiver) -> None:
    body = gzip.compress(
        otlp_json(json_span("00000000000000a1", "root", langfuse__session__id="j"))
    )
    status, _, _ = post(langfuse_receiver, TRACES, body, {"Content-Encoding": "gzip"})
    assert status == 200
    (span,) = langfuse_receiver.spans()
    assert (span.trace_id, span.span_id, span.name) == (TRACE_ID, "00000000000000a1", "root")
    json_body = b'{"resourceSpans": []}'
    assert (
        post(langfuse_receiver, TRACES, json_body, {"Content-Type": "application/json"})[0] == 415
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": ""}, 401),
        ({"Authorization": "Basic " + "cGs6d3Jvbmc="}, 401),
        ({"Authorization": "Bearer pk-lf-test"}, 403),
        ({"Content-Type": "text/plain"}, 400),
        ({"Content-Encoding": "deflate"}, 400),
        ({"x-langfuse-ingestion-version": "5"}, 400),
        ({"x-langfuse-ingestion-version": "four"}, 400),
        ({"x-langfuse-ingestion-version": "4"}, 200),
        ({"x-langfuse-ingestion-version": "3"}, 200),
    ],
)
def test_rejects_what_langfuse_rejects(
    langfuse_receiver: LangfuseReceiver, headers: dict[str, str], status: int
) -> None:
    body = otlp_json(json_span("00000000000000a1", "root"))
    if headers.get("Content-Encoding") == "deflate":
        import zlib

        body = zlib.compress(body)
    answer_status, payload, _ = post(langfuse_receiver, TRACES, body, headers)
    assert answer_status == status
    if headers.get("Content-Type") == "text/plain":
        assert payload == {"error": "Invalid content type"}
    assert len(langfuse_receiver.spans()) == (1 if status == 200 else 0)


def test_whole_batch_rejected_when_a_span_lacks_ids(langfuse_receiver: LangfuseReceiver) -> None:
    no_span_id = json_span("00000000000000a1", "x")
    del no_span_id["spanId"]
    status, _, _ = post(
        langfuse_receiver, TRACES, otlp_json(json_span("00000000000000a2", "ok"), no_span_id)
    )
    assert status == 400
    assert langfuse_receiver.spans() == []


def test_empty_export_and_wrong_methods(langfuse_receiver: LangfuseReceiver) -> None:
    assert post(langfuse_receiver, TRACES, b"")[:2] == (200, {})
    assert post(langfuse_receiver, TRACES, b"", method="GET")[0] == 405
    assert post(langfuse_receiver, "/elsewhere", b"{}")[0] == 404


def test_groups_by_langfuse_rules(langfuse_receiver: LangfuseReceiver) -> None:
    root = "00000000000000a1"
    body = otlp_json(
        json_span(root, "GET /chat", langfuse__trace__input="hi"),
        json_span("00000000000000a2", "first", root, session__id="early", user__id="u"),
        json_span("00000000000000a3", "later", root, langfuse__session__id="late", session__id="x"),
    )
    post(langfuse_receiver, TRACES, body)
    (trace,) = langfuse_receiver.traces().values()
    assert trace.session_id == "late"  # the last non-empty value written wins (v4)
    assert trace.user_id == "u"
    assert trace.name == "GET /chat"  # no langfuse.trace.name: the root span's name
    assert trace.input is None  # v4 ignores langfuse.trace.input
    session = langfuse_receiver.sessions()["late"]
    assert session.observations_in_session == 1  # only one span carries it itself


def test_a_remote_parent_is_not_a_root(langfuse_receiver: LangfuseReceiver) -> None:
    post(
        langfuse_receiver,
        TRACES,
        otlp_json(json_span("00000000000000a1", "local", "00000000000000ff")),
    )
    (trace,) = langfuse_receiver.traces().values()
    assert trace.root is None
    assert trace.name is None


def event(event_id: str = "e1", **body: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "type": "score-create",
        "body": {"name": "n", "value": 1, "sessionId": "s", **body},
    }


def score(**fields: Any) -> bytes:
    """An ingestion batch of one score-create event."""
    body = {"name": "helpful", "value": 1, "sessionId": "s", **fields}
    return json.dumps({"batch": [event("e", **body)]}).encode()


@pytest.mark.parametrize(
    "body",
    [
        score(traceId="t"),  # two targets
        score(sessionId=None),  # no target
        score(sessionId=None, observationId="o"),  # observation without trace
        score(name=""),
        score(dataType="BOOLEAN", value=2),
        score(dataType="NUMERIC", value="high"),
        score(dataType="CATEGORICAL", value=3),
        score(dataType="TEXT", value="x" * 501),
        score(dataType="TEXT", value=""),
        score(dataType=[]),  # not a crash
        score(value=True),
        score(id="a\rb"),
        score(id="x" * 801),
    ],
)
def test_scores_are_checked_against_langfuse_s_schema(
    langfuse_receiver: LangfuseReceiver, body: bytes
) -> None:
    status, payload, _ = post(langfuse_receiver, INGESTION, body)
    assert status == 207
    assert payload["errors"][0]["message"] == "Invalid request data"
    assert langfuse_receiver.scores() == []


def test_scores_are_kept_and_replaced_by_id(langfuse_receiver: LangfuseReceiver) -> None:
    status, payload, _ = post(langfuse_receiver, INGESTION, score(id="fb-1", value=0.5))
    assert (status, payload) == (207, {"successes": [{"id": "e", "status": 201}], "errors": []})
    post(langfuse_receiver, INGESTION, score(id="fb-1", value=0.9))
    post(langfuse_receiver, INGESTION, score(value="good", name="tone"))
    scores = {s["name"]: s for s in langfuse_receiver.scores()}
    assert scores["helpful"]["value"] == 0.9
    assert scores["helpful"]["dataType"] == "NUMERIC"
    assert scores["tone"]["dataType"] == "CATEGORICAL"
    assert len(langfuse_receiver.sessions()["s"].scores) == 2
    assert post(langfuse_receiver, INGESTION, score(), {"Authorization": "Basic eDp5"})[0] == 401


def test_ingestion_route_answers_207_per_event(langfuse_receiver: LangfuseReceiver) -> None:
    batch = {
        "batch": [
            {
                "id": "e1",
                "timestamp": "2026-01-01T00:00:00Z",
                "type": "score-create",
                "body": {"id": "s1", "name": "n", "value": 1, "sessionId": "s"},
            },
            {
                "id": "e2",
                "timestamp": "2026-01-01T00:00:00Z",
                "type": "score-create",
                "body": {"name": "n", "value": 1, "sessionId": "s", "traceId": "t"},
            },
        ]
    }
    status, payload, _ = post(
        langfuse_receiver, "/api/public/ingestion", json.dumps(batch).encode()
    )
    assert status == 207
    assert payload["successes"] == [{"id": "e1", "status": 201}]
    assert [e["id"] for e in payload["errors"]] == ["e2"]
    assert [s["id"] for s in langfuse_receiver.scores()] == ["s1"]


@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        ({**event(), "id": ""}, "event id"),
        ({**event(), "id": "e" * 801}, "event id"),
        ({**event(), "timestamp": "yesterday"}, "timestamp"),
        ({**event(), "timestamp": "2026-01-01T00:00:00"}, "timestamp"),  # no offset
        (event(value=1, dataType="CORRECTION", traceId="t", sessionId=None), "CORRECTION value"),
        (
            event(value="x", dataType="CORRECTION", traceId="t", sessionId=None, configId="c"),
            "configId",
        ),
        (event(metadata={"deep": [{"n": "1e400"}]}), "metadata"),  # sent as a bare 1e400
        (event(metadata={"big": 10**400}), "metadata"),
        (event(value=10**400), "number"),
        (event(dataType="TEXT", value="x" * 501), "TEXT"),
    ],
)
def test_ingestion_refuses_each_invalid_event_alone(
    langfuse_receiver: LangfuseReceiver, bad: dict[str, Any], detail: str
) -> None:
    batch = {"batch": [event("ok-1"), bad, event("ok-2", id="s2")]}
    body = json.dumps(batch).encode().replace(b'"1e400"', b"1e400")  # JavaScript: Infinity
    status, payload, _ = post(langfuse_receiver, INGESTION, body)
    assert status == 207
    assert [s["id"] for s in payload["successes"]] == ["ok-1", "ok-2"]
    (error,) = payload["errors"]
    assert (error["status"], error["message"]) == (400, "Invalid request data")
    assert detail in error["error"]
    assert len(langfuse_receiver.scores()) == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"batch": [{"id": "e1", "body": {"value": NaN}}]}', 400),
        (b'{"batch": {"not": "a list"}}', 400),
        (b"not json", 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),
        (json.dumps({"batch": [event(comment="c" * 3_600_000)]}).encode(), 413),
    ],
)
def test_ingestion_refuses_a_whole_batch_only_for_what_langfuse_refuses_as_a_whole(
    langfuse_receiver: LangfuseReceiver, body: bytes, status: int
) -> None:
    answer_status, payload, _ = post(langfuse_receiver, INGESTION, body)
    assert answer_status == status
    assert payload["message"]
    assert status != 400 or "error" in payload  # Langfuse's schema-error body
    assert langfuse_receiver.scores() == []


def test_correction_scores_are_kept_on_traces_and_dropped_silently_on_sessions(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    batch = {
        "batch": [
            event("e1", value="right", dataType="CORRECTION", sessionId=None, traceId="t"),
            event("e2", value="right", dataType="CORRECTION"),  # on a session
        ]
    }
    status, payload, _ = post(langfuse_receiver, INGESTION, json.dumps(batch).encode())
    assert status == 207
    assert [s["id"] for s in payload["successes"]] == ["e1", "e2"]  # both "accepted"...
    (kept,) = langfuse_receiver.scores()  # ...but Langfuse drops the session one later
    assert (kept["name"], kept["dataType"], kept["traceId"]) == ("output", "CORRECTION", "t")


def test_scripted_faults_in_order_then_normal(langfuse_receiver: LangfuseReceiver) -> None:
    langfuse_receiver.fail_next("ingestion", 503, Fault(status=429, retry_after=7))
    first = post(langfuse_receiver, INGESTION, score())
    second = post(langfuse_receiver, INGESTION, score())
    third = post(langfuse_receiver, INGESTION, score())
    assert [first[0], second[0], third[0]] == [503, 429, 207]
    assert second[2]["Retry-After"] == "7"
    assert [r.status for r in langfuse_receiver.requests("ingestion")] == [503, 429, 207]
    assert len(langfuse_receiver.scores()) == 1


def test_a_dropped_connection_gets_no_answer(langfuse_receiver: LangfuseReceiver) -> None:
    langfuse_receiver.fail_next("traces", Fault(drop=True))
    host, port = langfuse_receiver.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request(
        "POST", TRACES, body=otlp_json(), headers={"Content-Type": "application/x-protobuf"}
    )
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        connection.getresponse()
    assert [r.status for r in langfuse_receiver.requests()] == [0]


def test_stop_then_start_on_the_same_port() -> None:
    receiver = LangfuseReceiver().start()
    url = receiver.url
    receiver.stop()
    with pytest.raises(urllib.error.URLError):
        post(receiver, INGESTION, score())
    receiver.start()
    try:
        assert receiver.url == url
        assert post(receiver, INGESTION, score())[0] == 207
    finally:
        receiver.stop()


def test_wait_for_returns_false_at_the_timeout(langfuse_receiver: LangfuseReceiver) -> None:
    assert langfuse_receiver.wait_for_spans(1, timeout=0.05) is False


def test_env_points_langfuse_variables_at_it(langfuse_receiver: LangfuseReceiver) -> None:
    env = langfuse_receiver.env()
    assert env["LANGFUSE_BASE_URL"] == langfuse_receiver.url
    host, port = langfuse_receiver.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5):
        pass
