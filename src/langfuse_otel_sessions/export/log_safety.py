"""Text from a server or a proxy, made safe for a log line: known secrets replaced by ``***``,
control characters escaped (no forged lines, no terminal escapes), length capped.

A server, proxy or Collector may echo the request back, ``Authorization`` included; it may
also answer with newlines, ANSI escapes or binary bytes."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping

#: The most characters of a server's words that reach a log line.
MAX_LOGGED_CHARS = 500

# Header values that are never secret (everything else sent is treated as one).
_PLAIN_HEADERS = frozenset(
    ("content-type", "content-encoding", "content-length", "user-agent", "accept")
)
_SHORTEST_SECRET = 4


def secrets_in(headers: Mapping[str, str], *more: str | None) -> tuple[str, ...]:
    """Every secret a request carries: the values of its headers (but the plain ones listed
    above), the token after an auth scheme, and the ``user:password`` in a Basic token and
    its password; ``more`` are further header values such as a proxy's or userinfo's."""
    found: set[str] = set()
    values = [v for k, v in headers.items() if k.lower() not in _PLAIN_HEADERS and v]
    for value in [*values, *(m for m in more if m)]:
        found.add(value)
        scheme, _, token = value.partition(" ")
        if token:
            found.add(token.strip())
        if scheme.lower() == "basic" and token:
            try:
                decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                continue
            found.add(decoded)
            found.add(decoded.partition(":")[2])
    return tuple(sorted((s for s in found if len(s) >= _SHORTEST_SECRET), key=len, reverse=True))


def loggable(text: str, secrets: Iterable[str] = (), limit: int = MAX_LOGGED_CHARS) -> str:
    """``text`` with each of ``secrets`` replaced by ``***``, every non-printable character
    (C0, C1, bidi controls...) escaped as Python would (``\\n``, ``\\x1b``), at most
    ``limit`` characters (then ``...``)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    escaped = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."
