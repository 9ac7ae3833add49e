"""A loopback OpenAI-compatible chat completions endpoint (WSGI), plain and streaming, with
fixed token usage: each answer costs ``PROMPT_TOKENS`` + ``COMPLETION_TOKENS``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

PROMPT_TOKENS = 12
COMPLETION_TOKENS = 8


def _completion(model: str, stream: bool) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk" if stream else "chat.completion",
        "created": 1_700_000_000,
        "model": model,
    }


def _usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


def openai_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    """``POST /v1/chat/completions``: one fixed answer, streamed (with a final usage chunk
    when ``stream_options.include_usage``) or not."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    request = json.loads(environ["wsgi.input"].read(length) or b"{}")
    model = request.get("model", "gpt-test")
    if not request.get("stream"):
        body = {
            **_completion(model, False),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hello"},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(),
        }
        start_response("200 OK", [("Content-Type", "application/json")])
        return iter([json.dumps(body).encode()])
    chunks = [
        {
            **_completion(model, True),
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hel"}}],
        },
        {
            **_completion(model, True),
            "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}],
        },
    ]
    if (request.get("stream_options") or {}).get("include_usage"):
        chunks.append({**_completion(model, True), "choices": [], "usage": _usage()})
    start_response("200 OK", [("Content-Type", "text/event-stream")])
    return iter([*(f"data: {json.dumps(c)}\n\n".encode() for c in chunks), b"data: [DONE]\n\n"])
