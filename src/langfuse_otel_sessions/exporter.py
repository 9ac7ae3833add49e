"""`LangfuseSpanExporter`: OTLP/HTTP to Langfuse's OTel endpoint, or to a Collector.

Built on ``OTLPSpanExporter`` (its encoding, gzip, retries on 429/502/503/504 and connection
errors with backoff, jitter and ``Retry-After``, under one deadline) with the mapping of
:mod:`langfuse_otel_sessions.mapping` applied to copies of the spans first.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import requests
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._logging import RateLimitedLog, logger
from .config import OTEL_TRACES_PATH, collector_endpoint, resolve_langfuse_config
from .errors import ConfigurationError
from .local_requests import known_ids
from .mapping import RootMapping, TraceName, map_spans
from .traces import TraceIds, TraceSessions

INGESTION_VERSION_HEADER = "x-langfuse-ingestion-version"
INGESTION_VERSION = "4"
SDK_NAME = "langfuse-otel-sessions"
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_REMEMBERED_TRACES = 10_000

try:
    SDK_VERSION = version("langfuse-otel-sessions")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    SDK_VERSION = "0+unknown"


@dataclass(frozen=True)
class ExportStats:
    """Spans this exporter delivered, and those it could not (after retries, or refused)."""

    exported_spans: int
    failed_spans: int
    failed_batches: int


class _ExportSession(requests.Session):
    """The exporter's HTTP session.

    * With ``allowed`` headers (direct mode), it sends only those: ``OTLPSpanExporter`` merges
      ``OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`` into every request, and in direct mode those are
      meant for another backend, not for Langfuse.
    * After ``os.fork()`` the child drops the pooled connections it inherited, which the parent
      still uses: two processes writing to one keep-alive connection corrupt both streams.
    """

    def __init__(self, allowed: set[str] | None) -> None:
        super().__init__()
        self._allowed = None if allowed is None else {name.lower() for name in allowed}
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _close_in_child(me))

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - requests takes the rest as keywords
        headers = kwargs.get("headers")
        if headers and self._allowed is not None:
            kwargs["headers"] = {k: v for k, v in headers.items() if k.lower() in self._allowed}
        return super().request(method, url, *args, **kwargs)


def _close_in_child(reference: weakref.ref[_ExportSession]) -> None:
    session = reference()
    if session is not None:
        session.close()  # closes the child's copies of the sockets; the parent's stay open


def _compression(value: str | Compression | None) -> Compression:
    if value is None:
        return Compression.Gzip
    if isinstance(value, Compression):
        return value
    try:
        return Compression(value.strip().lower())
    except ValueError:
        raise ConfigurationError("compression must be 'gzip', 'deflate' or 'none'") from None


class LangfuseSpanExporter(SpanExporter):
    """Exports spans so that Langfuse shows the traces and sessions users expect.

    Direct mode (default): ``public_key``/``secret_key``/``base_url``, else ``LANGFUSE_*``
    variables, else Langfuse Cloud; sends to ``{base_url}/api/public/otel/v1/traces`` with Basic
    auth and ``x-langfuse-ingestion-version: 4``. ``OTEL_EXPORTER_OTLP_*HEADERS`` are not sent.

    Collector mode: ``endpoint=`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
    ``OTEL_EXPORTER_OTLP_ENDPOINT``) sends there; Langfuse keys are optional (the Collector
    holds them) and the OTLP header variables apply.

    Use it with the SDK's ``BatchSpanProcessor``. ``export`` never raises.
    """

    def __init__(
        self,
        *,
        public_key: str | None = None,
        secret_key: str | None = None,
        base_url: str | None = None,
        endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        compression: str | Compression | None = None,
        trace_name: TraceName = None,
        root_input_keys: Sequence[str] = (),
        root_output_keys: Sequence[str] = (),
        remembered_traces: int = DEFAULT_REMEMBERED_TRACES,
    ) -> None:
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise ConfigurationError("timeout must be a positive number of seconds")
        if trace_name is not None and not (isinstance(trace_name, str) or callable(trace_name)):
            raise ConfigurationError("trace_name must be None, an attribute key or a callable")
        self._mapping = RootMapping(trace_name, tuple(root_input_keys), tuple(root_output_keys))
        self._recent = TraceSessions(remembered_traces)
        self._log = RateLimitedLog()
        self._disabled_reason: str | None = None
        self._shut_down = False
        self._counts = [0, 0, 0]  # exported spans, failed spans, failed batches
        self._counts_lock = threading.Lock()
        direct = endpoint is None and (public_key or secret_key or base_url) is not None
        self.endpoint = None if direct else collector_endpoint(endpoint)
        self.mode = "collector" if self.endpoint is not None else "direct"
        config = resolve_langfuse_config(public_key, secret_key, base_url)
        sent = dict(headers or {})
        allowed: set[str] | None = None
        if self.mode == "direct":
            self.endpoint = config.base_url + OTEL_TRACES_PATH
            if config.problem is not None:
                self._disable(f"Langfuse export is off: {config.problem}")
            elif config.missing:
                self._disable(
                    "Langfuse export is off: set "
                    + " and ".join(config.missing)
                    + " (or pass public_key/secret_key, or endpoint= for a Collector)"
                )
            else:
                sent["Authorization"] = config.authorization()
            sent.setdefault(INGESTION_VERSION_HEADER, INGESTION_VERSION)
            sent.setdefault("x-langfuse-sdk-name", SDK_NAME)
            sent.setdefault("x-langfuse-sdk-version", SDK_VERSION)
            allowed = {*sent, "content-type", "content-encoding", "user-agent"}
        elif not config.missing:
            sent.setdefault("Authorization", config.authorization())
            sent.setdefault(INGESTION_VERSION_HEADER, INGESTION_VERSION)
        self._inner = OTLPSpanExporter(
            endpoint=self.endpoint,
            headers=sent,
            timeout=DEFAULT_TIMEOUT_SECONDS if timeout is None else timeout,
            compression=_compression(compression),
            session=_ExportSession(allowed),
        )
        logger.debug("LangfuseSpanExporter: %s mode, sending to %s", self.mode, self.endpoint)

    def __repr__(self) -> str:
        return f"LangfuseSpanExporter(mode={self.mode!r}, endpoint={self.endpoint!r})"

    @property
    def stats(self) -> ExportStats:
        """Delivered and lost span counts since construction."""
        with self._counts_lock:
            return ExportStats(*self._counts)

    def _count(self, spans: int, result: SpanExportResult) -> SpanExportResult:
        with self._counts_lock:
            if result is SpanExportResult.SUCCESS:
                self._counts[0] += spans
                return result
            self._counts[1] += spans
            self._counts[2] += 1
            lost = self._counts[1]
        self._log.error(
            "lost", "%d spans not delivered to %s (%d lost so far)", spans, self.endpoint, lost
        )
        return result

    def _disable(self, reason: str) -> None:
        self._disabled_reason = reason
        logger.error(reason)

    def _known(self, key: int, span: ReadableSpan) -> TraceIds | None:
        return known_ids(self._recent, key, span)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Map and send one batch; returns the result, never raises."""
        if self._shut_down:
            return self._count(len(spans), SpanExportResult.FAILURE)
        if self._disabled_reason is not None:
            self._log.error("disabled", "%s; %d spans not sent", self._disabled_reason, len(spans))
            return self._count(len(spans), SpanExportResult.FAILURE)
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            mapped, learned = map_spans(spans, self._mapping, self._known)
            for key, ids in learned.items():
                self._recent.remember(key, ids)
            return self._count(len(spans), self._inner.export(mapped))
        except Exception:  # noqa: BLE001 - export must not raise
            self._log.exception(
                "export", "LangfuseSpanExporter could not export %d spans", len(spans)
            )
            return self._count(len(spans), SpanExportResult.FAILURE)
        finally:
            detach(token)

    def shutdown(self) -> None:
        """Stop exporting; idempotent. Cuts an in-progress retry wait short."""
        if self._shut_down:
            return
        self._shut_down = True
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here (the batch processor buffers): always ``True``."""
        return True
