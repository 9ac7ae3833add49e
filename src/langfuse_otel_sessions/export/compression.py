"""How the span exporter compresses a request body: gzip (default), deflate or none.

OpenTelemetry's OTLP exporter gzips at level 9 (``GzipFile`` without a level). On span batches
level 6 (zlib's own default) makes bodies within about 1% of level 9's size for a fraction of the
CPU, so it is ours; lower levels trade bytes for CPU. With the optional ``isal`` package
(``pip install '.[fast]'``), ``backend="isal"`` gzips through Intel's ISA-L, many times faster
still, at ISA-L's levels 0-3 and larger bodies (``docs/performance.md`` has the figures).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from .._logging import logger
from ..attributes import ENV_COMPRESSION_BACKEND, ENV_COMPRESSION_LEVEL
from ..errors import ConfigurationError

DEFAULT_GZIP_LEVEL = 5
DEFAULT_ISAL_LEVEL = 1
_ISAL_LEVELS = range(4)
_ZLIB_LEVELS = range(10)


@dataclass(frozen=True)
class BodyCompression:
    """A compression setting: ``compress(body)`` and the ``Content-Encoding`` it implies."""

    name: str  # "gzip", "deflate" or "none"
    level: int
    backend: str  # "zlib" or "isal"

    @property
    def content_encoding(self) -> str | None:
        return None if self.name == "none" else self.name

    def compress(self, body: bytes) -> bytes:
        if self.name == "none":
            return body
        return _compressor(self.backend, self.name)(body, self.level)


def _zlib_gzip(body: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: a gzip container
    return compressor.compress(body) + compressor.flush()


def _zlib_deflate(body: bytes, level: int) -> bytes:
    return zlib.compress(body, level)


def _isal_gzip(body: bytes, level: int) -> bytes:
    from isal import isal_zlib  # noqa: PLC0415 - an optional dependency, checked at construction

    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, 31)
    return bytes(compressor.compress(body) + compressor.flush())


def _compressor(backend: str, name: str) -> Callable[[bytes, int], bytes]:
    if backend == "isal":
        return _isal_gzip
    return _zlib_gzip if name == "gzip" else _zlib_deflate


def isal_available() -> bool:
    """Whether the optional ``isal`` package can be imported."""
    try:
        from isal import isal_zlib  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def body_compression(
    name: object = "gzip", level: int | None = None, backend: str = "zlib"
) -> BodyCompression:
    """Validate a compression setting; raises ``ConfigurationError`` naming what is wrong.

    ``name`` may also be an OpenTelemetry ``Compression`` member (its value is used).
    """
    value = getattr(name, "value", name)
    if not isinstance(value, str) or value.strip().lower() not in {"gzip", "deflate", "none"}:
        raise ConfigurationError("compression must be 'gzip', 'deflate' or 'none'")
    value = value.strip().lower()
    if backend not in {"zlib", "isal"}:
        raise ConfigurationError("compression_backend must be 'zlib' or 'isal'")
    if backend == "isal":
        if value != "gzip":
            raise ConfigurationError("compression_backend='isal' works with compression='gzip'")
        if not isal_available():
            raise ConfigurationError(
                "compression_backend='isal' needs the optional 'isal' package "
                "(pip install isal, or the package's [fast] extra)"
            )
    levels = _ISAL_LEVELS if backend == "isal" else _ZLIB_LEVELS
    if level is None:
        level = DEFAULT_ISAL_LEVEL if backend == "isal" else DEFAULT_GZIP_LEVEL
    elif isinstance(level, bool) or not isinstance(level, int) or level not in levels:
        raise ConfigurationError(
            f"compression_level must be an integer from {levels[0]} to {levels[-1]} "
            f"for the {backend} backend"
        )
    return BodyCompression(value, level, backend)


def configured_compression(
    name: object = None, level: int | None = None, backend: str | None = None
) -> BodyCompression:
    """The exporter's setting: arguments, else ``LANGFUSE_OTEL_COMPRESSION_LEVEL`` /
    ``LANGFUSE_OTEL_COMPRESSION_BACKEND``, else gzip level 6 through zlib.

    A bad argument raises; a bad variable warns, names itself and is ignored.
    """
    if backend is None:
        raw = os.environ.get(ENV_COMPRESSION_BACKEND, "").strip().lower()
        backend = "zlib"
        if raw and raw != "zlib":
            if raw == "isal" and isal_available():
                backend = "isal"
            else:
                logger.warning(
                    "Ignoring %s=%r: expected zlib, or isal with the isal package installed",
                    ENV_COMPRESSION_BACKEND,
                    raw,
                )
    if level is None:
        raw = os.environ.get(ENV_COMPRESSION_LEVEL, "").strip()
        if raw:
            try:
                return body_compression("gzip" if name is None else name, int(raw), backend)
            except (ValueError, ConfigurationError):
                logger.warning(
                    "Ignoring %s=%r: not a level for %s", ENV_COMPRESSION_LEVEL, raw, backend
                )
    return body_compression("gzip" if name is None else name, level, backend)
