"""Stage 5 of the pipeline: metrics of AI labels against human labels.

Works on label records (see :mod:`lab.label`): ``p`` (AI probability that the first response
is better), ``p_fwd``/``p_swapped`` (each order alone), ``human`` (1.0 or 0.0), ``confidence``
(9-point) and the two lengths. A preference of exactly 0.5 is a tie and counts as half
agreement (the expected score of breaking it by a coin).

* alignment: share of pairs where the AI's argmax matches the human's, with a bootstrap 95% CI;
* position bias (RLAIF Table 4): share of pairs where the same *position* wins in both orders;
* length bias: how often the AI and the humans prefer the longer summary, the length-only
  baseline's alignment on the same pairs, and alignment split by the human's length preference;
* calibration: Brier score and expected calibration error against the human choices, and a
  Brier score against the human 9-point confidence read as a probability;
* cost: tokens and seconds per pair (a label fetched from the cache keeps the cost of
  computing it, so cost describes the setting, not the cache).
"""

from __future__ import annotations

import numpy as np

from lab.data import HIGH_CONFIDENCE


def agreement(p: np.ndarray, human: np.ndarray) -> np.ndarray:
    """Per-pair agreement of a preference with the human: 1, 0, or 0.5 for a tie."""
    return np.where(p == 0.5, 0.5, ((p > 0.5) == (human > 0.5)).astype(float))


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of a mean (seeded)."""
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else float("nan")


def human_soft(confidence: np.ndarray) -> np.ndarray:
    """9-point confidence as P(first better): 1 -> 1.0, 4 -> 0.625, 6 -> 0.375, 9 -> 0.0."""
    return (9.0 - confidence) / 8.0


def expected_calibration_error(p: np.ndarray, human: np.ndarray, bins: int = 10) -> float:
    """ECE of the AI's confidence max(p, 1-p) against its agreement with the human."""
    conf = np.maximum(p, 1 - p)
    agree = agreement(p, human)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(agree[mask].mean() - conf[mask].mean())
    return float(ece)


def compute(records: list[dict], seed: int = 0) -> dict:
    """All metrics of a list of label records.

    Returns:
        A flat dict: ``n``, ``alignment``, ``alignment_ci``, ``alignment_high_confidence``,
        ``position_bias`` and its split by position, ``length_bias``, ``human_length_rate``,
        ``length_baseline``, alignment when the human preferred the longer/shorter summary,
        ``brier``, ``brier_vs_confidence``, ``ece``, token and second costs.
    """
    if not records:
        raise ValueError("no label records to score")
    p = np.array([r["p"] for r in records], dtype=float)
    p_fwd = np.array([r["p_fwd"] for r in records], dtype=float)
    p_sw = np.array([r["p_swapped"] for r in records], dtype=float)
    human = np.array([r["human"] for r in records], dtype=float)
    conf = np.array([r["confidence"] or 0 for r in records], dtype=float)
    diff = np.array([r["len_first"] - r["len_second"] for r in records], dtype=float)

    agree = agreement(p, human)
    high = np.isin(conf, HIGH_CONFIDENCE)
    # Position bias: the same position wins in both orders (p_swapped is P("1") when swapped).
    same_first = (p_fwd > 0.5) & (p_sw > 0.5)
    same_second = (p_fwd < 0.5) & (p_sw < 0.5)
    # Length: +1 when the first is longer, -1 when shorter, 0 when equal.
    longer = np.sign(diff)
    length_pred = 0.5 + 0.5 * longer  # length-only baseline as a preference
    decided = longer != 0
    ai_longer = agreement(p[decided], length_pred[decided])
    human_longer = agreement(human[decided], length_pred[decided])
    human_pref_longer = decided & (agreement(human, length_pred) == 1)
    human_pref_shorter = decided & (agreement(human, length_pred) == 0)

    out = {
        "n": len(records),
        "alignment": _mean(agree),
        "alignment_ci": list(bootstrap_ci(agree, seed=seed)),
        "alignment_forward_only": _mean(agreement(p_fwd, human)),
        "n_high_confidence": int(high.sum()),
        "alignment_high_confidence": _mean(agree[high]),
        "alignment_high_confidence_ci": list(bootstrap_ci(agree[high], seed=seed)),
        "position_bias": _mean((same_first | same_second).astype(float)),
        "position_bias_first": _mean(same_first.astype(float)),
        "position_bias_second": _mean(same_second.astype(float)),
        "length_bias": _mean(ai_longer),
        "human_length_rate": _mean(human_longer),
        "length_baseline": _mean(agreement(length_pred, human)),
        "length_baseline_ci": list(bootstrap_ci(agreement(length_pred, human), seed=seed)),
        "n_human_prefers_longer": int(human_pref_longer.sum()),
        "alignment_when_human_prefers_longer": _mean(agree[human_pref_longer]),
        "n_human_prefers_shorter": int(human_pref_shorter.sum()),
        "alignment_when_human_prefers_shorter": _mean(agree[human_pref_shorter]),
        "brier": _mean((p - human) ** 2),
        "ece": expected_calibration_error(p, human),
        "prompt_tokens_per_pair": _mean(np.array([r["prompt_tokens"] for r in records], float)),
        "generated_tokens_per_pair": _mean(
            np.array([r["generated_tokens"] for r in records], float)
        ),
        "seconds_per_pair": _mean(np.array([r["seconds"] for r in records], float)),
    }
    has_conf = conf > 0
    out["brier_vs_confidence"] = _mean((p[has_conf] - human_soft(conf[has_conf])) ** 2)
    return out


def format_table(m: dict, title: str = "") -> str:
    """A short human-readable table of the headline metrics."""
    lo, hi = m["alignment_ci"]
    rows = [
        ("pairs", f"{m['n']}"),
        ("AI-labeler alignment", f"{m['alignment']:.3f}  (95% CI {lo:.3f}-{hi:.3f})"),
        ("  forward order only", f"{m['alignment_forward_only']:.3f}"),
        (
            "  high-confidence pairs",
            f"{m['alignment_high_confidence']:.3f}  (n={m['n_high_confidence']})",
        ),
        ("  when human preferred longer", f"{m['alignment_when_human_prefers_longer']:.3f}  "
                                          f"(n={m['n_human_prefers_longer']})"),
        ("  when human preferred shorter", f"{m['alignment_when_human_prefers_shorter']:.3f}  "
                                           f"(n={m['n_human_prefers_shorter']})"),
        ("length-only baseline", f"{m['length_baseline']:.3f}"),
        (
            "position bias (same position wins)",
            f"{m['position_bias']:.3f}  (first {m['position_bias_first']:.3f}, "
            f"second {m['position_bias_second']:.3f})",
        ),
        ("prefers longer: AI / humans", f"{m['length_bias']:.3f} / {m['human_length_rate']:.3f}"),
        ("Brier / ECE", f"{m['brier']:.3f} / {m['ece']:.3f}"),
        ("tokens per pair (prompt / generated)",
         f"{m['prompt_tokens_per_pair']:.0f} / {m['generated_tokens_per_pair']:.0f}"),
        ("seconds per pair", f"{m['seconds_per_pair']:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [title] if title else []
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)
