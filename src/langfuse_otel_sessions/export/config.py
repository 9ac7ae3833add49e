"""Where to send, and with which credentials: resolved once, for the exporter and the scores.

Precedence everywhere: explicit argument > environment variable > default.

* keys: ``public_key``/``secret_key`` > ``LANGFUSE_PUBLIC_KEY``/``LANGFUSE_SECRET_KEY``;
* Langfuse base URL: ``base_url`` > ``LANGFUSE_BASE_URL`` > ``LANGFUSE_HOST`` > Langfuse Cloud (EU).

Where spans go (Langfuse or a Collector) is decided in :mod:`.destination`.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import ConfigurationError

ENV_PUBLIC_KEY = "LANGFUSE_PUBLIC_KEY"
ENV_SECRET_KEY = "LANGFUSE_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
ENV_BASE_URL = "LANGFUSE_BASE_URL"
ENV_HOST = "LANGFUSE_HOST"
BASE_URL_ARGUMENT = "the base_url argument"

LANGFUSE_CLOUD_URL = "https://cloud.langfuse.com"
OTEL_TRACES_PATH = "/api/public/otel/v1/traces"
SCORES_PATH = "/api/public/scores"
INGESTION_PATH = "/api/public/ingestion"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def check_url(url: object, source: str) -> str:
    """``url`` without a trailing slash; :class:`ConfigurationError` (naming ``source``, never
    the URL: it may hold a token) unless an http(s) URL with a host, a valid port, and no
    query, fragment or ``;parameters`` (a route is appended to it)."""
    if not isinstance(url, str) or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise ConfigurationError(f"{source} must be an http(s) URL without spaces or controls")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
        if "[" in parts.netloc:  # Python 3.10 does not check what is between the brackets
            ipaddress.IPv6Address((host or "").split("%")[0])
    except ValueError:  # a port out of range or not a number, a broken [IPv6] bracket
        raise ConfigurationError(
            f"{source} is not a valid URL: check its host and port (1-65535)"
        ) from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ConfigurationError(f"{source} must be an http(s) URL with a host")
    if port == 0:
        raise ConfigurationError(f"{source} has port 0: use a port from 1 to 65535")
    if "?" in url or "#" in url or ";" in parts.path:
        raise ConfigurationError(
            f"{source} must not have a query, fragment or ;parameters (a route is appended to it)"
        )
    return url.rstrip("/")


@dataclass(frozen=True)
class LangfuseConfig:
    """Resolved Langfuse credentials and base URL. The secret key never appears in its repr."""

    public_key: str | None
    secret_key: str | None = field(repr=False)
    base_url: str
    #: Where ``base_url`` came from: the argument, a variable, or the default.
    base_url_source: str = "the default (Langfuse Cloud)"
    #: Why the base URL could not be used (an invalid environment value), if so.
    problem: str | None = None

    @property
    def missing(self) -> tuple[str, ...]:
        """Names of the environment variables whose values are missing."""
        return tuple(
            name
            for name, value in (
                (ENV_PUBLIC_KEY, self.public_key),
                (ENV_SECRET_KEY, self.secret_key),
            )
            if not value
        )

    def authorization(self) -> str:
        """The ``Authorization: Basic ...`` header value (call only when nothing is missing)."""
        token = f"{self.public_key}:{self.secret_key}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")


def resolve_langfuse_config(
    public_key: str | None = None, secret_key: str | None = None, base_url: str | None = None
) -> LangfuseConfig:
    """Resolve keys and base URL. A bad explicit ``base_url`` raises
    :class:`ConfigurationError`; a bad environment value is reported in ``problem`` (sending
    to Langfuse Cloud instead of the self-hosted server the user meant would leak data)."""
    for name, value in (("public_key", public_key), ("secret_key", secret_key)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigurationError(f"{name} must be a non-empty string")
    problem = None
    source = LangfuseConfig.base_url_source
    if base_url is not None:
        url, source = check_url(base_url, "base_url"), BASE_URL_ARGUMENT
    else:
        raw = _env(ENV_BASE_URL) or _env(ENV_HOST)
        url = LANGFUSE_CLOUD_URL
        if raw is not None:
            source = ENV_BASE_URL if _env(ENV_BASE_URL) else ENV_HOST
            try:
                url = check_url(raw, source)
            except ConfigurationError as error:
                problem = str(error)
    return LangfuseConfig(
        public_key=public_key if public_key is not None else _env(ENV_PUBLIC_KEY),
        secret_key=secret_key if secret_key is not None else _env(ENV_SECRET_KEY),
        base_url=url,
        base_url_source=source,
        problem=problem,
    )
