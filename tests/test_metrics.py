"""Stage 5: metrics checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from lab.metrics import agreement, bootstrap_ci, compute, expected_calibration_error, format_table


def rec(p, p_fwd, p_sw, human, conf, l1, l2, seconds=1.0, tokens=100):
    return {"p": p, "p_fwd": p_fwd, "p_swapped": p_sw, "human": human, "confidence": conf,
            "len_first": l1, "len_second": l2, "prompt_tokens": tokens, "generated_tokens": 0,
            "seconds": seconds}


RECORDS = [
    #    p    p_fwd p_sw human conf l1  l2
    rec(0.8, 0.9, 0.3, 1.0, 1, 20, 10),   # agree; positions differ; human prefers longer
    rec(0.3, 0.6, 0.9, 0.0, 9, 10, 20),   # agree; first position wins both orders
    rec(0.6, 0.7, 0.5, 0.0, 3, 30, 10),   # disagree; human prefers shorter
    rec(0.5, 0.7, 0.7, 1.0, 8, 10, 10),   # tie (0.5 credit); first wins both; equal length
    rec(0.2, 0.4, 1.0, 1.0, 2, 10, 15, seconds=3.0, tokens=300),  # disagree; human: shorter
]


def test_hand_computed_metrics():
    m = compute(RECORDS)
    assert m["n"] == 5
    assert m["alignment"] == pytest.approx((1 + 1 + 0 + 0.5 + 0) / 5)
    assert m["alignment_forward_only"] == pytest.approx((1 + 0 + 0 + 1 + 0) / 5)
    assert m["n_high_confidence"] == 4
    assert m["alignment_high_confidence"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    # same position wins in both orders: rows 2 and 4 (first), none for second
    assert m["position_bias"] == pytest.approx(2 / 5)
    assert (m["position_bias_first"], m["position_bias_second"]) == (pytest.approx(0.4), 0.0)
    # decided-length rows: 1, 2, 3, 5. AI picks longer in 1, 2, 3, 5 -> 4/4
    assert m["length_bias"] == pytest.approx(1.0)
    # humans pick longer in rows 1 and 2 of those 4
    assert m["human_length_rate"] == pytest.approx(2 / 4)
    # length baseline over all rows: 1 + 1 + 0 + 0.5 (tie) + 0
    assert m["length_baseline"] == pytest.approx(2.5 / 5)
    assert m["n_human_prefers_longer"] == 2 and m["n_human_prefers_shorter"] == 2
    assert m["alignment_when_human_prefers_longer"] == pytest.approx(1.0)
    assert m["alignment_when_human_prefers_shorter"] == pytest.approx(0.0)
    assert m["brier"] == pytest.approx((0.04 + 0.09 + 0.36 + 0.25 + 0.64) / 5)
    soft = [1.0, 0.0, 0.75, 0.125, 0.875]
    p = [0.8, 0.3, 0.6, 0.5, 0.2]
    assert m["brier_vs_confidence"] == pytest.approx(
        sum((a - b) ** 2 for a, b in zip(p, soft)) / 5)
    assert m["seconds_per_pair"] == pytest.approx(7 / 5)
    assert m["prompt_tokens_per_pair"] == pytest.approx(140)
    lo, hi = m["alignment_ci"]
    assert 0 <= lo <= m["alignment"] <= hi <= 1


def test_ece_by_hand():
    p = np.array([0.9, 0.9, 0.6, 0.4])
    human = np.array([1.0, 0.0, 1.0, 1.0])
    # bins: conf 0.9 (two rows, agreement 0.5) and conf 0.6 (two rows, agreement 0.5)
    assert expected_calibration_error(p, human) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)


def test_agreement_and_bootstrap():
    assert agreement(np.array([0.7, 0.5, 0.2]), np.array([1.0, 1.0, 1.0])).tolist() == [1, .5, 0]
    assert bootstrap_ci(np.ones(50)) == (1.0, 1.0)
    lo, hi = bootstrap_ci(np.array([0.0, 1.0] * 200))
    assert lo == pytest.approx(0.45, abs=0.02) and hi == pytest.approx(0.55, abs=0.02)


def test_table_shows_alignment_baseline_and_bias():
    text = format_table(compute(RECORDS), "title")
    assert text.splitlines()[0] == "title"
    assert "AI-labeler alignment" in text and "length-only baseline" in text
    assert "position bias" in text and "0.500" in text


def keyed(i, p, human, l1, l2, post=None, conf=1):
    r = rec(p, p, 1 - p, human, conf, l1, l2)
    return {**r, "key": f"k:{i}", "post_id": post or f"t3_{i}"}


def test_length_only_labeler_scores_exactly_half_length_balanced():
    # humans: longer preferred in 3 pairs, shorter in 2; a labeler that always picks the longer
    rows = [(20, 10, 1.0), (10, 30, 0.0), (25, 5, 1.0), (40, 10, 0.0), (10, 15, 1.0)]
    records = [keyed(i, 0.9 if a > b else 0.1, h, a, b) for i, (a, b, h) in enumerate(rows)]
    m = compute(records)
    assert m["alignment_length_balanced"] == 0.5 == m["length_baseline_balanced"]
    assert m["alignment"] == pytest.approx(3 / 5)  # raw alignment rewards it
    # the humans' own choices: balanced alignment 1 (right on both sides)
    perfect = [keyed(i, 0.9 if h else 0.1, h, a, b) for i, (a, b, h) in enumerate(rows)]
    assert compute(perfect)["alignment_length_balanced"] == 1.0


def test_duplicated_pair_is_one_pair_and_does_not_narrow_the_cluster_ci():
    records = [keyed(i, 0.8 if i % 3 else 0.3, float(i % 2), 10 + i, 12) for i in range(30)]
    m = compute(records)
    dup = records + [{**records[4], "key": f"k:dup{j}"} for j in range(10)]
    md = compute(dup)
    assert (md["n"], md["n_pairs"], md["n_repeated_pairs"]) == (40, 30, 1)
    assert md["alignment_pairs"] == m["alignment_pairs"] == pytest.approx(m["alignment"])
    assert md["alignment_pairs_ci"] == m["alignment_pairs_ci"]
    assert md["alignment_length_balanced_ci"] == m["alignment_length_balanced_ci"]
    # the record-level CI does narrow: the reason for the cluster CI
    assert md["alignment_ci"] != m["alignment_ci"]


def test_soft_label_human_human_agreement_and_order_prior():
    # one pair judged three times (first, first, second) and two single pairs
    records = [keyed(0, 0.8, 1.0, 10, 20), {**keyed(0, 0.8, 1.0, 10, 20), "key": "k:0b"},
               {**keyed(0, 0.8, 0.0, 10, 20), "key": "k:0c"}, keyed(1, 0.8, 1.0, 30, 20),
               keyed(2, 0.2, 0.0, 10, 20)]
    m = compute(records)
    assert m["n_pairs"] == 3 and m["n_human_human_pairs"] == 1
    assert m["human_human_agreement"] == pytest.approx(1 / 3)
    # pair 0: soft label 2/3 for the first, the labeler says first: agreement 2/3
    assert m["alignment_pairs"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert m["first_position_rate"] == pytest.approx(3 / 5)


def test_presented_first_only_alignment_follows_first_shown():
    a = {**keyed(0, 0.5, 1.0, 10, 20), "p_fwd": 0.9, "p_swapped": 0.9, "first_shown": "first"}
    b = {**keyed(1, 0.5, 1.0, 10, 20), "p_fwd": 0.9, "p_swapped": 0.9, "first_shown": "second"}
    m = compute([a, b])
    # shown stored-first: P(first) = p_fwd = 0.9 -> agree; shown swapped: 1 - 0.9 -> disagree
    assert m["alignment_presented_first_only"] == 0.5
    assert m["shown_first_share"] == 0.5
    assert "alignment_presented_first_only" not in compute([keyed(0, 0.7, 1.0, 10, 20)])


def test_length_controlled_regression_separates_signal_from_length():
    rng = np.random.default_rng(0)
    length_only, informed = [], []
    for i in range(400):
        l1, l2 = (30, 10) if i % 2 else (10, 30)
        human = float(rng.random() < (0.8 if l1 > l2 else 0.2))
        length_only.append(keyed(i, 0.7 if l1 > l2 else 0.3, human, l1, l2))
        right = rng.random() < 0.75  # a labeler that reads the human's choice 75% of the time
        informed.append(keyed(i, 0.6 if (human == 1.0) == right else 0.4, human, l1, l2))
    # a labeler that only follows length is collinear with the length term: no fit claimed
    lc = compute(length_only)["length_controlled"]
    assert not lc["converged"] and lc["reason"] == "collinear columns or too few rows"
    lc = compute(informed)["length_controlled"]
    assert lc["converged"] and lc["labeler_logit"]["z"] > 5 and lc["first_longer"]["z"] > 5
    assert lc["labeler_logit"]["p"] < 1e-6


def test_pair_identity_fallback_matches_texts_on_shipped_data(real_data):
    from lab.data import load_pairs, pair_id
    from lab.label import word_count
    from lab.metrics import pair_key

    pairs, _ = load_pairs(str(real_data))
    exact = {}
    for p in pairs:
        proxy = pair_key({"post_id": p.post_id, "len_first": word_count(p.first),
                          "len_second": word_count(p.second)})
        exact.setdefault(pair_id(p), set()).add(proxy)
    proxies = [next(iter(v)) for v in exact.values()]
    assert all(len(v) == 1 for v in exact.values()) and len(set(proxies)) == len(exact) == 905


def test_latex_escapes_special_characters():
    from lab.report import latex_escape

    assert latex_escape("a_b & 50% $x #1 {y} ~^\\ p<0.001") == (
        r"a\_b \& 50\% \$x \#1 \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{} "
        r"p\textless{}0.001")
