"""The feature pass and what it accumulates: extraction, per-side state, kept features, process groups."""
