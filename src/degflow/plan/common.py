"""What ``workflow/rules/common.smk`` computes for every stage: cluster resource requests that grow with the data.

The config itself is checked by :func:`degflow.plan.schema.validate_config`, each stage's section by its module
of :mod:`degflow.plan` (bulk, singlecell, pseudobulk, composition, compound).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["scaled_resource"]


def scaled_resource(base: float, *, per_unit: float = 0.0,
                    units: float | Callable[[Any], float] = 0.0) -> Callable[[Any, int], int]:
    """A ``resources:`` value (``mem_mb`` in MB or ``runtime`` in minutes) for a cluster request.

    ``ceil((base + per_unit * units) * attempt)``: it grows with the data (``units``: millions of count-matrix
    cells for bulk rules, GB of raw input for single-cell rules, both known when the workflow is parsed; or a
    function of the job's wildcards, e.g. one sample's input) and with the retry attempt (the SLURM profile
    retries once), so a job killed for memory or walltime is resubmitted with twice the request.

    Parameters
    ----------
    base
        The request for no data.
    per_unit
        The request per unit of data.
    units
        The amount of data, or a function of the job's wildcards giving it.

    Returns
    -------
    Callable
        ``resource(wildcards, attempt) -> int``, as Snakemake calls a ``resources:`` function.
    """

    def resource(wildcards: Any, attempt: int) -> int:
        amount = units(wildcards) if callable(units) else units
        return int(math.ceil((base + per_unit * amount) * attempt))

    return resource
