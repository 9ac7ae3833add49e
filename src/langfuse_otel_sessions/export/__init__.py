"""The export path: config, Langfuse's reading rules, mapping, encoding, HTTP, exporter.
May import: top, boundary (trace claims), spans (the per-request memory)."""
