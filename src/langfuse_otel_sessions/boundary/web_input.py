"""Reading request input that a client controls: header text as UTF-8, cookies in linear time.

* Header bytes are decoded as UTF-8, so ``X-Session-Id: café-ü`` is the same session
  as ``session("café-ü")``. Bytes that are not UTF-8 are kept as lone surrogates
  (``surrogateescape``) so the raw header round-trips unchanged; :func:`~.ids.id_problem`
  refuses such an id as "not valid UTF-8".
* ASGI hands bytes; WSGI (PEP 3333) hands the same bytes as latin-1 text: both end up as the
  same ``str``.
* Cookies are looked up by name in one pass over the header. The standard library's
  ``SimpleCookie`` is quadratic on hostile input on CPython 3.10-3.12 (one 60 KiB header held an
  event loop for seconds); this is linear and reads only the cookies asked for.
* Nothing is percent-decoded: a header or cookie value ``caf%C3%A9`` is the id ``caf%C3%A9``.
"""

from __future__ import annotations

from collections.abc import Collection

_UTF8 = "utf-8"
_RAW = "surrogateescape"


def decode_bytes(raw: bytes) -> str:
    """A header value from ASGI's bytes."""
    return raw.decode(_UTF8, _RAW)


def encode_text(text: str) -> bytes:
    """The bytes of a value :func:`decode_bytes` (or :func:`from_wsgi`) produced."""
    return text.encode(_UTF8, _RAW)


def from_wsgi(value: str) -> str:
    """A WSGI environ value (the raw bytes as latin-1 text, PEP 3333) as UTF-8 text."""
    return decode_bytes(value.encode("latin-1", "replace"))


def to_wsgi(text: str) -> str:
    """The WSGI (latin-1) form of ``text``."""
    return encode_text(text).decode("latin-1")


def cookie_values(header: str, names: Collection[str]) -> dict[str, str]:
    """The values of the cookies named in ``names`` (first occurrence wins), in one linear pass.

    ``name=value`` pairs are separated by ``;``; surrounding whitespace is dropped, and a value
    in double quotes loses its quotes. Nothing is un-escaped.
    """
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
