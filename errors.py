"""Errors the scripts report as one `error: ...` line (no traceback)."""


class DatasetError(ValueError):
    """Bad input data; the message names the path and the fix."""
