"""Session scores: the model, batches, span events, the sender and the client.
May import: top, sessions, spans (the sampling decision), export (config, http)."""
