"""Numba kernels: DESeq2 median-of-ratios size factors of a dense samples x genes count matrix.

==============================  =====================================================
:func:`size_factors_ratio`      DESeq2 median-of-ratios size factors (pydeseq2
                                ``deseq2_norm``, R ``estimateSizeFactors``)
:func:`size_factors_poscounts`  DESeq2 ``type="poscounts"`` size factors
==============================  =====================================================

Each public function validates the counts and hands explicit sizes and a thread count to private
``@jit()`` kernels; each has a plain-NumPy twin ``_ref_<name>`` that the tests compare it with,
besides pydeseq2 and R DESeq2 (``tests/test_kernels.py``). The kernels log integer counts < 2**16
by looking up a table made by ``np.log``, and call ``np.log`` for the others, so their logs are
NumPy's (pydeseq2's); the medians are exact order statistics, as ``np.median``. ``n_threads=None``
uses numba's current setting (:func:`degflow.runtime.set_threads`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import numpy as np
from numba import prange, types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import overload
from scipy import sparse

from degflow.errors import DegflowInputError
from degflow.kernels.jit import jit
from degflow.runtime import threads

__all__ = ["size_factors_poscounts", "size_factors_ratio"]

logger = logging.getLogger(__name__)

# Unsigned loop indices, as in degflow.kernels.sparse (see the note there): no negative-index
# wraparound check per access. Never mix them with signed ints in arithmetic.
_U = np.uint64
_U0, _U1, _U64 = _U(0), _U(1), _U(64)

# ---------------------------------------------------------------------------------------------
# DESeq2 size factors (dense samples x genes)
# ---------------------------------------------------------------------------------------------
#
# Median of ratios for S samples x G genes: per gene the mean log count, then per sample the
# median over genes of log(count) - mean log count. pydeseq2 logs the matrix twice, forms the
# S x G ratio matrix and calls np.median (a selection per sample). Here:
#
# 1. Windows (`_sf_window_hist`, `_sf_windows`): the ratios of one gene block in 16 (blocks of
#    64 adjacent genes) are binned per sample. The bins around the middle rank, widened by 4
#    standard deviations of the rank of a subsample median, give each sample a window [lo, hi]
#    that very likely holds its median (on 60,000 genes, ~8 % of its ratios).
# 2. One pass (`_sf_pass`), parallel over blocks of genes (a block of all samples stays in
#    cache): each count is logged once (a table look-up for integers), the block's mean logs
#    follow, then each ratio of the block is compared with its sample's window: ratios below
#    it are counted, ratios inside it are kept.
# 3. Selection (`_sf_select`): if (number below) <= middle rank < (number below + number
#    kept), the median is an order statistic of the kept ratios, found exactly. Otherwise (a
#    window that missed, or more kept ratios than buffered) the sample is redone over all
#    its genes (`_sf_exact`).
#
# The windows only decide how many ratios are kept: the result is the exact median either
# way, the same for any thread count and memory layout.

# log(k) for k < 2**16, computed by np.log: integer counts (and integer-valued floats) are
# logged by one table load, ~5x cheaper than the vectorised `log` on this machine, and get
# NumPy's own value (as pydeseq2 does). Larger or fractional values call np.log (libm).
_LOG_TABLE_SIZE = 1 << 16
with np.errstate(divide="ignore"):
    _LOG_TABLE = np.log(np.arange(_LOG_TABLE_SIZE, dtype=np.float64))
_LOG_TABLE.flags.writeable = False

_SF_BLOCK = 64  # genes per sampled block (512-byte runs of int64 counts: prefetched)
_SF_EVERY = 16  # one block in _SF_EVERY is sampled for the windows
_SF_MIN_SAMPLED = 1000  # fewer sampled ratios for a sample: no window (all its ratios are kept)
_SF_Z = 4.0  # window half-width, in standard deviations of the subsample median's rank
_SF_BINS = 2048  # histogram of the sampled ratios: 2048 bins of 1/128 over [-8, 8)
_SF_LO = -8.0
_SF_SCALE = 128.0
_SF_TOP = _SF_BINS - 0.5
_SF_MODES = {"ratio": 0, "deseq2": 1, "pydeseq2": 2}  # which genes are usable, see `_block_means`


def _log_count(x, table):
    """``log(x)`` in float64 for a count ``x`` of any type: -inf for 0, nan for x < 0 or nan (overloaded)."""


@overload(_log_count, inline="always")
def _log_count_impl(x, table):
    if isinstance(x, types.Integer):

        def impl(x, table):
            u = _U(x)  # a negative count becomes huge: it goes to np.log, which gives nan
            return table[u] if u < _U(table.shape[0]) else np.log(np.float64(x))

        return impl

    def impl_float(x, table):
        v = np.float64(x)
        if v >= 0.0 and v < np.float64(table.shape[0]):  # false for nan; keeps the int conversion in range
            u = _U(np.int64(v))
            if np.float64(u) == v:
                return table[u]
        return np.log(v)

    return impl_float


def _load_block(counts, table, g0, w, logs, acc, pos, bad):
    """Log counts[:, g0:g0 + w] into logs[:, :w]; per gene, the sum of the logs of the positive
    counts (``acc``), their number (``pos``) and the number of negative/nan/inf counts (``bad``).
    Samples are summed in order whatever the layout (overloaded on it)."""


@overload(_load_block, inline="always")
def _load_block_impl(counts, table, g0, w, logs, acc, pos, bad):
    if counts.layout == "F":  # genes x samples in memory: a gene's counts are contiguous

        def impl_f(counts, table, g0, w, logs, acc, pos, bad):
            for t in range(w):
                a = 0.0
                n_pos = 0
                n_bad = 0
                for s in range(_U0, _U(counts.shape[0])):
                    lx = _log_count(counts[s, g0 + t], table)
                    p = lx > -np.inf
                    logs[s, t] = lx
                    a += lx if p else 0.0
                    n_pos += p
                    n_bad += (lx != lx) | (lx == np.inf)
                acc[t] = a
                pos[t] = n_pos
                bad[t] = n_bad

        return impl_f

    def impl_c(counts, table, g0, w, logs, acc, pos, bad):  # samples x genes: the block is S row segments
        for t in range(w):
            acc[t] = 0.0
            pos[t] = 0
            bad[t] = 0
        # 2-D indexing throughout: a row view per (block, sample) costs more than it saves
        for s in range(_U0, _U(counts.shape[0])):
            for t in range(_U0, _U(w)):  # the look-ups: scalar
                logs[s, t] = _log_count(counts[s, _U(g0) + t], table)
            for t in range(_U0, _U(w)):  # the sums: vectorised
                lx = logs[s, t]
                p = lx > -np.inf
                acc[t] += lx if p else 0.0
                pos[t] += p
                bad[t] += (lx != lx) | (lx == np.inf)

    return impl_c


@jit(parallel=False, inline="always")
def _block_means(acc, pos, w, n_samples, mode, lm, use):
    """Mean logs ``lm`` (DESeq2's log geometric means, zeros counting as log 1 = 0 as in
    ``geoMeanNZ``) and usable genes ``use``: mode 0 (ratio) no zero count; 1 (poscounts, DESeq2)
    a positive count; 2 (poscounts, pydeseq2) a mean log > 0."""
    for t in range(w):
        m = acc[t] / n_samples
        lm[t] = m
        use[t] = (pos[t] == n_samples) if mode == 0 else ((pos[t] > 0) if mode == 1 else (m > 0.0))


@jit()
def _sf_window_hist(counts, table, mode, starts, bounds):
    """Per gene chunk ``c``, over the sampled blocks that start in it (``starts[bounds[c]:bounds[c + 1]]``):
    for each sample a histogram of its usable log ratios, ``_SF_BINS`` bins over [-8, 8) (outside:
    the end bins)."""
    n_samples, n_genes = counts.shape
    n_chunks = bounds.shape[0] - 1
    hist = np.zeros((n_chunks, n_samples, _SF_BINS), dtype=np.int32)
    for c in prange(n_chunks):
        logs = np.empty((n_samples, _SF_BLOCK))
        acc = np.empty(_SF_BLOCK)
        pos = np.empty(_SF_BLOCK, dtype=np.int64)
        bad = np.empty(_SF_BLOCK, dtype=np.int64)
        lm = np.empty(_SF_BLOCK)
        use = np.empty(_SF_BLOCK, dtype=np.bool_)
        h = hist[c]
        for j in range(bounds[c], bounds[c + 1]):
            g0 = starts[j]
            w = min(_SF_BLOCK, n_genes - g0)
            _load_block(counts, table, g0, w, logs, acc, pos, bad)
            _block_means(acc, pos, w, n_samples, mode, lm, use)
            for s in range(_U0, _U(n_samples)):
                for t in range(_U0, _U(w)):
                    lx = logs[s, t]
                    if use[t] and lx > -np.inf:
                        v = (lx - lm[t] - _SF_LO) * _SF_SCALE
                        v = v if v > 0.0 else 0.0  # also maps nan (from bad counts) to bin 0
                        v = v if v < _SF_TOP else _SF_TOP
                        h[s, _U(np.int64(v))] += 1
    return hist


@jit()
def _sf_windows(hist, z, min_sampled):
    """Per sample, from the histograms of the sampled ratios (one per gene chunk): a window
    (lo, hi) around the median and, per chunk, how many sampled ratios fall in it; (-inf, inf)
    and -1 when the sample has fewer than ``min_sampled`` usable sampled ratios."""
    n_chunks, n_samples, n_bins = hist.shape
    lo = np.full(n_samples, -np.inf)
    hi = np.full(n_samples, np.inf)
    inside = np.full((n_chunks, n_samples), -1, dtype=np.int64)
    for s in prange(n_samples):
        tot = np.zeros(n_bins, dtype=np.int64)
        for c in range(n_chunks):
            for b in range(n_bins):
                tot[b] += hist[c, s, b]
        n = tot.sum()
        if n < min_sampled:
            continue
        d = np.int64(np.ceil(0.5 * z * np.sqrt(n))) + 1  # rank sd of a subsample median: sqrt(n)/2
        r_lo = (n - 1) // 2 - d
        r_hi = n // 2 + d
        if r_lo < 0 or r_hi >= n:
            continue
        cum = 0
        b_lo = -1
        b_hi = n_bins - 1
        for b in range(n_bins):
            if b_lo < 0 and cum + tot[b] > r_lo:
                b_lo = b
            cum += tot[b]
            if cum > r_hi:
                b_hi = b
                break
        lo[s] = -np.inf if b_lo == 0 else _SF_LO + b_lo / _SF_SCALE
        hi[s] = np.inf if b_hi == n_bins - 1 else _SF_LO + (b_hi + 1) / _SF_SCALE
        for c in range(n_chunks):
            k = 0
            for b in range(b_lo, b_hi + 1):
                k += hist[c, s, b]
            inside[c, s] = k
    return lo, hi, inside


@jit()
def _sf_pass(counts, table, mode, bounds, width, lo, hi, offsets):
    """The one pass over the counts (parallel over the gene chunks ``bounds``, in blocks of
    ``width`` genes). Returns per gene the mean log, usable flag and number of positive and of
    bad counts; per chunk and sample the number of usable ratios, of those below the sample's
    window and of those in it, and the ratios in it (sample ``s`` owns
    ``kept[offsets[c * S + s]:offsets[c * S + s + 1]]``; beyond that they are counted, not kept).
    """
    n_samples, n_genes = counts.shape
    n_chunks = bounds.shape[0] - 1
    logmeans = np.empty(n_genes)
    usable = np.empty(n_genes, dtype=np.bool_)
    n_pos = np.empty(n_genes, dtype=np.int64)
    n_bad = np.empty(n_genes, dtype=np.int64)
    used = np.zeros((n_chunks, n_samples), dtype=np.int64)
    below = np.zeros((n_chunks, n_samples), dtype=np.int64)
    n_in = np.zeros((n_chunks, n_samples), dtype=np.int64)
    kept = np.empty(offsets[-1])
    for c in prange(n_chunks):
        logs = np.empty((n_samples, width))
        acc = np.empty(width)
        pos = np.empty(width, dtype=np.int64)
        bad = np.empty(width, dtype=np.int64)
        lm = np.empty(width)
        use = np.empty(width, dtype=np.bool_)
        lm_use = np.empty(width)
        g0 = bounds[c]
        while g0 < bounds[c + 1]:
            w = min(width, bounds[c + 1] - g0)
            _load_block(counts, table, g0, w, logs, acc, pos, bad)
            _block_means(acc, pos, w, n_samples, mode, lm, use)
            for t in range(w):
                logmeans[g0 + t] = lm[t]
                usable[g0 + t] = use[t]
                n_pos[g0 + t] = pos[t]
                n_bad[g0 + t] = bad[t]
                # nan for a gene that is not usable: its ratios are then nan, which no comparison counts
                lm_use[t] = lm[t] if use[t] else np.nan
            for s in range(_U0, _U(n_samples)):
                lo_s = lo[s]
                hi_s = hi[s]
                base = offsets[c * n_samples + s]
                last = offsets[c * n_samples + s + _U1] - base - 1
                k = n_in[c, s]
                n_used = 0
                n_below = 0
                t0 = _U0
                while t0 < _U(w):  # 64 genes at a time: a vectorised pass, then the kept ones
                    t1 = min(t0 + _U64, _U(w))
                    mask = _U0
                    for t in range(t0, t1):
                        r = logs[s, t] - lm_use[t]
                        ok = r > -np.inf  # false for a zero count (-inf) and an unusable gene (nan)
                        n_used += ok
                        n_below += ok & (r < lo_s)
                        mask |= _U(ok & (r >= lo_s) & (r <= hi_s)) << (t - t0)
                    while mask:  # only the ~5 % of ratios in the window: one step per set bit
                        t = t0 + _U(trailing_zeros(mask))
                        kept[_U(base + min(k, last))] = logs[s, t] - lm[t]
                        k += 1
                        mask &= mask - _U1
                    t0 = t1
                used[c, s] += n_used
                below[c, s] += n_below
                n_in[c, s] = k
            g0 += w
    return logmeans, usable, n_pos, n_bad, used, below, n_in, kept


@jit(parallel=False)
def _select_pair(buf, n, k_lo, k_hi):
    """``0.5 * (v[k_lo] + v[k_hi])`` with ``v = sorted(buf[:n])``, for finite values; ``buf`` is unchanged.

    A histogram selection, ~4x faster than numba's quickselect here: one pass counts the values
    into ~n/8 equal-width bins, which locates the bin(s) holding ranks k_lo and k_hi; only their
    few values are then sorted. The value -> bin map is monotone, so the ranks are exact.
    """
    lo = np.inf
    hi = -np.inf
    for i in range(_U0, _U(n)):
        lo = min(lo, buf[i])
        hi = max(hi, buf[i])
    if lo == hi:
        return lo
    n_bins = min(max(n // 8, 16), 1 << 16)
    scale = n_bins / (hi - lo)
    top = n_bins - 0.5
    hist = np.zeros(n_bins, dtype=np.int64)
    for i in range(_U0, _U(n)):
        v = (buf[i] - lo) * scale
        v = v if v > 0.0 else 0.0  # nan (0 * inf when hi - lo underflows) goes to bin 0: still monotone
        hist[np.int64(v if v < top else top)] += 1
    below = 0  # values in bins before b_lo
    b_lo = 0
    while below + hist[b_lo] <= k_lo:
        below += hist[b_lo]
        b_lo += 1
    b_hi = b_lo
    upto = below + hist[b_lo]
    while upto <= k_hi:
        b_hi += 1
        upto += hist[b_hi]
    small = np.empty(upto - below)
    t = 0
    for i in range(_U0, _U(n)):
        v = (buf[i] - lo) * scale
        v = v if v > 0.0 else 0.0
        b = np.int64(v if v < top else top)
        if b_lo <= b <= b_hi:
            small[t] = buf[i]
            t += 1
    small.sort()
    return 0.5 * (small[k_lo - below] + small[k_hi - below])


@jit()
def _sf_select(kept, offsets, used, below, n_in):
    """Per sample: the median log ratio from the kept ratios, whether that worked (else the
    sample needs `_sf_exact`), and the number of usable ratios."""
    n_chunks, n_samples = used.shape
    medians = np.full(n_samples, np.nan)
    done = np.zeros(n_samples, dtype=np.bool_)
    n_used = np.zeros(n_samples, dtype=np.int64)
    for s in prange(n_samples):
        n = 0
        n_below = 0
        m = 0
        overflow = False
        for c in range(n_chunks):
            n += used[c, s]
            n_below += below[c, s]
            m += n_in[c, s]
            overflow |= n_in[c, s] > offsets[c * n_samples + s + 1] - offsets[c * n_samples + s]
        n_used[s] = n
        if n == 0:
            done[s] = True  # no median: the caller raises
            continue
        k_lo = (n - 1) // 2
        k_hi = n // 2
        if overflow or n_below > k_lo or n_below + m <= k_hi:
            continue
        buf = np.empty(m)
        t = 0
        for c in range(n_chunks):
            for i in range(offsets[c * n_samples + s], offsets[c * n_samples + s] + n_in[c, s]):
                buf[t] = kept[i]
                t += 1
        medians[s] = _select_pair(buf, m, k_lo - n_below, k_hi - n_below)
        done[s] = True
    return medians, done, n_used


@jit()
def _sf_exact(counts, table, logmeans, usable, samples):
    """Median log ratio of each sample in ``samples`` over all its usable genes (the fallback)."""
    n_genes = counts.shape[1]
    out = np.empty(samples.shape[0])
    for i in prange(samples.shape[0]):
        s = samples[i]
        buf = np.empty(n_genes)
        k = 0
        for g in range(n_genes):
            lx = _log_count(counts[s, g], table)
            if usable[g] and lx > -np.inf:
                buf[k] = lx - logmeans[g]
                k += 1
        out[i] = np.nan if k == 0 else _select_pair(buf, k, (k - 1) // 2, k // 2)
    return out


# int32/int64/float32/float64 counts are read as they are, C- or F-ordered; other dtypes are
# converted once (one compiled variant per dtype and layout).
_COUNT_DTYPES = tuple(np.dtype(t) for t in (np.int32, np.int64, np.float32, np.float64))


# Not degflow.checks.check_count_frame (a user's genes x samples DataFrame, checked value by value): this converts a
# dense samples x genes array to a dtype and layout the kernels compile for, and raises TypeError/ValueError for a
# caller's mistake; negative/NaN values are counted by the kernels in the pass that does the work
# (_raise_bad_counts), so the data are read once.
def _as_count_array(counts: Any, name: str = "counts") -> np.ndarray:
    if sparse.issparse(counts):
        raise TypeError(f"{name} must be a dense samples x genes array; pass {name}.toarray()")
    arr = np.asarray(counts)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x genes), got shape {arr.shape}")
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and arr.dtype.itemsize not in (4, 8)):
        raise TypeError(f"{name} must hold integer or float32/float64 counts, got dtype {arr.dtype}")
    if arr.dtype not in _COUNT_DTYPES:  # small or unsigned ints, non-native byte order
        kind = "f" if arr.dtype.kind == "f" or arr.dtype == np.uint64 else "i"
        arr = arr.astype(np.dtype(f"{kind}{arr.dtype.itemsize if kind == 'f' else 8}").newbyteorder("="))
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DegflowInputError(f"{name} is empty (shape {arr.shape}); size factors need samples and genes")
    return arr


def _gene_chunks(n_genes: int, n_threads: int) -> np.ndarray:
    return np.linspace(0, n_genes, n_threads + 1).astype(np.int64)


def _raise_bad_counts(arr: np.ndarray, n_bad: np.ndarray, name: str) -> None:
    total = int(n_bad.sum())
    if not total:
        return
    with np.errstate(invalid="ignore"):
        where = ~np.isfinite(arr) | (arr < 0) if arr.dtype.kind == "f" else arr < 0
    s, g = np.argwhere(where)[0]
    raise DegflowInputError(
        f"{name} has {total} negative, NaN or infinite values (first at sample row {s}, gene column {g}, "
        f"value {arr[s, g]}); size factors need non-negative counts"
    )


def _median_log_ratios(arr: np.ndarray, mode: str, n_threads: int) -> dict[str, Any]:
    """Steps 1-3 above: per-gene mean logs and usable flags, per-sample median log ratios.

    Returns a dict with ``logmeans``, ``usable``, ``n_bad`` (per gene), ``medians`` and
    ``n_used`` (per sample), and ``n_exact`` (samples redone by the fallback).
    """
    n_samples, n_genes = arr.shape
    code = _SF_MODES[mode]
    bounds = _gene_chunks(n_genes, n_threads)
    width = np.diff(bounds)
    if n_genes >= _SF_EVERY * _SF_MIN_SAMPLED:  # else too few sampled genes for a window
        starts = np.arange(0, n_genes, _SF_BLOCK * _SF_EVERY, dtype=np.int64)
        in_chunk = np.searchsorted(starts, bounds)  # the blocks starting in each gene chunk
        hist = _sf_window_hist(arr, _LOG_TABLE, code, starts, in_chunk)
        lo, hi, inside = _sf_windows(hist, _SF_Z, _SF_MIN_SAMPLED)
        cum = np.concatenate([[0], np.cumsum(np.minimum(starts + _SF_BLOCK, n_genes) - starts)])
        sampled = cum[in_chunk[1:]] - cum[in_chunk[:-1]]  # sampled genes per chunk
        # expected kept ratios per chunk and sample: the sampled share, scaled to the chunk's genes
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = inside * (width / sampled)[:, None]
            expect = np.where((inside >= 0) & (sampled[:, None] > 0), scaled, width[:, None])
    else:
        lo, hi = np.full(n_samples, -np.inf), np.full(n_samples, np.inf)
        expect = np.repeat(width[:, None].astype(np.float64), n_samples, axis=1)
    # buffer per chunk and sample: the expected number of kept ratios + 30 % + 4 sd + 64 (a
    # sample that overflows is redone by `_sf_exact`), at most the chunk's genes
    cap = np.minimum(np.ceil(1.3 * expect + 4 * np.sqrt(expect)).astype(np.int64) + 64, width[:, None])
    offsets = np.zeros(cap.size + 1, dtype=np.int64)
    np.cumsum(np.maximum(cap, 1), out=offsets[1:])  # flat: chunk-major, then sample
    # a block of all samples' logs (~128 KiB) stays in L2 between its two uses
    block = int(np.clip(16384 // n_samples, 8, 2048))
    logmeans, usable, _, n_bad, used, below, n_in, kept = _sf_pass(
        arr, _LOG_TABLE, code, bounds, block, lo, hi, offsets
    )
    out = {"logmeans": logmeans, "usable": usable, "n_bad": n_bad, "n_exact": 0}
    if n_bad.any() or not usable.any():
        return out  # the caller raises
    medians, done, n_used = _sf_select(kept, offsets, used, below, n_in)
    redo = np.flatnonzero(~done)
    if redo.size:
        medians[redo] = _sf_exact(arr, _LOG_TABLE, logmeans, usable, redo)
        logger.debug("size factors: %d of %d samples redone over all genes (window missed)", redo.size, n_samples)
    out.update(medians=medians, n_used=n_used, n_exact=int(redo.size))
    return out


def _size_factors_from(res: dict[str, Any], name: str) -> np.ndarray:
    if np.any(res["n_used"] == 0):
        s = int(np.flatnonzero(res["n_used"] == 0)[0])
        raise DegflowInputError(
            f"{name} sample row {s} has no positive count among the {int(res['usable'].sum())} genes usable for "
            "size factors; remove samples without counts"
        )
    return np.exp(res["medians"])


def size_factors_ratio(counts: Any, *, n_threads: int | None = None) -> np.ndarray:
    """DESeq2 median-of-ratios size factors (R ``estimateSizeFactors``, pydeseq2 ``deseq2_norm``).

    For each sample, the median over genes of ``count / geometric mean of the gene's counts``;
    genes with a zero in any sample are left out (their geometric mean is zero).

    Parameters
    ----------
    counts
        Dense raw counts, **samples × genes** (pydeseq2's orientation; ``adata.X`` of a bulk
        AnnData), integer or float32/float64, non-negative. A DataFrame is accepted. C- and
        F-ordered (e.g. ``genes_by_samples.T``) int32/int64/float32/float64 arrays are read in
        place; other dtypes and strided views are converted first.
    n_threads
        Threads for this call; ``None``: numba's current setting.

    Returns
    -------
    float64 array, one size factor per sample (not rescaled: as DESeq2's ``type="ratio"``).

    Raises
    ------
    DegflowInputError
        Every gene has a zero in some sample (then use :func:`size_factors_poscounts`), or the
        counts hold negative/NaN/infinite values.
    """
    start = time.perf_counter()
    arr = _as_count_array(counts)
    with threads(n_threads) as n:
        res = _median_log_ratios(arr, "ratio", n)
    _raise_bad_counts(arr, res["n_bad"], "counts")
    n_usable = int(res["usable"].sum())
    if n_usable == 0:
        raise DegflowInputError(
            f"every one of the {arr.shape[1]} genes has a zero count in at least one of the {arr.shape[0]} "
            "samples, so the median-of-ratios size factors cannot be computed; use the 'poscounts' "
            "size factors (size_factors_poscounts) instead"
        )
    sf = _size_factors_from(res, "counts")
    logger.info(
        "size_factors_ratio: %d samples x %d genes (%d without zeros), %d threads, %.3f s",
        arr.shape[0],
        arr.shape[1],
        n_usable,
        n,
        time.perf_counter() - start,
    )
    return sf


def size_factors_poscounts(
    counts: Any, *, flavor: Literal["deseq2", "pydeseq2"] = "deseq2", n_threads: int | None = None
) -> np.ndarray:
    """DESeq2 ``estimateSizeFactors(type="poscounts")`` size factors, for counts with many zeros.

    The log geometric mean of a gene is ``sum(log(x[x > 0])) / n_samples``; each sample's factor
    is the median over genes where it has a positive count of ``log(x) - log geometric mean``,
    exponentiated; the factors are then divided by their geometric mean (which becomes 1).

    Parameters
    ----------
    counts
        Dense raw counts, **samples × genes**, integer or float32/float64, non-negative (as for
        :func:`size_factors_ratio`).
    flavor
        Which genes enter the medians. ``"deseq2"`` (R DESeq2, the default): every gene with a
        positive count. ``"pydeseq2"``: as pydeseq2 0.5.4 ``fit_size_factors("poscounts")``,
        only genes whose log geometric mean is > 0, which also drops genes whose positive counts
        are all 1 (on airway the two differ by up to 2 %).
    n_threads
        Threads for this call; ``None``: numba's current setting.

    Returns
    -------
    float64 array, one size factor per sample, geometric mean 1.

    Raises
    ------
    DegflowInputError
        All counts are zero, a sample has no positive count among the usable genes, or the counts
        hold negative/NaN/infinite values.
    """
    if flavor not in ("deseq2", "pydeseq2"):
        raise ValueError(f"flavor must be 'deseq2' or 'pydeseq2', got {flavor!r}")
    start = time.perf_counter()
    arr = _as_count_array(counts)
    with threads(n_threads) as n:
        res = _median_log_ratios(arr, flavor, n)
    _raise_bad_counts(arr, res["n_bad"], "counts")
    n_usable = int(res["usable"].sum())
    if n_usable == 0:
        raise DegflowInputError(
            f"no gene has a {'positive count' if flavor == 'deseq2' else 'log geometric mean > 0'} in the "
            f"{arr.shape[0]} x {arr.shape[1]} counts; size factors cannot be computed"
        )
    sf = _size_factors_from(res, "counts")
    sf = sf / np.exp(np.mean(np.log(sf)))
    logger.info(
        "size_factors_poscounts(%s): %d samples x %d genes (%d usable), %d threads, %.3f s",
        flavor,
        arr.shape[0],
        arr.shape[1],
        n_usable,
        n,
        time.perf_counter() - start,
    )
    return sf


def _ref_size_factors_ratio(counts: Any) -> np.ndarray:
    """Plain NumPy twin of :func:`size_factors_ratio` (R's ``estimateSizeFactorsForMatrix``)."""
    x = np.asarray(counts, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_x = np.log(x)
    logmeans = log_x.mean(axis=0)
    keep = np.isfinite(logmeans)
    return np.exp(np.median(log_x[:, keep] - logmeans[keep], axis=1))


def _ref_size_factors_poscounts(counts: Any, *, flavor: Literal["deseq2", "pydeseq2"] = "deseq2") -> np.ndarray:
    """Plain NumPy twin of :func:`size_factors_poscounts` (R DESeq2 ``geoMeanNZ`` path)."""
    x = np.asarray(counts, dtype=np.float64)
    log_x = np.zeros_like(x)
    np.log(x, out=log_x, where=x > 0)
    logmeans = log_x.mean(axis=0)
    usable = (x > 0).any(axis=0) if flavor == "deseq2" else logmeans > 0
    sf = np.array([np.exp(np.median((log_x[s] - logmeans)[usable & (x[s] > 0)])) for s in range(x.shape[0])])
    return sf / np.exp(np.mean(np.log(sf)))

