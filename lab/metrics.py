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
  computing it, so cost describes the setting, not the cache);
* inference on distinct pairs (:func:`distinct_pairs`: repeated judgments of one pair merged
  into one pair whose human label is the share of workers choosing the first): alignment with
  a CI from a bootstrap over posts, length-balanced alignment, a length-controlled logistic
  regression, AUC within length strata, and human-human agreement on the repeated pairs;
* for a judge that gives verdicts (``verdict``: first / second / tie, the pairwise-tie judge),
  or data with human ties (every judge's verdict then comes from MT-Bench's conservative
  rule on its two orders, :func:`record_verdict`): MT-Bench's agreement with ties (a tie
  against a human tie agrees) and without ties (only pairs where neither the judge nor the
  human says tie), each with its n.
  docs/statistics.md says what each number means.
"""

from __future__ import annotations

import numpy as np

from lab import stats
from lab.data import HIGH_CONFIDENCE


def agreement(p: np.ndarray, human: np.ndarray) -> np.ndarray:
    """Per-pair agreement of a preference with the human: 1, 0, or 0.5 where either is a tie
    (exactly 0.5: the expected score of breaking it by a coin)."""
    return np.where((p == 0.5) | (human == 0.5), 0.5, ((p > 0.5) == (human > 0.5)).astype(float))


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


def pair_key(record: dict) -> str:
    """Identity of the compared pair of a label record.

    ``pair_id`` where the record has one; older records fall back to the post id and the two
    word counts in order (on the shipped TL;DR data this gives exactly the same 905 pairs as
    the texts: tests/test_metrics.py checks it); a record without a post id (rows built
    outside a labeling run) is a pair of its own, named by its ``key``.
    """
    if record.get("pair_id"):
        return str(record["pair_id"])
    if "post_id" not in record:
        return f"record:{record.get('key', id(record))}"
    return f"{record['post_id']}:{record['len_first']}:{record['len_second']}"


def distinct_pairs(records: list[dict]) -> dict:
    """Merge repeated judgments of one pair into one pair with a soft human label.

    Returns:
        Arrays over distinct pairs (in first-seen order): ``key``, ``post`` (cluster),
        ``p`` (mean AI preference), ``human`` (share of workers choosing the first),
        ``agree`` (mean agreement of its records), ``longer`` (+1 first longer, -1 shorter,
        0 equal) and ``votes`` (the workers' choices).
    """
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(pair_key(r), []).append(r)
    rows = list(groups.values())
    agree = [agreement(np.array([r["p"] for r in g], float),
                       np.array([r["human"] for r in g], float)).mean() for g in rows]
    return {
        "key": np.array(list(groups)),
        "post": np.array([str(g[0].get("post_id", k)) for k, g in groups.items()]),
        "p": np.array([np.mean([r["p"] for r in g]) for g in rows], float),
        "human": np.array([np.mean([r["human"] for r in g]) for g in rows], float),
        "agree": np.array(agree, float),
        "longer": np.sign([g[0]["len_first"] - g[0]["len_second"] for g in rows]).astype(float),
        "votes": [[float(r["human"]) for r in g] for g in rows],
    }


def length_balanced(agree_longer: np.ndarray, human_longer: np.ndarray) -> float:
    """Mean of alignment among workers who preferred the longer summary and among those who
    preferred the shorter one (pairs of equal length left out).

    Args:
        agree_longer: per pair, 1 if the labeler picks the longer summary, 0 the shorter,
            0.5 a tie.
        human_longer: per pair, the share of its workers who preferred the longer summary.
    """
    w_long, w_short = human_longer.sum(), (1 - human_longer).sum()
    if w_long == 0 or w_short == 0:
        return float("nan")
    a_long = (human_longer * agree_longer).sum() / w_long
    a_short = ((1 - human_longer) * (1 - agree_longer)).sum() / w_short
    return float((a_long + a_short) / 2)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def pair_inference(records: list[dict], seed: int = 0) -> dict:
    """The metrics computed on distinct pairs (see :func:`distinct_pairs`)."""
    d = distinct_pairs(records)
    n = len(d["key"])
    idx = np.arange(n)
    decided = d["longer"] != 0
    length_pred = 0.5 + 0.5 * d["longer"]
    ai_longer = np.where(d["p"] == 0.5, 0.5, ((d["p"] > 0.5) == (length_pred > 0.5)) * 1.0)
    human_longer = np.where(d["longer"] > 0, d["human"], 1 - d["human"])

    def balanced(rows: np.ndarray, labeler: np.ndarray = ai_longer) -> float:
        rows = rows[decided[rows]]
        return length_balanced(labeler[rows], human_longer[rows])

    def mean_of(values: np.ndarray):
        return lambda rows: float(values[rows].mean())

    length_agree = np.where(decided, human_longer, 0.5)
    out = {
        "n_pairs": n,
        "n_posts": int(len(set(d["post"].tolist()))),
        "n_repeated_pairs": int(sum(len(v) > 1 for v in d["votes"])),
        "alignment_pairs": float(d["agree"].mean()),
        "alignment_pairs_ci": list(stats.cluster_bootstrap_ci(mean_of(d["agree"]), d["post"],
                                                              seed=seed)),
        "alignment_length_balanced": balanced(idx),
        "alignment_length_balanced_ci": list(stats.cluster_bootstrap_ci(balanced, d["post"],
                                                                        seed=seed)),
        "length_baseline_pairs": float(length_agree.mean()),
        "length_baseline_pairs_ci": list(stats.cluster_bootstrap_ci(mean_of(length_agree),
                                                                    d["post"], seed=seed)),
        "n_equal_length_pairs": int((~decided).sum()),
        # 0.5 by construction, NaN where humans never (or always) preferred the longer one
        "length_baseline_balanced": balanced(idx, np.ones(n)),
    }
    # human ~ intercept (the data's first-position prior) + logit(p) + which summary is longer
    X = np.column_stack([np.ones(n), _logit(d["p"]), d["longer"]])
    fit = stats.logistic_regression(X, d["human"])
    out["length_controlled"] = {
        term: {k: fit[k][i] for k in ("coef", "se", "z", "p")}
        for i, term in enumerate(("intercept", "labeler_logit", "first_longer"))
    }
    out["length_controlled"]["converged"] = fit["converged"]
    out["length_controlled"]["reason"] = fit["reason"]
    out["auc_first_longer"] = stats.auc(d["p"][d["longer"] > 0], d["human"][d["longer"] > 0])
    out["auc_first_shorter"] = stats.auc(d["p"][d["longer"] < 0], d["human"][d["longer"] < 0])
    repeated = [i for i, v in enumerate(d["votes"]) if len(v) > 1]
    hh = stats.pairwise_agreement([d["votes"][i] for i in repeated])
    out["n_human_human_pairs"] = len(repeated)
    out["human_human_agreement"] = _mean(hh)
    out["human_human_agreement_ci"] = list(stats.cluster_bootstrap_ci(
        mean_of(hh), d["post"][repeated], seed=seed))
    return out


def human_verdict(human: float) -> str:
    """The human label as a verdict: ``first`` (above 0.5), ``second`` (below), ``tie``."""
    return "first" if human > 0.5 else "second" if human < 0.5 else "tie"


def record_verdict(record: dict) -> str:
    """A label's verdict about the stored pair: its ``verdict`` where the judge gives one
    (pairwise-tie), else MT-Bench's conservative rule on the two orders' picks: ``first`` or
    ``second`` where both orders pick that response, ``tie`` where the pick follows the
    position (or either order is exactly 0.5). For a rating judge (``p_swapped = 1 - p``)
    that is the side of 0.5 that ``p`` is on."""
    if record.get("verdict") is not None:
        return record["verdict"]
    fwd = human_verdict(record["p_fwd"])
    # p_swapped is P(the stored second response, shown first, is better)
    swapped = {"first": "second", "second": "first", "tie": "tie"}[
        human_verdict(record["p_swapped"])]
    return fwd if fwd == swapped else "tie"


def verdict_agreement(records: list[dict]) -> dict:
    """Agreement of the records' verdicts (:func:`record_verdict`) with the human verdicts,
    as MT-Bench counts it.

    ``agreement_with_tie`` (every pair; a tie verdict agrees with a human tie only) and
    ``agreement_without_tie`` (only pairs where neither the judge nor the human says tie),
    each with its n (``n_agreement_with_tie``, ``n_agreement_without_tie``), and how often
    each side says tie (``judge_tie_rate``, ``human_tie_rate``). NaN where no pair is left.
    """
    rows = [(record_verdict(r), human_verdict(r["human"])) for r in records]
    both = np.array([j == h for j, h in rows], float)
    decided = np.array([j == h for j, h in rows if j != "tie" and h != "tie"], float)
    return {
        "agreement_with_tie": _mean(both),
        "n_agreement_with_tie": len(both),
        "agreement_without_tie": _mean(decided),
        "n_agreement_without_tie": len(decided),
        "judge_tie_rate": _mean(np.array([j == "tie" for j, _ in rows], float)),
        "human_tie_rate": _mean(np.array([h == "tie" for _, h in rows], float)),
    }


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
    # the order prior: an always-first labeler's forward-only alignment is this rate
    out["first_position_rate"] = _mean(human)
    shown = [r.get("first_shown") for r in records]
    if any(s is not None for s in shown):  # --shuffle-order: the first-presented order alone
        p_shown = np.array([pf if s != "second" else 1 - ps
                            for pf, ps, s in zip(p_fwd, p_sw, shown)])
        out["alignment_presented_first_only"] = _mean(agreement(p_shown, human))
        out["shown_first_share"] = _mean(np.array([s != "second" for s in shown], float))
    if any(r.get("verdict") is not None for r in records) or (human == 0.5).any():
        # a judge with verdicts, or human ties (PandaLM, Auto-J): MT-Bench's agreement
        out.update(verdict_agreement(records))
    out.update(pair_inference(records, seed))
    return out


def _ci(ci: list[float]) -> str:
    return f"{ci[0]:.3f}-{ci[1]:.3f}"


def _z(fit: dict) -> str:
    if not fit["converged"]:
        return f"no fit ({fit['reason']})"
    t = fit["labeler_logit"]
    return f"{t['z']:+.2f}  (p={t['p']:.3g})"


def format_table(m: dict, title: str = "") -> str:
    """A short human-readable table of the headline metrics."""
    lo, hi = m["alignment_ci"]
    rows = [
        ("pairs", f"{m['n']}"),
        ("AI-labeler alignment", f"{m['alignment']:.3f}  (95% CI {lo:.3f}-{hi:.3f})"),
        ("  distinct pairs (95% cluster CI)",
         f"{m['alignment_pairs']:.3f}  ({_ci(m['alignment_pairs_ci'])}; n={m['n_pairs']})"),
        ("  length-balanced (95% CI)",
         f"{m['alignment_length_balanced']:.3f}  ({_ci(m['alignment_length_balanced_ci'])})"),
        ("  labeler z given length", _z(m["length_controlled"])),
        ("  forward order only", f"{m['alignment_forward_only']:.3f}  (always-first labeler: "
                                 f"{m['first_position_rate']:.3f})"),
        # only data with the 9-point confidence (TL;DR) has high-confidence pairs
        *([("  high-confidence pairs",
            f"{m['alignment_high_confidence']:.3f}  (n={m['n_high_confidence']})")]
          if m["n_high_confidence"] else []),
        ("  when human preferred longer", f"{m['alignment_when_human_prefers_longer']:.3f}  "
                                          f"(n={m['n_human_prefers_longer']})"),
        ("  when human preferred shorter", f"{m['alignment_when_human_prefers_shorter']:.3f}  "
                                           f"(n={m['n_human_prefers_shorter']})"),
        *([("verdict agreement: with ties / without",
            f"{m['agreement_with_tie']:.3f} (n={m['n_agreement_with_tie']}) / "
            f"{m['agreement_without_tie']:.3f} (n={m['n_agreement_without_tie']})")]
          if "agreement_with_tie" in m else []),
        ("length-only baseline", f"{m['length_baseline']:.3f}"),
        ("human-human agreement (repeated pairs)",
         f"{m['human_human_agreement']:.3f}  ({_ci(m['human_human_agreement_ci'])}; "
         f"n={m['n_human_human_pairs']})" if m["n_human_human_pairs"] else "no repeated pair"),
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
