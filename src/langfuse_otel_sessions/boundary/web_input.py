"""Request input a client controls: header bytes as UTF-8 (``surrogateescape``: bytes that are
not UTF-8 round-trip, and the id rule refuses them), cookies in one linear pass."""

from __future__ import annotations

from collections.abc import Collection


def decode_bytes(raw: bytes) -> str:
    """A header value from ASGI's bytes."""
    return raw.decode("utf-8", "surrogateescape")


def as_opentelemetry_reads(raw: bytes) -> str:
    """An ASGI header value as OpenTelemetry's ASGI instrumentation reads it."""
    try:
        return raw.decode("utf-8")
    except ValueError:
        try:
            return raw.decode("unicode_escape")
        except ValueError:  # OpenTelemetry's middleware fails on it too
            return raw.decode("latin-1")


def from_wsgi(value: str) -> str:
    """A WSGI environ value (the raw bytes as latin-1 text, PEP 3333) as UTF-8 text."""
    return value if value.isascii() else decode_bytes(value.encode("latin-1", "replace"))


def cookie_values(header: str, names: Collection[str]) -> dict[str, str]:
    """The values of the cookies named in ``names``: first wins, quotes dropped, nothing
    un-escaped. Not ``SimpleCookie``: quadratic on hostile input on CPython 3.10-3.12."""
    if not header or not names:
        return {}
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in names or name in found:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        found[name] = value
        if len(found) == len(names):
            break
    return found
