"""Statistics and where they came from: streaming moments, provenance, reference files."""

# the statistics file format installs itself as FeatureStats.save/load's reader and writer
import fidkit.stats.reference  # noqa: E402,F401
