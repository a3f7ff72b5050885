"""R functions that DESeq2 calls, emulated to the last bit where DESeq2's results depend on them.

=============================  ==============================================================
:func:`mad`, :func:`trim_mean`  ``mad(x)`` (constant 1.4826) and ``mean(x, trim=)``
:func:`simulated_densities`    the simulated residual densities of ``estimateDispersionsPriorVar``
                               (R's RNG in :mod:`degflow.kernels.rsim`), cached per (df, seed)
:func:`hist_density`           ``hist(x, breaks = -20:20 / 2)$density`` (R's fuzzed breaks)
:func:`loess_interpolate`      ``predict(loess(y ~ x, span = ))``: kd-tree vertices + interpolation
:func:`lowess`                 R's C ``clowess`` (``stats::lowess``)
:func:`quantile7`              ``quantile(x, probs, type = 7)``
:func:`p_adjust_bh`            ``p.adjust(p, "BH")``
:func:`independent_filtering`  DESeq2 ``pvalueAdjustment`` (genefilter ``filtered_p`` + ``lowess``)
=============================  ==============================================================

Plain NumPy; the one compiled part (R's random number generators) is :mod:`degflow.kernels.rsim`,
because all numba code of degflow lives in :mod:`degflow.kernels` under the one decorator.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from degflow.kernels import rsim

__all__ = [
    "hist_density", "independent_filtering", "loess_interpolate", "lowess", "mad", "p_adjust_bh", "quantile7",
    "simulated_densities", "trim_mean",
]


R_MAD_CONSTANT = 1.4826


def mad(x: np.ndarray) -> float:
    """R's ``mad(x)``: 1.4826 * median(|x - median(x)|)."""
    x = x[~np.isnan(x)]
    return float(R_MAD_CONSTANT * np.median(np.abs(x - np.median(x))))


def trim_mean(x: np.ndarray, trim: float, *, axis: int = 1) -> np.ndarray:
    """R's ``mean(x, trim=)`` along ``axis``."""
    n = x.shape[axis]
    lo = int(math.floor(n * trim))
    s = np.sort(x, axis=axis)
    return np.take(s, np.arange(lo, n - lo), axis=axis).mean(axis=axis)


@functools.lru_cache(maxsize=16)
def simulated_densities(df: int, seed: int) -> np.ndarray:
    """The simulated log-dispersion-residual densities of the prior-variance grid (data-independent).

    They depend only on the residual degrees of freedom and R's seed, so a process that fits many
    small designs (pseudobulk cell types, notebooks) draws them once (~4 million R draws, ~0.7 s).
    """
    _, fuzzy = _hist_breaks()
    grid = np.linspace(0.0, 8.0, 200)
    dens = rsim.sim_dens(rsim.set_seed(seed), rsim.EXP_Q, float(df), grid, 10000, fuzzy)
    dens.flags.writeable = False
    return dens


def _hist_breaks() -> tuple[np.ndarray, np.ndarray]:
    brks = np.arange(-20, 21) / 2.0
    fuzz = 1e-7 * 0.5
    fuzzy = brks + fuzz
    fuzzy[0] = brks[0] - fuzz
    return brks, fuzzy


def hist_density(x: np.ndarray) -> np.ndarray:
    """``hist(x, breaks = -20:20/2)$density`` (right-closed, include.lowest, fuzzed)."""
    _, fuzzy = _hist_breaks()
    k = np.searchsorted(fuzzy, x, side="left") - 1
    k = np.clip(k, 0, fuzzy.size - 2)
    counts = np.bincount(k, minlength=fuzzy.size - 1).astype(float)
    return counts / (x.size * 0.5)


def loess_interpolate(x: np.ndarray, y: np.ndarray, newx: np.ndarray, span: float) -> np.ndarray:
    """``predict(loess(y ~ x, span = span), newx)`` for one predictor (R defaults).

    Degree 2, gaussian family, ``surface = "interpolate"`` with ``cell = 0.2``: a k-d
    tree on x (``ehg126``/``ehg124``), local quadratic fits with tricube weights at the
    cell vertices giving value and slope (``ehg127``), and cubic Hermite interpolation
    inside the leaf cell (``ehg128``).
    """
    order = np.argsort(x, kind="stable")
    xs = np.asarray(x, dtype=float)[order]
    ys = np.asarray(y, dtype=float)[order]
    n = xs.size
    nf = min(n, int(math.floor(n * span)))
    fc = int(math.floor(n * (span * 0.2)))
    nvmax = max(200, n)
    alpha, beta = xs.min(), xs.max()
    margin = 0.005 * max(beta - alpha, 1e-10 * max(abs(alpha), abs(beta)) + 1e-30)
    verts = [alpha - margin, beta + margin]
    # cells: lists indexed by cell number (0-based)
    lo_pt, hi_pt = [1], [n]  # 1-based point ranges
    cell_v = [(0, 1)]
    split_val: list[float | None] = [None]
    child: list[tuple[int, int] | None] = [None]
    p = 0
    while p < len(lo_pt):
        lft, u = lo_pt[p], hi_pt[p]
        vl, vr = cell_v[p]
        leaf = (u - lft + 1) <= fc or (verts[vr] - verts[vl]) <= 0.0
        if not leaf:
            leaf = nvmax < len(lo_pt) + 2 or nvmax < len(verts) + 1.0
        m = 0
        if not leaf:
            m = (lft + u) // 2
            offset = 0
            while not ((m + offset) >= u or (m + offset) < lft):
                if xs[m + offset - 1] == xs[m + offset]:  # all ties go with the hi son
                    offset = -offset
                    if offset >= 0:
                        offset += 1
                else:
                    m = m + offset
                    break
            leaf = verts[vl] == xs[m - 1] or verts[vr] == xs[m - 1]
        if leaf:
            p += 1
            continue
        t = float(xs[m - 1])
        split_val[p] = t
        if t in verts:
            vnew = verts.index(t)
        else:
            verts.append(t)
            vnew = len(verts) - 1
        lo_pt += [lft, m + 1]
        hi_pt += [m, u]
        cell_v += [(vl, vnew), (vnew, vr)]
        split_val += [None, None]
        child += [None, None]
        child[p] = (len(lo_pt) - 2, len(lo_pt) - 1)
        p += 1
    # local quadratic fits at the vertices: value and slope
    vv = np.array(verts)
    vval = np.empty((vv.size, 2))
    for i, q in enumerate(vv):
        dist = (xs - q) ** 2
        psi = np.argsort(dist, kind="stable")[:nf]
        rho = dist[psi[-1]] * max(1.0, span)
        w = np.sqrt((1.0 - np.sqrt(dist[psi] / rho) ** 3) ** 3)
        dx = xs[psi] - q
        B = np.column_stack([w, w * dx, w * dx * dx])
        coef = np.linalg.lstsq(B, w * ys[psi], rcond=None)[0]
        vval[i] = coef[:2]
    out = np.empty(newx.size)
    for k, z in enumerate(np.asarray(newx, dtype=float)):
        j = 0
        while child[j] is not None:
            sv = split_val[j]
            j = child[j][0] if z <= sv else child[j][1]  # type: ignore[index,operator]
        a_, b_ = cell_v[j]
        v0, v1 = vv[a_], vv[b_]
        h = (z - v0) / (v1 - v0)
        phi0 = (1 - h) ** 2 * (1 + 2 * h)
        phi1 = h**2 * (3 - 2 * h)
        psi0 = h * (1 - h) ** 2
        psi1 = h**2 * (h - 1)
        out[k] = phi0 * vval[a_, 0] + phi1 * vval[b_, 0] + (psi0 * vval[a_, 1] + psi1 * vval[b_, 1]) * (v1 - v0)
    return out


def lowess(x: np.ndarray, y: np.ndarray, *, f: float = 2 / 3, nsteps: int = 3) -> np.ndarray:
    """Port of R's C ``clowess`` (``stats::lowess``); ``x`` must be sorted."""
    n = x.size
    if n < 2:
        return y.astype(float).copy()
    delta = 0.01 * (x[-1] - x[0])
    ns = max(2, min(n, int(f * n + 1e-7)))
    ys = np.zeros(n)
    rw = np.ones(n)
    res = np.zeros(n)

    def lowest(xs: float, nleft: int, nright: int, userw: bool) -> tuple[float, bool]:
        rng = x[n - 1] - x[0]
        h = max(xs - x[nleft], x[nright] - xs)
        h9, h1 = 0.999 * h, 0.001 * h
        w = np.zeros(n)
        a = 0.0
        j = nleft
        while j < n:
            r = abs(x[j] - xs)
            if r <= h9:
                w[j] = 1.0 if r <= h1 else (1.0 - (r / h) ** 3) ** 3
                if userw:
                    w[j] *= rw[j]
                a += w[j]
            elif x[j] > xs:
                break
            j += 1
        nrt = j - 1
        if a <= 0.0:
            return 0.0, False
        sl = slice(nleft, nrt + 1)
        w[sl] /= a
        if h > 0.0:
            a = float(np.sum(w[sl] * x[sl]))
            b = xs - a
            c = float(np.sum(w[sl] * (x[sl] - a) ** 2))
            if math.sqrt(c) > 0.001 * rng:
                b /= c
                w[sl] *= b * (x[sl] - a) + 1.0
        return float(np.sum(w[sl] * y[sl])), True

    it = 1
    while it <= nsteps + 1:
        nleft, nright, last, i = 0, ns - 1, -1, 0
        while True:
            if nright < n - 1:
                d1 = x[i] - x[nleft]
                d2 = x[nright + 1] - x[i]
                if d1 > d2:
                    nleft += 1
                    nright += 1
                    continue
            val, ok = lowest(x[i], nleft, nright, it > 1)
            ys[i] = val if ok else y[i]
            if last < i - 1:
                denom = x[i] - x[last]
                for j in range(last + 1, i):
                    alpha = (x[j] - x[last]) / denom
                    ys[j] = alpha * ys[i] + (1.0 - alpha) * ys[last]
            last = i
            cut = x[last] + delta
            i = last + 1
            while i < n:
                if x[i] > cut:
                    break
                if x[i] == x[last]:
                    ys[i] = ys[last]
                    last = i
                i += 1
            i = max(last + 1, i - 1)
            if last >= n - 1:
                break
        res = y - ys
        sc = float(np.sum(np.abs(res)) / n)
        if it > nsteps:
            break
        rwa = np.abs(res)
        srt = np.sort(rwa)
        m1 = n // 2
        if n % 2 == 0:
            cmad = 3.0 * (srt[m1] + srt[n - m1 - 1])
        else:
            cmad = 6.0 * srt[m1]
        if cmad < 1e-7 * sc:
            break
        c9, c1 = 0.999 * cmad, 0.001 * cmad
        with np.errstate(invalid="ignore", divide="ignore"):
            rw = np.where(rwa <= c1, 1.0, np.where(rwa <= c9, (1.0 - (rwa / cmad) ** 2) ** 2, 0.0))
        it += 1
    return ys


def quantile7(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """R's ``quantile(x, probs)`` (type 7), same floating-point operations."""
    xs = np.sort(x)
    n = xs.size
    index = 1 + max(n - 1, 0) * probs
    lo = np.floor(index).astype(int)
    hi = np.ceil(index).astype(int)
    qs = xs[lo - 1].copy()
    i = (index > lo) & (xs[hi - 1] != qs)
    h = (index - lo)[i]
    qs[i] = (1 - h) * qs[i] + h * xs[hi[i] - 1]
    return qs


def p_adjust_bh(p: np.ndarray) -> np.ndarray:
    """R's ``p.adjust(p, "BH")``, NA-aware."""
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    pv = p[ok]
    n = pv.size
    if n == 0:
        return out
    i = np.arange(n, 0, -1, dtype=float)
    o = np.argsort(-pv, kind="stable")
    ro = np.argsort(o, kind="stable")
    adj = np.minimum(1.0, np.minimum.accumulate(n / i * pv[o]))[ro]
    out[ok] = adj
    return out


def independent_filtering(
    base_mean: np.ndarray, pvalue: np.ndarray, alpha: float
) -> tuple[np.ndarray, float]:
    """Port of DESeq2 ``pvalueAdjustment`` (genefilter ``filtered_p`` + ``lowess``)."""
    lower = float(np.mean(base_mean == 0))
    upper = 0.95 if lower < 0.95 else 1.0
    theta = np.linspace(lower, upper, 50)
    cutoffs = quantile7(base_mean, theta)
    padj = np.full((base_mean.size, theta.size), np.nan)
    for k, c in enumerate(cutoffs):
        use = base_mean >= c
        if use.any():
            padj[use, k] = p_adjust_bh(pvalue[use])
    with np.errstate(invalid="ignore"):
        num_rej = np.sum(padj < alpha, axis=0).astype(float)
    lo_fit = lowess(theta, num_rej, f=1 / 5)
    if num_rej.max() <= 10:
        j = 0
    else:
        residual = num_rej[num_rej > 0] - lo_fit[num_rej > 0] if np.any(num_rej != 0) else np.zeros(1)
        thresh = lo_fit.max() - math.sqrt(float(np.mean(residual**2)))
        above = np.flatnonzero(num_rej > thresh)
        j = int(above[0]) if above.size else 0
    return padj[:, j], float(cutoffs[j])


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------
