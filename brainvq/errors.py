"""Errors the scripts report as one `error: ...` line (no traceback)."""


class DatasetError(ValueError):
    """Bad input data; the message names the path and the fix."""


class WeightsUnavailable(ValueError):
    """Pretrained weights (VGG16 for the perceptual loss) could not be had; the message says
    how to get them."""


class MissingData(DatasetError):
    """A named data folder does not exist (the demo stands in only when none was named)."""


class OutputBlocked(ValueError):
    """Something in the way of a file the scripts write (a folder where a figure goes, a file
    where a folder goes); the message names it and the fix."""
