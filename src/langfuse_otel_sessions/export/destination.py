"""Where spans and scores go, decided once and said once.

The rules (``docs/exporter.md`` explains them to users):

* Langfuse credentials go only to Langfuse. Direct mode sends to
  ``{base_url}/api/public/otel/v1/traces`` with Langfuse's Basic auth; nothing of
  ``OTEL_EXPORTER_OTLP_*`` is read (those belong to OpenTelemetry's own ``otlp`` exporter).
* Collector mode is chosen explicitly: ``endpoint=``, or ``LANGFUSE_OTEL_COLLECTOR_ENDPOINT``
  (explicit Langfuse arguments win over that variable). Headers: ``headers=``, else
  ``LANGFUSE_OTEL_COLLECTOR_HEADERS``. Langfuse's auth header goes to a Collector only when asked
  (``collector_auth=True`` or ``LANGFUSE_OTEL_COLLECTOR_AUTH=true``).
* When a destination is created, one INFO line names the mode, the URL (userinfo scrubbed),
  where it came from and the proxy, if any; credentials that would cross a network in clear
  text warn once (:func:`clear_text_warnings`: an ``http://`` destination or proxy that is not
  loopback).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from .._logging import logger
from ..attributes import ENV_COLLECTOR_AUTH, ENV_COLLECTOR_ENDPOINT, ENV_COLLECTOR_HEADERS
from ..environment import env_bool
from ..errors import ConfigurationError
from .config import (
    BASE_URL_ARGUMENT,
    ENV_BASE_URL,
    OTEL_TRACES_PATH,
    LangfuseConfig,
    check_url,
)
from .http import proxy_for
from .http_headers import header_problem, merged
from .urls import display_url, is_loopback

INGESTION_VERSION_HEADER = "x-langfuse-ingestion-version"
INGESTION_VERSION = "4"
COLLECTOR_TRACES_PATH = "/v1/traces"

_warned: set[str] = set()
_warned_lock = threading.Lock()


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
        """Who answers there, for messages."""
        return "Langfuse" if self.mode == "direct" else "the Collector"

    def sends_credentials(self) -> bool:
        """Userinfo, Langfuse's auth, or any header the user gave (an API key may be named
        anything): all of them secrets as far as we know."""
        return "@" in urlsplit(self.url).netloc or bool(self.headers)


def direct_route(
    config: LangfuseConfig, path: str, headers: Mapping[str, str], hint: str = ""
) -> Route:
    """To Langfuse itself (``{base_url}{path}``) with its Basic auth, or why it cannot be
    (``hint`` ends the message about missing keys)."""
    url = config.base_url + path
    problem = None
    sent = dict(headers)
    if config.problem is not None:
        problem = config.problem
    elif config.missing:
        problem = "set " + " and ".join(config.missing) + f" (or pass public_key/secret_key){hint}"
    else:
        for name in [name for name in sent if name.lower() == "authorization"]:
            del sent[name]
        sent["Authorization"] = config.authorization()
    setting = "base_url" if config.base_url_source == BASE_URL_ARGUMENT else ENV_BASE_URL
    return Route("direct", url, config.base_url_source, setting, sent, problem, problem is None)


def span_route(
    config: LangfuseConfig,
    *,
    endpoint: str | None,
    explicit_direct: bool,
    headers: Mapping[str, str] | None,
    collector_auth: bool | None,
) -> Route:
    """The span exporter's destination (the module docstring has the rules)."""
    if endpoint is not None:
        url = _collector_url(check_url(endpoint, "endpoint"))
        source, setting = "the endpoint argument", "endpoint"
    elif not explicit_direct and os.environ.get(ENV_COLLECTOR_ENDPOINT, "").strip():
        raw = os.environ[ENV_COLLECTOR_ENDPOINT].strip()
        source = setting = ENV_COLLECTOR_ENDPOINT
        try:
            url = _collector_url(check_url(raw, ENV_COLLECTOR_ENDPOINT))
        except ConfigurationError as error:  # no fallback to Langfuse: a Collector was meant
            return Route("collector", display_url(raw), source, setting, problem=str(error))
    else:
        hint = ", or endpoint= / LANGFUSE_OTEL_COLLECTOR_ENDPOINT for a Collector"
        return direct_route(config, OTEL_TRACES_PATH, headers or {}, hint)
    sent = dict(headers) if headers is not None else _env_headers(ENV_COLLECTOR_HEADERS)
    if collector_auth is None:
        collector_auth = env_bool(ENV_COLLECTOR_AUTH, default=False)
    if not collector_auth:
        return Route("collector", url, source, setting, sent)
    if config.missing:
        problem = "set " + " and ".join(config.missing) + " (Langfuse auth for the Collector)"
        return Route("collector", url, source, setting, sent, problem)
    langfuse = {
        "Authorization": config.authorization(),
        INGESTION_VERSION_HEADER: INGESTION_VERSION,
    }
    sent = merged(langfuse, sent)  # the user's own headers win, in any spelling
    return Route("collector", url, source, setting, sent, langfuse_auth=True)


def announce(owner: str, route: Route, sends: str) -> None:
    """The one INFO line (or ERROR, when nothing will be sent), and the clear-text warnings."""
    where = f"{route.shown} (from {route.source})"
    if route.problem is not None:
        logger.error("%s: %s mode, nothing will be sent: %s", owner, route.mode, route.problem)
        return
    auth = ""
    if route.mode == "collector":
        auth = ", with Langfuse auth" if route.langfuse_auth else ", no Langfuse keys sent"
    proxy, proxy_auth = proxy_for(route.url)
    via = "" if proxy is None else f" through the proxy {proxy} (from the environment)"
    logger.info("%s: %s mode, %s to %s%s%s", owner, route.mode, sends, where, via, auth)
    for warning in clear_text_warnings(route, proxy, proxy_auth is not None):
        with _warned_lock:
            if warning in _warned:
                continue
            _warned.add(warning)
        logger.warning("%s: %s", owner, warning)


def clear_text_warnings(route: Route, proxy: str | None, proxy_auth: bool) -> list[str]:
    """What of ``route``'s credentials, and of the proxy's, would cross a network unencrypted.

    ``https://`` through a proxy is a ``CONNECT`` tunnel: only the proxy's credentials are in
    plain text, and only to an ``http://`` proxy off loopback. ``http://`` through a proxy is
    plain text to the proxy and onwards, unless both are on loopback.
    """
    found = []
    url = urlsplit(route.url)
    proxied = None if proxy is None else urlsplit(proxy)
    proxy_in_clear = proxied is not None and proxied.scheme == "http"
    proxy_in_clear = proxy_in_clear and not is_loopback(proxied.hostname if proxied else None)
    fix = "they travel unencrypted (use https, or a loopback address)"
    plain = route.sends_credentials() and url.scheme == "http"
    if plain and (not is_loopback(url.hostname) or proxy_in_clear):
        via = "" if proxy is None else f", through the proxy {proxy}"
        found.append(f"credentials go to {route.shown} over plain http{via}: {fix}")
    if proxy_auth and proxy_in_clear:
        found.append(
            f"the proxy credentials go to {proxy} in plain text: they travel unencrypted "
            "(an http:// proxy is spoken to in plain text)"
        )
    return found


def _collector_url(url: str) -> str:
    """A Collector URL as given; with no path, OTLP's ``/v1/traces`` is added."""
    return url + COLLECTOR_TRACES_PATH if not urlsplit(url).path.strip("/") else url


def _env_headers(name: str) -> dict[str, str]:
    """``key=value,key2=value2`` (values URL-decoded, as in ``OTEL_EXPORTER_OTLP_HEADERS``);
    a malformed entry warns (without its value) and is skipped."""
    headers: dict[str, str] = {}
    for entry in os.environ.get(name, "").split(","):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        key = unquote(key).strip()
        if not sep or not key:
            logger.warning("Ignoring a malformed entry in %s (expected key=value)", name)
            continue
        value = unquote(value).strip()
        problem = header_problem(key, value)
        if problem is not None:
            logger.warning("Ignoring an entry in %s: %s", name, problem)
            continue
        headers = merged(headers, {key: value})
    return headers
