"""The web layer: one request decision, shared by the ASGI and WSGI middlewares.
May import: top, sessions, boundary, spans, export, scores."""
