"""Errors of the data layer."""


class DatasetError(ValueError):
    """A Dataset artifact is missing, malformed or does not match its metadata."""
