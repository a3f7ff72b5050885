"""The one numba decorator of degflow (:func:`jit`); every compiled function in the package uses it.

A raw ``numba.njit``/``numba.jit`` anywhere else is a lint finding (ruff TID251, ``pyproject.toml``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numba


def jit(
    *, parallel: bool = True, inline: str = "never", error_model: Literal["numpy", "python"] = "numpy"
) -> Callable[[Callable[..., Any]], Any]:
    """The one numba decorator of degflow: ``njit(parallel, nogil=True, cache=True)``, no fastmath.

    Used as ``@jit()`` (a parallel kernel, ``prange`` over rows or genes) or ``@jit(parallel=False)``
    (a serial helper, ``inline="always"`` for the small scalar ones the kernels inline).

    ``error_model="numpy"`` (the default): a division by zero gives inf/nan as in NumPy instead of
    raising ``ZeroDivisionError``; without that check in every division the loops vectorise. Where a
    kernel can divide by zero (``log1p(-1)`` computes ``c / 0`` in a lane it then discards) the result
    is masked, so no returned value depends on it.

    Parameters
    ----------
    parallel
        Compile with ``parallel=True`` (needed for ``prange``).
    inline
        numba's ``inline`` option: ``"always"`` inlines the function into its callers at the numba IR level.
    error_model
        ``"numpy"`` (default) or ``"python"`` (division by zero raises; the serial ports of R's C code
        in :mod:`degflow.kernels.rsim` and the byte scanner of :mod:`degflow.io._textparse` keep it).

    Returns
    -------
    Callable
        A decorator turning a Python function into a numba dispatcher.
    """

    def decorate(f: Callable[..., Any]) -> Any:
        return numba.njit(  # noqa: TID251 - the single sanctioned use
            parallel=parallel, nogil=True, cache=True, error_model=error_model, inline=inline
        )(f)

    return decorate
