"""Statistics and where they came from: streaming moments, provenance, reference files."""
