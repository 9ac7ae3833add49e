"""URLs as they may be shown (never with userinfo), and whether a host is loopback."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit, urlunsplit

_NUMERIC_IPV4 = re.compile(r"[0-9a-fx.]+")


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
    """``localhost`` or a loopback address, in any spelling the resolver accepts (``127.1``,
    ``0x7f.1``, ``localhost.``, ``[::ffff:127.0.0.1]``)."""
    if not host:
        return False
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        if not _NUMERIC_IPV4.fullmatch(name):
            return False
        try:  # the short and numeric IPv4 forms that inet_aton (and so connect) accept
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
