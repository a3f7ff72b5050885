"""degflow: RNA-seq and single-cell RNA-seq counts to differential-expression answers."""

from degflow.errors import DegflowInputError

__all__ = ["DegflowInputError", "__version__"]
__version__ = "0.1.0"
