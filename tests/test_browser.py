"""The local view's page in a real browser (headless Chromium from the OS, driven by Playwright):
the quickstart's sessions, a session's turns, a trace tree, scores, client data shown as text,
and updates as batches arrive. ``.ci/run`` installs Chromium; elsewhere the tests skip without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from langfuse_otel_sessions import SessionSpanProcessor, session
from langfuse_otel_sessions.testing import LangfuseReceiver

from .servers import run_python
from .test_readme import ROOT

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def view(browser: Any) -> Iterator[tuple[LangfuseReceiver, Any]]:
    """A receiver as ``serve`` runs it, and a browser page on it."""
    with LangfuseReceiver(require_auth=False) as receiver:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(receiver.url + "/")
        yield receiver, page
        page.close()


def screenshot(page: Any, tmp_path: Path, name: str) -> None:
    """Into the test's tmp dir, and under .ci/artifacts/ in CI."""
    page.screenshot(path=tmp_path / name, full_page=True)
    if os.environ.get("CI"):
        (ROOT / ".ci" / "artifacts").mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, ROOT / ".ci" / "artifacts" / name)


def send(receiver: LangfuseReceiver, session_id: str | None, span_name: str) -> None:
    """One trace (a root and a generation), in or outside a session, as an app sends it."""
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(receiver.url + "/v1/traces")))
    tracer = provider.get_tracer("app")
    scope = session(session_id) if session_id else contextlib.nullcontext()
    with scope, tracer.start_as_current_span(span_name) as root:
        root.set_attribute("langfuse.observation.input", span_name)
        with tracer.start_as_current_span("chat gpt-4o") as call:
            call.set_attribute("gen_ai.request.model", "gpt-4o")
    provider.shutdown()


def post_score(receiver: LangfuseReceiver, score: dict[str, object]) -> None:
    request = urllib.request.Request(
        receiver.url + "/api/public/ingestion",
        data=json.dumps(
            {
                "batch": [
                    {
                        "id": "e",
                        "timestamp": "2026-01-01T00:00:00Z",
                        "type": "score-create",
                        "body": score,
                    }
                ]
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)["successes"]


def test_the_quickstarts_sessions_turns_trace_tree_and_scores(
    view: tuple[LangfuseReceiver, Any], tmp_path: Path
) -> None:
    receiver, page = view
    run_python(str(ROOT / "examples" / "quickstart.py"), env=receiver.env(), timeout=60)
    expect = sync_api.expect
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("tbody")).to_contain_text("alice")
    alice = rows.filter(has_text="alice")
    expect(alice).to_contain_text("helpful = True")
    expect(alice.locator("td").nth(7)).to_have_text("84")  # tokens: 2 generations of 12 + 30
    expect(page.locator(".share")).to_have_text("0% of spans without a session")
    alice.locator("a").click()

    turns = page.locator(".turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(0).locator(".input")).to_contain_text("hi")
    expect(turns.nth(0).locator(".output")).to_contain_text("echo: hi")
    expect(turns.nth(1).locator(".input")).to_contain_text("what is OTel?")
    trace_id = (
        receiver.sessions()[
            next(s for s, v in receiver.sessions().items() if v.traces[0].user_id == "alice")
        ]
        .traces[0]
        .id
    )
    post_score(
        receiver, {"traceId": trace_id, "name": "latency_ok", "value": 1, "dataType": "BOOLEAN"}
    )
    expect(turns.nth(0).locator(".score")).to_have_text("latency_ok = True")

    turns.nth(0).locator("summary").click()
    tree = turns.nth(0).locator(".span-row")
    expect(tree).to_have_count(2)
    expect(tree.nth(0).locator(".type")).to_have_text("span")
    expect(tree.nth(1).locator(".type")).to_have_text("generation")
    expect(tree.nth(1).locator(".name")).to_have_text("chat gpt-4o")
    assert tree.nth(1).locator(".bar").bounding_box()["width"] > 0
    screenshot(page, tmp_path, "session.png")


def test_client_data_is_shown_as_text_never_run(
    view: tuple[LangfuseReceiver, Any], tmp_path: Path
) -> None:
    receiver, page = view
    send(receiver, HOSTILE, HOSTILE)
    send(receiver, None, HOSTILE)
    expect = sync_api.expect
    expect(page.locator("tbody tr").first).to_contain_text(HOSTILE)
    expect(page.locator("body")).to_contain_text("none of its spans carries a session id")
    page.locator("tbody a").first.click()
    page.locator(".turn summary").first.click()
    expect(page.locator(".turn .name").first).to_have_text(HOSTILE)
    expect(page.locator("h1 code")).to_have_text(HOSTILE)
    screenshot(page, tmp_path, "hostile.png")
    assert page.evaluate("window.pwned") is None
    assert page.locator("main img, main script").count() == 0


def test_the_page_updates_as_batches_arrive_without_reloading(
    view: tuple[LangfuseReceiver, Any],
) -> None:
    receiver, page = view
    expect = sync_api.expect
    expect(page.locator(".empty")).to_contain_text("No session yet")
    page.evaluate("window.notReloaded = true")
    send(receiver, "first-chat", "turn 1")
    expect(page.locator("tbody tr")).to_have_count(1)
    send(receiver, "second-chat", "turn 1")
    expect(page.locator("tbody tr")).to_have_count(2)
    page.locator("tbody a", has_text="first-chat").click()
    send(receiver, "first-chat", "turn 2")
    expect(page.locator(".turn")).to_have_count(2)
    assert page.evaluate("window.notReloaded") is True
