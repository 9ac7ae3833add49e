"""Where to send, and with which credentials: resolved once, for the exporter and the scores.

Precedence everywhere: explicit argument > environment variable > default.

* keys: ``public_key``/``secret_key`` > ``LANGFUSE_PUBLIC_KEY``/``LANGFUSE_SECRET_KEY``;
* Langfuse base URL: ``base_url`` > ``LANGFUSE_BASE_URL`` > ``LANGFUSE_HOST`` > Langfuse Cloud (EU);
* span endpoint: ``endpoint`` (a Collector) > explicit Langfuse arguments (direct) >
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is) > ``OTEL_EXPORTER_OTLP_ENDPOINT`` (+
  ``/v1/traces``) > direct to ``{base_url}/api/public/otel/v1/traces``.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ConfigurationError

ENV_PUBLIC_KEY = "LANGFUSE_PUBLIC_KEY"
ENV_SECRET_KEY = "LANGFUSE_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
ENV_BASE_URL = "LANGFUSE_BASE_URL"
ENV_HOST = "LANGFUSE_HOST"
ENV_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"

LANGFUSE_CLOUD_URL = "https://cloud.langfuse.com"
OTEL_TRACES_PATH = "/api/public/otel/v1/traces"
SCORES_PATH = "/api/public/scores"
INGESTION_PATH = "/api/public/ingestion"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _check_url(url: str, source: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"{source} must be an http(s) URL with a host")
    return url.rstrip("/")


@dataclass(frozen=True)
class LangfuseConfig:
    """Resolved Langfuse credentials and base URL. The secret key never appears in its repr."""

    public_key: str | None
    secret_key: str | None = field(repr=False)
    base_url: str
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
    if base_url is not None:
        url = _check_url(base_url, "base_url")
    else:
        source = ENV_BASE_URL if _env(ENV_BASE_URL) else ENV_HOST
        raw = _env(ENV_BASE_URL) or _env(ENV_HOST)
        url = LANGFUSE_CLOUD_URL
        if raw is not None:
            try:
                url = _check_url(raw, source)
            except ConfigurationError as error:
                problem = str(error)
    return LangfuseConfig(
        public_key=public_key if public_key is not None else _env(ENV_PUBLIC_KEY),
        secret_key=secret_key if secret_key is not None else _env(ENV_SECRET_KEY),
        base_url=url,
        problem=problem,
    )


def collector_endpoint(endpoint: str | None) -> str | None:
    """The Collector endpoint from ``endpoint`` or the OTLP environment variables, or ``None``."""
    if endpoint is not None:
        return _check_url(endpoint, "endpoint")
    traces = _env(ENV_OTLP_TRACES_ENDPOINT)
    if traces is not None:
        return traces
    generic = _env(ENV_OTLP_ENDPOINT)
    if generic is not None:
        return generic.rstrip("/") + "/v1/traces"
    return None
