"""Span processing: the stamping processor, the per-request memory, the session sampler.
May import: top, sessions, boundary."""
