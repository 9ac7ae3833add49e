#!/usr/bin/env bash
# Rotel (a Rust OpenTelemetry collector, `pip install rotel`) forwarding traces to Langfuse.
#
#   export LANGFUSE_BASE_URL=https://cloud.langfuse.com LANGFUSE_PUBLIC_KEY=pk-lf-... LANGFUSE_SECRET_KEY=sk-lf-...
#   export ROTEL_AGENT=$(python -c 'import pathlib, rotel; print(pathlib.Path(rotel.__file__).parent / "rotel-agent")')
#   bash examples/collector/rotel.sh        # OTLP/HTTP on 0.0.0.0:4318, OTLP/gRPC on 0.0.0.0:4317
#
# Apps: LANGFUSE_OTEL_COLLECTOR_ENDPOINT=http://<rotel-host>:4318 (or endpoint= in code); they
# send no Langfuse keys to Rotel, which holds them.
#
# Rotel logs "failed to decode response ... dropping data" after each export: Langfuse answers
# 200 with a JSON body that is not an OTLP response. The data was delivered; nothing is dropped.
set -euo pipefail
auth=$(printf '%s:%s' "${LANGFUSE_PUBLIC_KEY:?}" "${LANGFUSE_SECRET_KEY:?}" | base64 -w0)
base_url=${LANGFUSE_BASE_URL:-https://cloud.langfuse.com}
exec "${ROTEL_AGENT:-rotel-agent}" start \
  --otlp-http-endpoint "${ROTEL_OTLP_HTTP_ENDPOINT:-0.0.0.0:4318}" \
  --otlp-grpc-endpoint "${ROTEL_OTLP_GRPC_ENDPOINT:-0.0.0.0:4317}" \
  --exporter otlp \
  --otlp-exporter-protocol http \
  --otlp-exporter-endpoint "$base_url" \
  --otlp-exporter-traces-endpoint "$base_url/api/public/otel/v1/traces" \
  --otlp-exporter-custom-headers "Authorization=Basic $auth,x-langfuse-ingestion-version=4" \
  --pid-file "${ROTEL_PID_FILE:-/tmp/rotel-agent.pid}" \
  --log-file "${ROTEL_LOG_FILE:-/tmp/rotel-agent.log}"
