"""Header names and values checked before anything is sent, and merged case-insensitively;
``Retry-After`` read from an answer.

A CR, LF or NUL in a value (or a name that is not an RFC 7230 token) would make every request
fail, with the value in the traceback; two spellings of one name would send it twice.
Messages name the header, never its value.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SHOWN_NAME_CHARS = 40


def header_problem(name: str, value: str) -> str | None:
    """Why ``name: value`` cannot be sent (naming the header, not its value), or ``None``."""
    if not _TOKEN.fullmatch(name):
        valid = re.match(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]*", name)
        shown = (valid.group() if valid else "")[:_SHOWN_NAME_CHARS]
        return f"header name {shown!r}... is not a valid HTTP token (no spaces, ':' or controls)"
    if any(c in value for c in "\r\n\x00"):
        return f"the value of header {name!r} contains CR, LF or NUL"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return f"the value of header {name!r} is not latin-1 text"
    return None


def merged(base: Mapping[str, str], override: Mapping[str, str]) -> dict[str, str]:
    """``base`` updated with ``override``, names compared case-insensitively (``override`` wins
    and keeps its spelling)."""
    names = {name.lower() for name in override}
    result = {name: value for name, value in base.items() if name.lower() not in names}
    result.update(override)
    return result


def retry_after_seconds(header: str | None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), or ``None``."""
    if header is None:
        return None
    header = header.strip()
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None
