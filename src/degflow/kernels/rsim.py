"""R's random number generation in numba, for DESeq2's dispersion prior variance (``estimateDispersionsPriorVar``).

For residual degrees of freedom ``m - p <= 3`` DESeq2 matches the histogram of log-dispersion residuals to
simulated ``log(chi^2_{m-p}/(m-p)) + N(0, s^2)`` draws over a grid of ``s^2``. degflow reproduces those draws
bit-for-bit: R's Mersenne-Twister seeding (:func:`set_seed`, ``set.seed``) and ``unif_rand``, its inversion
``rnorm`` (:func:`norm_rand`, :func:`qnorm`), its ``exp_rand`` and ``rgamma`` (Ahrens-Dieter GD/GS; ``rchisq``),
then ``hist()`` on the fuzzed breaks (:func:`sim_dens`) and DESeq2's ``klDiv`` (:func:`kl_rows`). The rest of
the emulation (``hist``, ``loess``, ``lowess``, ...) is plain NumPy in :mod:`degflow.de.rcompat`, which calls
these kernels.

The kernels are here (not in :mod:`degflow.de.rcompat`) because all numba code of degflow lives in
:mod:`degflow.kernels` under the one decorator. They are serial ports of R's C code and keep numba's
``error_model="python"`` (R's arithmetic never divides by zero here; nothing to vectorise).
"""

from __future__ import annotations

import math

import numpy as np

from degflow.kernels.jit import jit

__all__ = ["EXP_Q", "draws", "exp_rand", "kl_rows", "norm_rand", "qnorm", "rgamma", "set_seed", "sim_dens", "unif_rand"]

_I2_32M1 = 2.328306437080797e-10  # 1 / (2^32 - 1), R's fixup constant
#: exp_rand's q[k-1] = sum_{j<=k} log(2)^j / j!  (R sexp.c hard-codes these decimals)
EXP_Q = np.array(
    [
        0.6931471805599453,
        0.9333736875190459,
        0.9888777961838675,
        0.9984959252914960040,
        0.9998292811061389,
        0.9999833164100727,
        0.9999985508193652,
        0.9999998906925558,
        0.9999999924734159,
        0.9999999995283275,
        0.9999999999728814,
        0.9999999999985598,
        0.9999999999999289,
        0.9999999999999968,
        0.9999999999999999,
        1.0000000000000000,
    ]
)


def set_seed(seed: int) -> np.ndarray:
    """State of R's Mersenne-Twister after ``set.seed(seed)``: 624 words + position.

    Parameters
    ----------
    seed
        R's seed.

    Returns
    -------
    numpy.ndarray
        625 uint64 words: the state the kernels here advance in place.
    """
    s = int(seed) & 0xFFFFFFFF
    for _ in range(50):
        s = (69069 * s + 1) & 0xFFFFFFFF
    words = []
    for _ in range(625):
        s = (69069 * s + 1) & 0xFFFFFFFF
        words.append(s)
    state = np.zeros(625, dtype=np.uint64)
    state[:624] = np.array(words[1:], dtype=np.uint64)
    state[624] = 624  # dummy[0] = mti = N after FixupSeeds(initial)
    return state



# AS 241 (PPND16) coefficients of R's qnorm.c, highest degree first
_QN_C_NUM = np.array([2509.0809287301226727, 33430.575583588128105, 67265.770927008700853,
                      45921.953931549871457, 13731.693765509461125, 1971.5909503065514427,
                      133.14166789178437745, 3.387132872796366608])
_QN_C_DEN = np.array([5226.495278852854561, 28729.085735721942674, 39307.89580009271061,
                      21213.794301586595867, 5394.1960214247511077, 687.1870074920579083,
                      42.313330701600911252, 1.0])
_QN_I_NUM = np.array([7.7454501427834140764e-4, 0.0227238449892691845833, 0.24178072517745061177,
                      1.27045825245236838258, 3.64784832476320460504, 5.7694972214606914055,
                      4.6303378461565452959, 1.42343711074968357734])
_QN_I_DEN = np.array([1.05075007164441684324e-9, 5.475938084995344946e-4, 0.0151986665636164571966,
                      0.14810397642748007459, 0.68976733498510000455, 1.6763848301838038494,
                      2.05319162663775882187, 1.0])
_QN_T_NUM = np.array([2.01033439929228813265e-7, 2.71155556874348757815e-5, 0.0012426609473880784386,
                      0.026532189526576123093, 0.29656057182850489123, 1.7848265399172913358,
                      5.4637849111641143699, 6.6579046435011037772])
_QN_T_DEN = np.array([2.04426310338993978564e-15, 1.4215117583164458887e-7, 1.8463183175100546818e-5,
                      7.868691311456132591e-4, 0.0148753612908506148525, 0.13692988092273580531,
                      0.59983220655588793769, 1.0])


@jit(parallel=False, error_model="python")
def unif_rand(st: np.ndarray) -> float:
    """R's ``unif_rand()`` (Mersenne-Twister, ``fixup``) on the state ``st`` of :func:`set_seed`."""
    n_, m_ = 624, 397
    upper, lower, mag = 0x80000000, 0x7FFFFFFF, 0x9908B0DF
    if st[624] >= n_:
        for kk in range(n_ - m_):
            y = (st[kk] & upper) | (st[kk + 1] & lower)
            st[kk] = st[kk + m_] ^ (y >> 1) ^ (mag if (y & 1) else 0)
        for kk in range(n_ - m_, n_ - 1):
            y = (st[kk] & upper) | (st[kk + 1] & lower)
            st[kk] = st[kk + (m_ - n_)] ^ (y >> 1) ^ (mag if (y & 1) else 0)
        y = (st[n_ - 1] & upper) | (st[0] & lower)
        st[n_ - 1] = st[m_ - 1] ^ (y >> 1) ^ (mag if (y & 1) else 0)
        st[624] = 0
    y = st[st[624]]
    st[624] += 1
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    y &= 0xFFFFFFFF
    x = float(y) * 2.3283064365386963e-10
    if x <= 0.0:
        return 0.5 * 2.328306437080797e-10
    if 1.0 - x <= 0.0:
        return 1.0 - 0.5 * 2.328306437080797e-10
    return x


@jit(parallel=False, error_model="python")
def _horner(c: np.ndarray, r: float) -> float:
    # ((c0 * r + c1) * r + c2) ...: the same operations, in the same order, as qnorm.c
    v = c[0]
    for k in range(1, c.size):
        v = v * r + c[k]
    return v


@jit(parallel=False, error_model="python")
def qnorm(p: float) -> float:
    """R's ``qnorm5(p, 0, 1)`` (AS 241, the same operations in the same order as ``qnorm.c``)."""
    # R's qnorm5(p, 0, 1, lower_tail = TRUE, log_p = FALSE)
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * _horner(_QN_C_NUM, r) / _horner(_QN_C_DEN, r)
    r = p if q < 0 else 1.0 - p
    r = math.sqrt(-math.log(r))
    if r <= 5.0:
        r += -1.6
        val = _horner(_QN_I_NUM, r) / _horner(_QN_I_DEN, r)
    else:
        r += -5.0
        val = _horner(_QN_T_NUM, r) / _horner(_QN_T_DEN, r)
    if q < 0.0:
        val = -val
    return val


@jit(parallel=False, error_model="python")
def norm_rand(st: np.ndarray) -> float:
    """R's ``norm_rand()`` with the default ``INVERSION`` method."""
    big = 134217728.0  # 2^27, INVERSION
    u = unif_rand(st)
    u = float(int(big * u)) + unif_rand(st)
    return qnorm(u / big)


@jit(parallel=False, error_model="python")
def exp_rand(st: np.ndarray, qtab: np.ndarray) -> float:
    """R's ``exp_rand()`` (Ahrens & Dieter 1972, ``sexp.c``); ``qtab`` is :data:`EXP_Q`."""
    a = 0.0
    u = unif_rand(st)
    while u <= 0.0 or u >= 1.0:
        u = unif_rand(st)
    while True:
        u += u
        if u > 1.0:
            break
        a += qtab[0]
    u -= 1.0
    if u <= qtab[0]:
        return a + u
    i = 0
    ustar = unif_rand(st)
    umin = ustar
    while True:
        ustar = unif_rand(st)
        if umin > ustar:
            umin = ustar
        i += 1
        if not (u > qtab[i]):
            break
    return a + umin * qtab[0]


@jit(parallel=False, error_model="python")
def _rgamma_ge1(st: np.ndarray, qtab: np.ndarray, a: float, scale: float) -> float:
    # Ahrens & Dieter (1982) GD algorithm, as in R's rgamma.c (a >= 1)
    sqrt32 = 5.656854
    q1, q2, q3, q4, q5, q6, q7 = 0.04166669, 0.02083148, 0.00801191, 0.00144121, -7.388e-5, 2.4511e-4, 2.424e-4
    a1, a2, a3, a4, a5, a6, a7 = 0.3333333, -0.250003, 0.2000062, -0.1662921, 0.1423657, -0.1367177, 0.1233795
    s2 = a - 0.5
    s = math.sqrt(s2)
    d = sqrt32 - s * 12.0
    t = norm_rand(st)
    x = s + 0.5 * t
    ret_val = x * x
    if t >= 0.0:
        return scale * ret_val
    u = unif_rand(st)
    if d * u <= t * t * t:
        return scale * ret_val
    r = 1.0 / a
    q0 = ((((((q7 * r + q6) * r + q5) * r + q4) * r + q3) * r + q2) * r + q1) * r
    if a <= 3.686:
        b = 0.463 + s + 0.178 * s2
        si = 1.235
        c = 0.195 / s - 0.079 + 0.16 * s
    elif a <= 13.022:
        b = 1.654 + 0.0076 * s2
        si = 1.68 / s + 0.275
        c = 0.062 / s + 0.024
    else:
        b = 1.77
        si = 0.75
        c = 0.1515 / s
    if x > 0.0:
        v = t / (s + s)
        if abs(v) <= 0.25:
            q = q0 + 0.5 * t * t * ((((((a7 * v + a6) * v + a5) * v + a4) * v + a3) * v + a2) * v + a1) * v
        else:
            q = q0 - s * t + 0.25 * t * t + (s2 + s2) * math.log(1.0 + v)
        if math.log(1.0 - u) <= q:
            return scale * ret_val
    while True:
        e = exp_rand(st, qtab)
        u = unif_rand(st)
        u = u + u - 1.0
        if u < 0.0:
            t = b - si * e
        else:
            t = b + si * e
        if t >= -0.71874483771719:
            v = t / (s + s)
            if abs(v) <= 0.25:
                q = q0 + 0.5 * t * t * ((((((a7 * v + a6) * v + a5) * v + a4) * v + a3) * v + a2) * v + a1) * v
            else:
                q = q0 - s * t + 0.25 * t * t + (s2 + s2) * math.log(1.0 + v)
            if q > 0.0:
                w = math.expm1(q)
                if c * abs(u) <= w * math.exp(e - 0.5 * t * t):
                    break
    x = s + 0.5 * t
    return scale * x * x


@jit(parallel=False, error_model="python")
def rgamma(st: np.ndarray, qtab: np.ndarray, a: float, scale: float) -> float:
    """R's ``rgamma(1, a, scale = scale)`` (``rgamma.c``); ``rchisq(df)`` is ``rgamma(df / 2, 2)``."""
    if a >= 1.0:
        return _rgamma_ge1(st, qtab, a, scale)
    # Ahrens & Dieter (1974) GS algorithm, as in R's rgamma.c (0 < a < 1)
    e = 1.0 + 0.36787944117144233 * a
    while True:
        p = e * unif_rand(st)
        if p >= 1.0:
            x = -math.log((e - p) / a)
            if exp_rand(st, qtab) >= (1.0 - a) * math.log(x):
                break
        else:
            x = math.exp(math.log(p) / a)
            if exp_rand(st, qtab) >= x:
                break
    return scale * x


@jit(parallel=False, error_model="python")
def sim_dens(st: np.ndarray, qtab: np.ndarray, df: float, grid: np.ndarray, ndraw: int, fuzzy: np.ndarray
             ) -> np.ndarray:
    """``hist()`` densities of DESeq2's simulated log-dispersion residuals, one row per grid value of s^2."""
    # per grid value: hist() density of log(rchisq(ndraw, df)) + rnorm(ndraw, 0, sqrt(grid)) - log(df)
    nb = fuzzy.size - 1
    out = np.empty((grid.size, nb))
    chisq = np.empty(ndraw)
    logdf = math.log(df)
    lo = -10.0
    hi = 10.0
    for gi in range(grid.size):
        for i in range(ndraw):
            chisq[i] = rgamma(st, qtab, df / 2.0, 2.0)
        sd = math.sqrt(grid[gi])
        counts = np.zeros(nb)
        n = 0
        for i in range(ndraw):
            z = 0.0
            if sd != 0.0:  # rnorm(mu, 0) returns mu without drawing
                z = sd * norm_rand(st)
            v = math.log(chisq[i]) + z - logdf
            if v > lo and v < hi:
                n += 1
                # hist(): right-closed bins on fuzzed breaks
                k = np.searchsorted(fuzzy, v) - 1
                if k < 0:
                    k = 0
                if k >= nb:
                    k = nb - 1
                counts[k] += 1.0
        out[gi] = counts / (n * 0.5)
    return out


@jit(parallel=False, error_model="python")
def kl_rows(dens_all: np.ndarray, obs_dens: np.ndarray) -> np.ndarray:
    """DESeq2's ``klDiv`` of the observed density from each simulated one (rows of ``dens_all``)."""
    # KL divergence of the observed density from each simulated one (DESeq2's klDiv)
    nb = obs_dens.size
    out = np.empty(dens_all.shape[0])
    for gi in range(dens_all.shape[0]):
        dens = dens_all[gi]
        small = np.inf
        for k in range(nb):
            if obs_dens[k] > 0 and obs_dens[k] < small:
                small = obs_dens[k]
            if dens[k] > 0 and dens[k] < small:
                small = dens[k]
        kl = 0.0
        for k in range(nb):
            kl += obs_dens[k] * (math.log(obs_dens[k] + small) - math.log(dens[k] + small))
        out[gi] = kl
    return out


@jit(parallel=False, error_model="python")
def draws(st: np.ndarray, qtab: np.ndarray, n: int, df: float, sd: float) -> np.ndarray:
    """``rchisq(n, df)`` then ``rnorm(n, 0, sd)`` in R's call order (for the tests against R)."""
    out = np.empty(2 * n)
    for i in range(n):
        out[i] = rgamma(st, qtab, df / 2.0, 2.0)
    for i in range(n):
        out[n + i] = sd * norm_rand(st) if sd != 0.0 else 0.0
    return out
