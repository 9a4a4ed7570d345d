"""The error type of bad input data."""

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad input data (a frame, a ground truth, a detections file): the message is one line naming the file, video,
    frame, key or row and what was expected. A ``ValueError``, so code catching that still catches it; tools print
    it as ``error: <message>`` and exit with 2."""
