"""URLs as they may be shown: never with userinfo; and whether credentials to one travel in
clear text."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit


def display_url(url: str) -> str:
    """``url`` without ``user:password@`` (a token in a URL is a secret like any other)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def is_loopback(host: str | None) -> bool:
    """``localhost`` or a loopback address."""
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def in_clear_text(url: str) -> bool:
    """Would anything sent to ``url`` cross a network unencrypted (``http://``, not loopback)?"""
    parts = urlsplit(url)
    return parts.scheme == "http" and not is_loopback(parts.hostname)
