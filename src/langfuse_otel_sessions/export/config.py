"""Where spans and scores go, with which credentials and headers: resolved once, said once
(precedence and rules: ``docs/exporter.md``, "Where spans go")."""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import unquote, urlsplit

from .._logging import logger
from ..attributes import ENV_COLLECTOR_AUTH, ENV_COLLECTOR_ENDPOINT, ENV_COLLECTOR_HEADERS
from ..environment import env_bool
from ..errors import ConfigurationError
from .http import basic_auth, display_url, proxy_for

ENV_PUBLIC_KEY = "LANGFUSE_PUBLIC_KEY"
ENV_SECRET_KEY = "LANGFUSE_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
ENV_BASE_URL = "LANGFUSE_BASE_URL"
ENV_HOST = "LANGFUSE_HOST"
LANGFUSE_CLOUD_URL = "https://cloud.langfuse.com"
OTEL_TRACES_PATH = "/api/public/otel/v1/traces"
INGESTION_PATH = "/api/public/ingestion"
COLLECTOR_TRACES_PATH = "/v1/traces"
INGESTION_VERSION_HEADER = "x-langfuse-ingestion-version"
INGESTION_VERSION = "4"

_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f?#]")  # no spaces, controls, query or fragment
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")  # an RFC 7230 header name
_BAD_VALUE = re.compile(r"^\s|[\r\n\x00]|[^\x00-\xff]")


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def positive_number(value: object, name: str, default: float | None = None) -> float:
    """``value`` (``default`` if ``None``) if it is a positive, finite int or float (not a
    bool), else :class:`ConfigurationError` naming ``name``."""
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigurationError(f"{name} must be a positive, finite number")
    return float(value)


def check_url(url: object, source: str) -> str:
    """``url`` without a trailing slash, or :class:`ConfigurationError` naming ``source``, never
    the URL (it may hold a token)."""
    if not isinstance(url, str) or not _url_ok(url):
        raise ConfigurationError(
            f"{source} must be an http(s) URL with a host, a port from 1 to 65535 and no "
            "query, fragment or ;parameters (a route is appended to it)"
        )
    return url.rstrip("/")


def _url_ok(url: str) -> bool:
    if _BAD_URL_CHARS.search(url):
        return False
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port  # a port out of range or not a number raises
        if "[" in parts.netloc:  # Python 3.10 does not check what is between the brackets
            ipaddress.IPv6Address((host or "").split("%")[0])
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host) and port != 0 and ";" not in parts.path


def is_loopback(host: str | None) -> bool:
    """``localhost`` (``*.localhost``, ``localhost.``) or a loopback IP, IPv4-mapped included."""
    name = (host or "").strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def header_problem(name: str, value: str) -> str | None:
    """Why ``name: value`` cannot be sent (naming the header, never its value), or ``None``."""
    valid = _TOKEN.match(name).group()  # type: ignore[union-attr] # '*' always matches
    if not name or valid != name:
        return (
            f"header name {valid[:40]!r}... is not a valid HTTP token (no spaces, ':' or controls)"
        )
    if _BAD_VALUE.search(value):
        return f"the value of header {name!r} has leading space, CR, LF, NUL or non-latin-1 text"
    return None


def merged(base: Mapping[str, str], override: Mapping[str, str]) -> dict[str, str]:
    """``base`` updated with ``override``, names compared case-insensitively (``override`` wins
    and keeps its spelling)."""
    names = {name.lower() for name in override}
    return {**{k: v for k, v in base.items() if k.lower() not in names}, **override}


@dataclass(frozen=True)
class LangfuseConfig:
    """Resolved Langfuse credentials and base URL. The secret key never appears in its repr."""

    public_key: str | None
    secret_key: str | None = field(repr=False)
    base_url: str
    base_url_source: str = "the default (Langfuse Cloud)"
    problem: str | None = None  # why the base URL from the environment cannot be used

    @property
    def missing(self) -> tuple[str, ...]:
        """The environment variables whose values are missing."""
        keys = ((ENV_PUBLIC_KEY, self.public_key), (ENV_SECRET_KEY, self.secret_key))
        return tuple(name for name, value in keys if not value)

    def authorization(self) -> str:
        """The ``Authorization`` header value (call only when nothing is missing)."""
        return basic_auth(self.public_key or "", self.secret_key or "")


def resolve_langfuse_config(
    public_key: str | None = None, secret_key: str | None = None, base_url: str | None = None
) -> LangfuseConfig:
    """Keys and base URL. A bad ``base_url`` raises :class:`ConfigurationError`; a bad variable
    goes in ``problem`` (falling back to Langfuse Cloud would send data where it was not meant)."""
    for name, value in (("public_key", public_key), ("secret_key", secret_key)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigurationError(f"{name} must be a non-empty string")
    url, source, problem = LANGFUSE_CLOUD_URL, LangfuseConfig.base_url_source, None
    if base_url is not None:
        url, source = check_url(base_url, "base_url"), "the base_url argument"
    elif (raw := _env(ENV_BASE_URL) or _env(ENV_HOST)) is not None:
        source = ENV_BASE_URL if _env(ENV_BASE_URL) else ENV_HOST
        try:
            url = check_url(raw, source)
        except ConfigurationError as error:
            problem = str(error)
    public_key = public_key if public_key is not None else _env(ENV_PUBLIC_KEY)
    secret_key = secret_key if secret_key is not None else _env(ENV_SECRET_KEY)
    return LangfuseConfig(public_key, secret_key, url, source, problem)


@dataclass(frozen=True)
class Route:
    """One destination: its URL, the headers sent there, and why nothing will be sent, if so."""

    mode: Literal["direct", "collector"]
    url: str  # may hold userinfo: show it with display_url()
    source: str  # "the endpoint argument", "LANGFUSE_BASE_URL", ...
    setting: str  # what to change when that server redirects
    headers: Mapping[str, str] = field(repr=False, default_factory=dict)
    problem: str | None = None
    langfuse_auth: bool = False  # Langfuse's Basic auth is among the headers

    @property
    def shown(self) -> str:
        return display_url(self.url)

    def __repr__(self) -> str:  # the URL may hold a token; headers are never shown
        return f"Route(mode={self.mode!r}, url={self.shown!r}, source={self.source!r})"

    @property
    def server(self) -> str:
        return "Langfuse" if self.mode == "direct" else "the Collector"


def direct_route(
    config: LangfuseConfig, path: str, headers: Mapping[str, str], hint: str = ""
) -> Route:
    """To Langfuse (``{base_url}{path}``) with its Basic auth, or why not (``hint`` ends the
    message about missing keys)."""
    setting = "base_url" if config.base_url_source == "the base_url argument" else ENV_BASE_URL
    route = Route("direct", config.base_url + path, config.base_url_source, setting, headers)
    if config.problem is not None or config.missing:
        keys = f"set {' and '.join(config.missing)} (or pass public_key/secret_key){hint}"
        return replace(route, problem=config.problem or keys)
    auth = {"Authorization": config.authorization()}
    return replace(route, headers=merged(headers, auth), langfuse_auth=True)


def span_route(
    config: LangfuseConfig,
    *,
    endpoint: str | None,
    explicit_direct: bool,
    headers: Mapping[str, str] | None,
    collector_auth: bool | None,
) -> Route:
    """The span exporter's destination: ``endpoint`` > explicit Langfuse arguments >
    ``LANGFUSE_OTEL_COLLECTOR_ENDPOINT`` > Langfuse."""
    raw = None if explicit_direct else _env(ENV_COLLECTOR_ENDPOINT)
    if endpoint is not None:
        url, source, setting = check_url(endpoint, "endpoint"), "the endpoint argument", "endpoint"
    elif raw is not None:
        source = setting = ENV_COLLECTOR_ENDPOINT
        try:
            url = check_url(raw, ENV_COLLECTOR_ENDPOINT)
        except ConfigurationError as error:  # no fallback to Langfuse: a Collector was meant
            return Route("collector", raw, source, setting, problem=str(error))
    else:
        hint = ", or endpoint= / LANGFUSE_OTEL_COLLECTOR_ENDPOINT for a Collector"
        return direct_route(config, OTEL_TRACES_PATH, headers or {}, hint)
    url += COLLECTOR_TRACES_PATH if not urlsplit(url).path.strip("/") else ""
    sent = dict(headers) if headers is not None else _env_headers(ENV_COLLECTOR_HEADERS)
    if not (
        env_bool(ENV_COLLECTOR_AUTH, default=False) if collector_auth is None else collector_auth
    ):
        return Route("collector", url, source, setting, sent)
    if config.missing:
        problem = f"set {' and '.join(config.missing)} (Langfuse auth for the Collector)"
        return Route("collector", url, source, setting, sent, problem)
    langfuse = {
        "Authorization": config.authorization(),
        INGESTION_VERSION_HEADER: INGESTION_VERSION,
    }
    return Route("collector", url, source, setting, merged(langfuse, sent), langfuse_auth=True)


def _env_headers(name: str) -> dict[str, str]:
    """``key=value,...`` (URL-encoded values, as in ``OTEL_EXPORTER_OTLP_HEADERS``); a malformed
    entry warns (without its value) and is skipped."""
    headers: dict[str, str] = {}
    for entry in filter(str.strip, os.environ.get(name, "").split(",")):
        key, sep, value = entry.partition("=")
        key, value = unquote(key).strip(), unquote(value).strip()
        problem = "expected key=value" if not sep or not key else header_problem(key, value)
        if problem is not None:
            logger.warning("Ignoring an entry in %s: %s", name, problem)
            continue
        headers = merged(headers, {key: value})
    return headers


def announce(owner: str, route: Route, sends: str) -> None:
    """The one INFO line naming where ``sends`` go (an ERROR when nothing will be sent), and a
    warning, once, for credentials crossing a network over plain http (not just loopback)."""
    if route.problem is not None:
        logger.error("%s: %s mode, nothing will be sent: %s", owner, route.mode, route.problem)
        return
    auth = ""
    if route.mode == "collector":
        auth = ", with Langfuse auth" if route.langfuse_auth else ", no Langfuse keys sent"
    proxy = proxy_for(route.url)[0]
    via = "" if proxy is None else f" through the proxy {proxy} (from the environment)"
    where = f"{route.shown} (from {route.source})"
    logger.info("%s: %s mode, %s to %s%s%s", owner, route.mode, sends, where, via, auth)
    url = urlsplit(route.url)
    plain_proxy = proxy is not None and proxy.startswith("http://")
    plain_proxy = plain_proxy and not is_loopback(urlsplit(proxy or "").hostname)
    credentials = "@" in url.netloc or bool(route.headers)  # any header may be an API key
    if credentials and url.scheme == "http" and (plain_proxy or not is_loopback(url.hostname)):
        via = "" if proxy is None else f", through the proxy {proxy}"
        _warn_once(
            f"{owner}: credentials go to {route.shown} over plain http{via}: they travel "
            "unencrypted (use https, or a loopback address)"
        )


@functools.cache
def _warn_once(warning: str) -> None:
    logger.warning("%s", warning)
