"""platforms.vertex."""
