"""The one exception type users see for bad input."""

from __future__ import annotations


class DegflowInputError(ValueError):
    """Bad input: names the file, row/column or config key, and what to do.

    The message is one line meant for a biologist; the workflow prints it without a
    traceback and stops before writing any output.
    """
