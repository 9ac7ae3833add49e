"""The span exporter's ``compression``: ``gzip`` (default, level 2, through ISA-L when ``isal`` is
installed), ``deflate`` (Collector) or ``none`` (``docs/exporter.md``)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from types import ModuleType

from ..errors import ConfigurationError

LEVEL = 2  # ISA-L's levels are 0-3; at 2 it costs what its level 1 does, for fewer bytes
_WBITS = {"gzip": 31, "deflate": 15}  # a gzip container; zlib's, which HTTP calls deflate

_isal_zlib: ModuleType | None
try:
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - the [fast] extra is installed in the test environment
    _isal_zlib = None


@dataclass(frozen=True)
class BodyCompression:
    """A compression setting: ``compress(body)`` and the ``Content-Encoding`` it implies."""

    name: str  # "gzip", "deflate" or "none"
    backend: str = "isal" if _isal_zlib is not None else "zlib"

    @property
    def content_encoding(self) -> str | None:
        return None if self.name == "none" else self.name

    def compress(self, body: bytes) -> bytes:
        if self.name == "none":
            return body
        module: ModuleType = zlib if self.backend == "zlib" or _isal_zlib is None else _isal_zlib
        compressor = module.compressobj(LEVEL, module.DEFLATED, _WBITS[self.name])
        return bytes(compressor.compress(body) + compressor.flush())


def body_compression(name: object = None) -> BodyCompression:
    """Validate ``compression`` (a string or OpenTelemetry's ``Compression``; ``None`` is gzip)."""
    value = getattr(name, "value", "gzip" if name is None else name)
    if not isinstance(value, str) or value.strip().lower() not in _WBITS.keys() | {"none"}:
        raise ConfigurationError("compression must be 'gzip', 'deflate' or 'none'")
    return BodyCompression(value.strip().lower())
