"""The export path: config, Langfuse's reading rules, mapping, encoding, transport, exporter.
May import: top, boundary (trace claims), spans (the per-request memory)."""
