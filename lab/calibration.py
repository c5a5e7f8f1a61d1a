"""Temperature scaling of AI soft labels against a small set of human labels.

A small labeler's soft labels are ordered but under-confident: on TL;DR its p sits in
0.42-0.58 while the humans' choice is a coin with a much larger bias. A reward model trained on
such labels by cross-entropy reaches the loss floor at once. Temperature scaling (Guo et al.
2017) keeps the order and the 0.5 point and stretches the labels:

    p_cal = sigmoid(scale * logit(p)),     scale = 1 / T,

with ``scale`` fitted by maximum likelihood on pairs that have human labels (in the RLAIF chain:
the exemplar-pool split, which the labeler never scores against). The negative log-likelihood
is convex in ``scale``, so Newton's method finds the exact optimum.
"""

from __future__ import annotations

import math

import numpy as np

MIN_PAIRS = 20
"""Fewest human-labeled pairs a temperature is fitted on."""


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [1e-6, 1 - 1e-6]."""
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def apply(p: np.ndarray, scale: float) -> np.ndarray:
    """Calibrated labels ``sigmoid(scale * logit(p))`` (a label of exactly 0.5 stays 0.5)."""
    return 1.0 / (1.0 + np.exp(-scale * logit(p)))


def nll(p: np.ndarray, human: np.ndarray) -> float:
    """Mean negative log-likelihood of the human labels (shares in [0, 1]) under p."""
    p = np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    h = np.asarray(human, float)
    return float(-(h * np.log(p) + (1 - h) * np.log(1 - p)).mean())


def fit_scale(p: np.ndarray, human: np.ndarray, max_iter: int = 100) -> float:
    """The scale (1 / temperature) that maximises the likelihood of ``human`` under
    ``sigmoid(scale * logit(p))``.

    Args:
        p: AI soft labels (probability that the first response is better).
        human: human labels of the same pairs (1, 0, or a share of workers).
        max_iter: Newton steps at most.

    Returns:
        The fitted scale, >= 0 (0 when the labels carry no information or point the wrong
        way: a labeler that is anti-aligned is not turned around by calibration).

    Raises:
        ValueError: fewer than :data:`MIN_PAIRS` pairs, or lengths that differ.
    """
    z, h = logit(p), np.asarray(human, float)
    if len(z) != len(h):
        raise ValueError(f"{len(z)} AI labels but {len(h)} human labels")
    if len(z) < MIN_PAIRS:
        raise ValueError(f"a temperature needs at least {MIN_PAIRS} human-labeled pairs, "
                         f"found {len(z)}")
    if not np.any(z):
        return 0.0
    if float(((0.5 - h) * z).sum()) >= 0:  # the likelihood falls from s = 0 on: no signal
        return 0.0
    s = 1.0
    for _ in range(max_iter):
        q = 1.0 / (1.0 + np.exp(-s * z))
        grad = float(((q - h) * z).sum())
        hess = float((q * (1 - q) * z * z).sum())
        if hess <= 0:
            break
        step = grad / hess
        # the optimum is > 0 (checked above): a Newton step past 0 is halved instead
        s_new = s - step if s - step > 0 else s / 2
        if abs(s_new - s) < 1e-10 * max(1.0, abs(s)):
            s = s_new
            break
        s = s_new
    return float(s) if math.isfinite(s) else 0.0


def reliability_bins(p: np.ndarray, human: np.ndarray, bins: int = 10) -> list[dict]:
    """Per equal-width bin of p: the bin's range, count, mean p and mean human label."""
    p, h = np.asarray(p, float), np.asarray(human, float)
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for i in range(bins):
        inside = (p >= edges[i]) & ((p < edges[i + 1]) if i < bins - 1 else (p <= 1))
        if inside.any():
            out.append({"low": float(edges[i]), "high": float(edges[i + 1]),
                        "n": int(inside.sum()), "mean_p": float(p[inside].mean()),
                        "mean_human": float(h[inside].mean())})
    return out
