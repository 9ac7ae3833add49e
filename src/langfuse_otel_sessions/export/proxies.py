"""Which proxy a request goes through, read from the environment as ``requests``/``urllib`` do.

* ``HTTPS_PROXY`` for ``https://`` destinations, ``HTTP_PROXY`` for ``http://`` ones, else
  ``ALL_PROXY``; the lower-case spelling wins, an empty one turns the proxy off, and
  ``HTTP_PROXY`` is ignored under CGI (``REQUEST_METHOD`` set), all as ``urllib`` reads them.
* ``NO_PROXY`` (:func:`bypasses`): ``*``; a host name, which also covers its subdomains (a
  leading ``.`` or ``*.`` changes nothing); an IP address or a CIDR network (``10.0.0.0/8``,
  ``fd00::/8``); any of them with ``:port`` to bypass only that port.
* Only ``http://`` proxies are spoken to. Another scheme (``https://``: TLS to the proxy,
  ``socks5://``) is a :attr:`Proxy.problem`: nothing is sent, rather than sending in clear text
  what was meant to be encrypted, or HTTP to a SOCKS server.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies_environment

from .urls import display_url, is_loopback

_DEFAULT_PROXY_PORT = 8080  # what urllib and requests assume for a proxy URL without a port


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: where it listens, its ``Proxy-Authorization`` (never shown), or why it
    cannot be used."""

    host: str
    port: int
    source: str  # the variable it came from
    authorization: str | None = field(default=None, repr=False)
    problem: str | None = None
    scheme: str = "http"

    @property
    def shown(self) -> str:
        """``http://host:port``, for messages (no credentials)."""
        return f"{self.scheme}://{authority(self.host, self.port)}"

    def in_clear_text(self) -> bool:
        """Does what is sent to this proxy cross a network unencrypted (any non-loopback
        proxy: it is spoken to in plain HTTP)?"""
        return not is_loopback(self.host)


def bracketed(host: str) -> str:
    """``host`` as it goes into a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def authority(host: str, port: int) -> str:
    """``host:port`` as it goes into a URL, a request line or ``CONNECT``."""
    return f"{bracketed(host)}:{port}"


def proxy_for(url: str) -> Proxy | None:
    """The proxy for ``url`` from the environment, or ``None`` (none set, or ``NO_PROXY``)."""
    parts = urlsplit(url)
    proxies = getproxies_environment()
    scheme = parts.scheme.lower()
    found = proxies.get(scheme), f"{scheme.upper()}_PROXY"
    if not found[0]:
        found = proxies.get("all"), "ALL_PROXY"
    raw, source = found
    host = parts.hostname or ""
    if not raw or bypasses(host, parts.port or (443 if scheme == "https" else 80), proxies):
        return None
    try:
        given = urlsplit(raw if "://" in raw else f"http://{raw}")
        port = given.port or _DEFAULT_PROXY_PORT
        proxy_host = given.hostname or ""
    except ValueError:
        why = f"the proxy URL in {source} is not a valid URL: nothing is sent"
        return Proxy("", 0, source, problem=why)
    scheme = given.scheme.lower()
    if scheme != "http":
        why = (
            f"the proxy {display_url(raw)} (from {source}) is a {scheme}:// proxy, which is not "
            "supported: nothing is sent through it (use an http:// proxy, or exclude this host "
            "with NO_PROXY)"
        )
        return Proxy(proxy_host, port, source, problem=why, scheme=scheme)
    if not proxy_host:
        why = f"the proxy {display_url(raw)} (from {source}) has no host: nothing is sent"
        return Proxy(proxy_host, port, source, problem=why)
    auth = None
    if given.username is not None:
        token = f"{unquote(given.username)}:{unquote(given.password or '')}".encode()
        auth = "Basic " + base64.b64encode(token).decode("ascii")
    return Proxy(proxy_host, port, source, auth)


def bypasses(host: str, port: int, proxies: dict[str, str] | None = None) -> bool:
    """Does ``NO_PROXY`` exclude ``host`` (a name, or an IP address without brackets) on
    ``port``?"""
    no_proxy = (proxies if proxies is not None else getproxies_environment()).get("no", "")
    host = host.strip("[]").lower().rstrip(".")
    address = _address(host)
    for entry in no_proxy.lower().replace(" ", ",").split(","):
        if entry == "*":
            return True
        name, wanted_port = _split_port(entry)
        if not name or (wanted_port is not None and wanted_port != port):
            continue
        if address is not None:
            if _address_matches(address, name):
                return True
            continue
        name = name.removeprefix("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address/network."""
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return inside, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, int(port) if port.isdigit() else None
    return entry, None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None


def _address_matches(address: ipaddress.IPv4Address | ipaddress.IPv6Address, entry: str) -> bool:
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return address.version == network.version and address in network
