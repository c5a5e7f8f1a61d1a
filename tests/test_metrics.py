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
