"""`LangfuseSpanExporter`: map the spans' attributes, encode, compress and POST them once per batch
to Langfuse's OTel endpoint or a Collector, with OpenTelemetry's OTLP retry policy."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

# The one private name we use: OpenTelemetry's own exporters suppress their instrumentation so.
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._logging import RateLimitedLog
from ..boundary.outbound import trace_claims
from ..errors import ConfigurationError
from ..ids import TraceIds
from ..spans.memory import MEMORY
from .compression import body_compression
from .config import (
    INGESTION_VERSION,
    INGESTION_VERSION_HEADER,
    announce,
    header_problem,
    merged,
    positive_number,
    resolve_langfuse_config,
    span_route,
)
from .coverage import Coverage, CoverageMonitor
from .encoder import SpanEncoder
from .http import (
    OTLP_RETRYABLE_STATUSES,
    HttpClient,
    Reply,
    RetryPolicy,
    post_with_retries,
)
from .mapping import map_spans
from .span_filter import ExportSpans, keep, span_predicate

__all__ = ["ExportStats", "LangfuseSpanExporter"]

SDK_NAME = "langfuse-otel-sessions"
DEFAULT_TIMEOUT_SECONDS = 10.0

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


def _headers(value: Mapping[str, str] | None) -> dict[str, str] | None:
    if value is not None and (
        not isinstance(value, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise ConfigurationError("headers must be a mapping of strings to strings")
    for name, text in (value or {}).items():
        problem = header_problem(name, text)
        if problem is not None:
            raise ConfigurationError(f"headers: {problem}")
    return None if value is None else dict(value)


class LangfuseSpanExporter(SpanExporter):
    """Exports spans so that Langfuse shows the traces and sessions users expect, straight or
    through a Collector (``docs/exporter.md``); use it with the SDK's ``BatchSpanProcessor``."""

    def __init__(
        self,
        *,
        public_key: str | None = None,
        secret_key: str | None = None,
        base_url: str | None = None,
        endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
        collector_auth: bool | None = None,
        timeout: float | None = None,
        compression: str | Compression | None = None,
        export_spans: ExportSpans = None,
    ) -> None:
        self._keep = span_predicate(export_spans)
        self._coverage = CoverageMonitor()
        self._timeout = positive_number(timeout, "timeout", DEFAULT_TIMEOUT_SECONDS)
        self._compression = body_compression(compression)
        self._encode = SpanEncoder().encode
        if collector_auth is not None and not isinstance(collector_auth, bool):
            raise ConfigurationError("collector_auth must be True, False or None")
        self._route = span_route(
            resolve_langfuse_config(public_key, secret_key, base_url),
            endpoint=endpoint,
            explicit_direct=(public_key or secret_key or base_url) is not None,
            headers=_headers(headers),
            collector_auth=collector_auth,
        )
        self.mode = self._route.mode
        if self.mode == "direct" and self._compression.name == "deflate":
            raise ConfigurationError(
                "Langfuse decodes gzip only: use compression='gzip' or 'none' "
                "(deflate is for a Collector, with endpoint=)"
            )
        #: Where spans go (userinfo scrubbed).
        self.endpoint = self._route.shown
        if self._route.problem is None:
            trace_claims.add(self)  # outgoing requests claim the trace's root upstream
        self._log = RateLimitedLog()
        self._abort = threading.Event()
        self._shut_down = False
        #: After an export got no answer in time, exports fail at once until then (a cool-off
        #: of the timeout, between 1 and 30 s); the first one after it probes.
        self._silent_until = 0.0
        self._counts = [0, 0, 0]  # exported spans, failed spans, failed batches
        self._counts_lock = threading.Lock()
        ours = {"Content-Type": "application/x-protobuf", "User-Agent": f"{SDK_NAME}/{SDK_VERSION}"}
        if self.mode == "direct":
            ours |= {INGESTION_VERSION_HEADER: INGESTION_VERSION, "x-langfuse-sdk-name": SDK_NAME}
            ours["x-langfuse-sdk-version"] = SDK_VERSION
        encoding = self._compression.content_encoding
        fixed = {} if encoding is None else {"Content-Encoding": encoding}  # not a user's header
        self._headers = merged(merged(ours, self._route.headers), fixed)
        self._transport = None if self._route.problem else HttpClient(self._route.url)
        announce("LangfuseSpanExporter", self._route, "spans")

    def __repr__(self) -> str:
        return f"LangfuseSpanExporter(mode={self.mode!r}, endpoint={self.endpoint!r})"

    @property
    def stats(self) -> ExportStats:
        """Delivered and lost span counts since construction."""
        with self._counts_lock:
            return ExportStats(*self._counts)

    @property
    def coverage(self) -> Coverage:
        """Spans and tokens sent with and without a session id since construction."""
        return self._coverage.coverage

    def _count(self, spans: int, reply: Reply | None, why: str | None = None) -> SpanExportResult:
        with self._counts_lock:
            if reply is not None and reply.ok:
                self._counts[0] += spans
                return SpanExportResult.SUCCESS
            self._counts[1] += spans
            self._counts[2] += 1
            lost = self._counts[1]
        if reply is not None:
            why = reply.describe(self._route.server, self._route.setting)
        self._log.error("lost", "%d spans not delivered: %s (%d lost so far)", spans, why, lost)
        return SpanExportResult.FAILURE

    def _known(self, key: int, span: ReadableSpan) -> TraceIds | None:
        request = MEMORY.of(span.context) or MEMORY.by_key(key)
        return None if request is None else request.known()

    def _retrying(self, reply: Reply, wait: float) -> None:
        why = reply.describe(self._route.server, self._route.setting)
        self._log.warning("retry", "%s; retrying in %.2fs", why, wait)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Map and send one batch; returns the result, never raises."""
        if self._transport is None:
            return self._count(len(spans), None, f"{self._route.problem}; nothing was sent")
        if self._shut_down:
            return self._count(len(spans), None, "the exporter is shut down; nothing was sent")
        if self._keep is not None:
            spans, dropped = keep(spans, self._keep)
            self._coverage.dropped(dropped)
        if not spans:
            return SpanExportResult.SUCCESS
        cool_off = min(max(self._timeout, 1.0), 30.0)
        if time.monotonic() < self._silent_until:
            return self._count(
                len(spans),
                None,
                f"{self._route.server} at {self._route.shown} did not answer the last export "
                f"in time; nothing was sent (next try in up to {cool_off:.3g} s)",
            )
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            attributes, learned = map_spans(spans, self._known)
            self._coverage.count(spans, attributes)
            for key, ids in learned.items():
                MEMORY.learn(key, ids)
            body = self._compression.compress(self._encode(spans, attributes))
            reply = post_with_retries(
                self._transport,
                body,
                self._headers,
                # OpenTelemetry's OTLP exporter's: backoff from 1 s, at most 6 attempts
                policy=RetryPolicy(1.0, math.inf, 0.2, self._timeout, 6, OTLP_RETRYABLE_STATUSES),
                abort=self._abort,
                on_retry=self._retrying,
            )
            if reply.status is None and reply.timed_out:
                self._silent_until = time.monotonic() + cool_off
            elif reply.status is not None:
                self._silent_until = 0.0
            return self._count(len(spans), reply)
        except Exception:  # noqa: BLE001 - export must not raise
            self._log.exception(
                "export", "LangfuseSpanExporter could not export %d spans", len(spans)
            )
            return self._count(len(spans), None, "an error in the exporter (logged above)")
        finally:
            detach(token)

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Stop exporting (idempotent); cut a retry wait short."""
        if self._shut_down:
            return
        trace_claims.discard(self)
        self._shut_down = True
        self._coverage.close()
        self._abort.set()
        if self._transport is not None:
            self._transport.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here: always ``True``."""
        return True
