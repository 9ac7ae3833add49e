"""Setup: ``configure()`` and the zero-code ``opentelemetry_instrumentor`` hook.
May import: top, sessions, boundary, spans, export, scores."""
