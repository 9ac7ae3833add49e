"""Request body compression: what each setting sends decodes to the same body."""

from __future__ import annotations

import gzip
import zlib
from pydoc_data.topics import topics

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression

from langfuse_otel_sessions.errors import ConfigurationError
from langfuse_otel_sessions.export.compression import BodyCompression, body_compression

BODY = " ".join(topics[name] for name in sorted(topics))[:200_000].encode()  # real prose


@pytest.mark.parametrize("backend", ["zlib", "isal"])
def test_each_backend_round_trips(backend: str) -> None:
    if backend == "isal":
        pytest.importorskip("isal")
    sent = BodyCompression("gzip", backend).compress(BODY)
    assert gzip.decompress(sent) == BODY
    assert len(sent) < len(BODY) / 2
    assert zlib.decompress(BodyCompression("deflate", backend).compress(BODY)) == BODY


@pytest.mark.parametrize(
    ("value", "encoding"),
    [
        (None, "gzip"),
        ("gzip", "gzip"),
        (" GZIP ", "gzip"),
        (Compression.Gzip, "gzip"),
        ("deflate", "deflate"),
        (Compression.Deflate, "deflate"),
        ("none", None),
        (Compression.NoCompression, None),
    ],
)
def test_the_compression_argument_takes_opentelemetrys_values(
    value: object, encoding: str | None
) -> None:
    setting = body_compression(value)
    assert setting.content_encoding == encoding
    if encoding is None:
        assert setting.compress(BODY) is BODY


@pytest.mark.parametrize("value", ["brotli", "", 6, True])
def test_bad_settings_raise(value: object) -> None:
    with pytest.raises(ConfigurationError, match="compression must be"):
        body_compression(value)
