"""The trust boundary: the inbound guard and propagator, header ids, the outbound policy.
May import: top, sessions."""
