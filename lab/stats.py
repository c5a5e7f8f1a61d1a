"""Statistics for the metrics and tables: pure functions of numbers, no lab types.

* :func:`cluster_bootstrap_ci`: percentile bootstrap that resamples whole clusters (posts);
* :func:`mcnemar_exact` and :func:`sign_flip_test`: exact two-sided paired tests;
* :func:`holm`: Holm's step-down correction of a family of p-values;
* :func:`mdd_paired` and :func:`pairs_needed`: the smallest paired difference an exact sign
  test detects with 80% power, and the number of pairs a given difference needs;
* :func:`logistic_regression`: Newton/IRLS fit with standard errors, z and p (responses may be
  soft, i.e. a share of workers);
* :func:`auc`: area under the ROC curve with soft labels;
* :func:`pairwise_agreement`: how often two judges of one item agree.

What each is for, and what a small sample cannot detect, is written up in docs/statistics.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import binom, norm


def normal_two_sided_p(z: float) -> float:
    """Two-sided p-value of a standard normal statistic."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def cluster_bootstrap_ci(
    stat: Callable[[np.ndarray], float],
    clusters: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile 95% CI of ``stat`` when whole clusters are resampled with replacement.

    Args:
        stat: maps an index array (rows, possibly repeated) to the statistic.
        clusters: cluster label of each row (e.g. the post id); rows of one cluster are
            always drawn together.
        n_boot: bootstrap replicates (a replicate whose statistic is NaN is dropped).
        seed: seed of the resampling.

    Returns:
        (low, high), or (nan, nan) with no rows.
    """
    clusters = np.asarray(clusters)
    if len(clusters) == 0:
        return (float("nan"), float("nan"))
    _, inverse = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(inverse.max() + 1)]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(members), size=(n_boot, len(members)))
    values = np.array([stat(np.concatenate([members[c] for c in row])) for row in draws])
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return (float("nan"), float("nan"))
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar test (a sign test on the discordant pairs).

    Args:
        b: pairs where only the first setting agrees with the human.
        c: pairs where only the second setting agrees.

    Returns:
        min(1, 2 P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2); 1.0 with no discordant pair.
    """
    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))


def sign_flip_test(
    d: np.ndarray, max_exact: int = 20, n_random: int = 100_000, seed: int = 0
) -> tuple[float, str]:
    """Two-sided permutation test of a paired difference: flip the sign of each difference.

    Under the null (the two settings are exchangeable on every pair) each nonzero difference
    is equally likely to have either sign. The statistic is |sum of differences|. With at most
    ``max_exact`` nonzero differences all 2^m sign patterns are enumerated (an exact p-value);
    otherwise ``n_random`` seeded random patterns give p = (1 + hits) / (1 + n_random). With
    differences of one size this is the exact McNemar / sign test.

    Returns:
        (p-value, ``"exact"`` or ``"random N"``).
    """
    d = np.asarray(d, dtype=float)
    d = d[d != 0]
    m = len(d)
    if m == 0:
        return 1.0, "exact"
    observed = abs(d.sum())
    tol = 1e-9 * max(1.0, observed)
    if m <= max_exact:
        hits = 0
        for start in range(0, 2**m, 2**14):  # every sign pattern, in blocks
            codes = np.arange(start, min(2**m, start + 2**14))[:, None]
            signs = 1.0 - 2.0 * ((codes >> np.arange(m)) & 1)
            hits += int((np.abs(signs @ d) >= observed - tol).sum())
        return hits / 2**m, "exact"
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_random, 10_000):
        k = min(10_000, n_random - start)
        signs = rng.choice((-1.0, 1.0), size=(k, m))
        hits += int((np.abs(signs @ d) >= observed - tol).sum())
    return (1 + hits) / (1 + n_random), f"random {n_random}"


def holm(pvalues: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (NaN entries stay NaN and are not counted)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def _critical_counts(n_max: int, alpha: float) -> np.ndarray:
    """For m = 0..n_max discordant pairs, the largest count c with 2 P(X <= c) <= alpha
    (X ~ Binomial(m, 1/2)): the exact two-sided sign test rejects when min(wins, losses) <= c.
    -1 where no outcome rejects."""
    out = np.full(n_max + 1, -1)
    for m in range(1, n_max + 1):
        k = np.arange(m // 2 + 1)
        ok = np.flatnonzero(2.0 * binom.cdf(k, m, 0.5) <= alpha + 1e-12)
        out[m] = ok[-1] if len(ok) else -1
    return out


def paired_power(n: int, discordance: float, diff: float, alpha: float = 0.05) -> float:
    """Power of the exact two-sided sign test on n pairs.

    Each pair is discordant with probability ``discordance``; a discordant pair favours the
    better setting with probability 1/2 + diff / (2 discordance), so the expected paired
    difference in agreement is ``diff``.
    """
    if discordance <= 0 or n <= 0:
        return 0.0
    win = min(1.0, 0.5 + diff / (2 * discordance))
    m = np.arange(1, n + 1)
    c = _critical_counts(n, alpha)[1:]
    reject = binom.cdf(c, m, win) + binom.sf(m - c - 1, m, win)
    reject = np.where(c >= 0, reject, 0.0)
    return float((binom.pmf(m, n, discordance) * reject).sum())


def mdd_paired(
    n: int, discordance: float, power: float = 0.8, alpha: float = 0.05, step: float = 0.005
) -> float:
    """Minimum detectable difference in alignment for a paired comparison of n pairs.

    The smallest difference (on a grid of ``step``) that the exact two-sided sign test finds
    at level ``alpha`` with probability ``power``, when a share ``discordance`` of the pairs is
    labeled differently by the two settings. No difference can exceed ``discordance``; when
    even that one is not detected the result is NaN (nothing is detectable).
    """
    if discordance <= 0 or n <= 0:
        return float("nan")
    for diff in np.arange(step, discordance + 1e-12, step):
        if paired_power(n, discordance, float(diff), alpha) >= power:
            return float(diff)
    return float("nan")


def pairs_needed(
    diff: float, discordance: float, power: float = 0.8, alpha: float = 0.05,
    max_n: int = 20_000,
) -> int | None:
    """Smallest n whose :func:`mdd_paired` is at most ``diff`` (None beyond ``max_n``).

    Starts from the normal approximation n = (z_a/2 + z_power)^2 q / diff^2 and walks to the
    first n whose exact power reaches ``power``.
    """
    if diff > discordance or discordance <= 0:
        return None
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    n = max(1, int(z * z * discordance / diff**2 * 0.8))
    while n <= max_n:
        if paired_power(n, discordance, diff, alpha) >= power:
            return n
        n += max(1, n // 200)
    return None


def logistic_regression(
    X: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-10
) -> dict:
    """Logistic regression by Newton's method (IRLS); y may be a share in [0, 1].

    Args:
        X: design matrix (n, k); include a column of ones for an intercept.
        y: responses in [0, 1] (a soft response is a share of workers; the standard errors
            then assume binomial variance, which is conservative).

    Returns:
        ``coef``, ``se``, ``z``, ``p`` (lists, one per column), ``converged``, ``iterations``
        and ``reason`` ('' or why there is no fit). Columns that are collinear (e.g. every
        pair has the longer summary first) or separated data (a coefficient running off)
        give ``converged`` False and NaN everywhere.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    nan = [float("nan")] * X.shape[1]
    if len(X) <= X.shape[1] or np.linalg.matrix_rank(X) < X.shape[1]:
        return {"coef": nan, "se": nan, "z": nan, "p": nan, "converged": False,
                "iterations": 0, "reason": "collinear columns or too few rows"}
    beta = np.zeros(X.shape[1])
    converged = False
    it = 0
    while it < max_iter:
        it += 1
        mu = 1.0 / (1.0 + np.exp(-(X @ beta)))
        w = mu * (1 - mu)
        hess = X.T @ (X * w[:, None])
        try:
            step = np.linalg.solve(hess, X.T @ (y - mu))
        except np.linalg.LinAlgError:
            break
        beta = beta + step
        if np.max(np.abs(beta)) > 50:
            break
        if np.max(np.abs(step)) < tol:
            converged = True
            break
    if not converged:
        return {"coef": nan, "se": nan, "z": nan, "p": nan, "converged": False,
                "iterations": it, "reason": "no convergence (separated data)"}
    mu = 1.0 / (1.0 + np.exp(-(X @ beta)))
    info = X.T @ (X * (mu * (1 - mu))[:, None])
    if np.linalg.cond(info) > 1e12:  # fitted probabilities of 0 or 1: separated data
        return {"coef": nan, "se": nan, "z": nan, "p": nan, "converged": False,
                "iterations": it, "reason": "separated data (fitted probabilities 0 or 1)"}
    cov = np.linalg.inv(info)
    se = np.sqrt(np.diag(cov))
    z = beta / se
    return {"coef": beta.tolist(), "se": se.tolist(), "z": z.tolist(),
            "p": [normal_two_sided_p(v) for v in z], "converged": True, "iterations": it,
            "reason": ""}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for soft ``labels`` in [0, 1].

    Each item counts as a positive with weight ``label`` and as a negative with weight
    ``1 - label``; ties in score count one half. NaN when there is no positive or negative.
    """
    s = np.asarray(scores, dtype=float)
    pos = np.asarray(labels, dtype=float)
    neg = 1 - pos
    total = pos.sum() * neg.sum()
    if total == 0:
        return float("nan")
    greater = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])
    return float(pos @ greater @ neg / total)


def pairwise_agreement(votes: list[list[float]]) -> np.ndarray:
    """Per item, the share of unordered pairs of its judges that agree.

    Args:
        votes: for each item, its judges' choices (1.0 or 0.0); items with fewer than two
            judges are the caller's to drop.

    Returns:
        One value per item: (C(k1, 2) + C(k0, 2)) / C(k, 2).
    """
    out = []
    for v in votes:
        k, k1 = len(v), int(round(sum(v)))
        out.append((math.comb(k1, 2) + math.comb(k - k1, 2)) / math.comb(k, 2))
    return np.array(out, dtype=float)
