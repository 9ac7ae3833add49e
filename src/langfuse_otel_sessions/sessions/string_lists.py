"""Reading a flat list of string literals (``['a', "customer's"]`` or ``["a"]``), safely.

A list of tags crosses HTTP as text: the Langfuse SDK writes ``str(list)`` (Python literal
syntax, which quotes a string holding ``'`` with ``"`` and escapes as needed), other writers
JSON. :func:`string_list` reads both exactly, in work linear in the text, and never raises.

Why not the obvious tools: ``json.loads`` raises ``RecursionError`` on ``[[[[...`` and does not
read Python's quoting; ``ast.literal_eval`` builds the whole syntax tree of any expression
before it could be judged (recursion and memory in the nesting of hostile input) and warns on
invalid escapes. Here a regular expression admits one string literal at a time, without
backtracking across items, so nesting is simply not a list of strings.
"""

from __future__ import annotations

import json
import re

#: Longer text is not read at all (8192 bytes is the W3C limit of a whole ``baggage`` header).
MAX_LIST_TEXT = 8192
_STRING = r"""'[^'\\]*(?:\\.[^'\\]*)*'|"[^"\\]*(?:\\.[^"\\]*)*\""""
_ITEM = re.compile(rf"\s*({_STRING})\s*([,\]])", re.DOTALL)
_END = re.compile(r"\s*\]")
_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
}


def string_list(text: str) -> list[str] | None:
    """The strings of ``text`` if it is exactly one flat list of string literals (Python's or
    JSON's syntax, a trailing comma allowed), else ``None``. Never raises."""
    if not isinstance(text, str) or len(text) > MAX_LIST_TEXT:
        return None
    text = text.strip()
    if not text.startswith("["):
        return None
    strings: list[str] = []
    position = 1
    while True:
        end = _END.match(text, position)
        if end is not None:  # ``[]`` or a trailing comma
            return strings if end.end() == len(text) else None
        item = _ITEM.match(text, position)
        if item is None:
            return None
        decoded = _decoded(item.group(1))
        if decoded is None:
            return None
        strings.append(decoded)
        position = item.end()
        if item.group(2) == "]":
            return strings if position == len(text) else None


def _decoded(literal: str) -> str | None:
    """One string literal's value: a JSON string (``\\uXXXX`` surrogate pairs, ``\\/``) when
    it is one, else a Python one (``\\xXX``, ``\\UXXXXXXXX``, ``\\'``)."""
    if literal[0] == '"':
        try:
            decoded = json.loads(literal)  # one flat string token: no nesting, linear
        except ValueError:
            pass  # a Python literal
        else:
            return decoded if isinstance(decoded, str) else None
    try:
        return _ESCAPE.sub(_unescaped, literal[1:-1])
    except ValueError:  # an escape Python's repr never writes, or past U+10FFFF
        return None


def _unescaped(escape: re.Match[str]) -> str:
    hex_digits = escape.group(1) or escape.group(2) or escape.group(3)
    if hex_digits is not None:
        return chr(int(hex_digits, 16))
    simple = _SIMPLE_ESCAPES.get(escape.group(4))
    if simple is None:
        raise ValueError("unknown escape")
    return simple
