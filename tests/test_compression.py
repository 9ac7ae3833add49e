"""Request body compression: what each setting sends decodes to the same body."""

from __future__ import annotations

import gzip
import zlib
from pydoc_data.topics import topics

import pytest

from langfuse_otel_sessions.errors import ConfigurationError
from langfuse_otel_sessions.export.compression import body_compression, isal_available

BODY = " ".join(topics[name] for name in sorted(topics))[:200_000].encode()  # real prose


@pytest.mark.parametrize("level", [None, 0, 1, 5, 9])
def test_gzip_levels_round_trip(level: int | None) -> None:
    setting = body_compression("gzip", level)
    assert setting.content_encoding == "gzip"
    assert gzip.decompress(setting.compress(BODY)) == BODY


def test_defaults_and_other_encodings() -> None:
    assert body_compression().level == 5
    assert zlib.decompress(body_compression("deflate").compress(BODY)) == BODY
    none = body_compression("none")
    assert none.content_encoding is None
    assert none.compress(BODY) is BODY


def test_lower_levels_cost_bytes() -> None:
    sizes = [len(body_compression("gzip", level).compress(BODY)) for level in (1, 6, 9)]
    assert sizes[0] >= sizes[1] >= sizes[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("brotli",), "compression must be"),
        ((None,), "compression must be"),
        (("gzip", 10), "from 0 to 9"),
        (("gzip", -1), "from 0 to 9"),
        (("gzip", True), "from 0 to 9"),
        (("gzip", 6, "lz4"), "compression_backend"),
        (("deflate", 1, "isal"), "works with compression='gzip'"),
    ],
)
def test_bad_settings_raise(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        body_compression(*args)  # type: ignore[arg-type]


def test_isal_when_installed() -> None:
    if not isal_available():
        with pytest.raises(ConfigurationError, match="optional 'isal' package"):
            body_compression("gzip", None, "isal")
        return
    setting = body_compression("gzip", None, "isal")
    assert setting.level == 1
    assert gzip.decompress(setting.compress(BODY)) == BODY
    with pytest.raises(ConfigurationError, match="from 0 to 3"):
        body_compression("gzip", 6, "isal")
