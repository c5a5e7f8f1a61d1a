"""lab.stats checked against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.stats import (
    auc,
    cluster_bootstrap_ci,
    holm,
    logistic_regression,
    mcnemar_exact,
    mdd_paired,
    paired_power,
    pairs_needed,
    pairwise_agreement,
    sign_flip_test,
)


def test_exact_mcnemar_three_discordant_pairs_all_one_way():
    # X ~ Bin(3, 1/2): P(X <= 0) = 1/8, two-sided 2/8
    assert mcnemar_exact(3, 0) == pytest.approx(0.25)
    assert mcnemar_exact(0, 3) == pytest.approx(0.25)
    assert mcnemar_exact(3, 1) == pytest.approx(2 * 5 / 16)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(2, 2) == 1.0


def test_sign_flip_is_exact_and_equals_mcnemar_for_equal_sizes():
    assert sign_flip_test(np.array([1.0, 1.0, 1.0, 0.0, 0.0])) == (pytest.approx(0.25), "exact")
    # 4 signs: |S| >= 2 unless two plus and two minus (6 of 16)
    assert sign_flip_test(np.array([1.0, 1.0, 1.0, -1.0]))[0] == pytest.approx(10 / 16)
    # unequal sizes: d = (1, 0.5): sums 1.5, 0.5, -0.5, -1.5 -> |S| >= 1.5 in 2 of 4
    assert sign_flip_test(np.array([1.0, 0.5]))[0] == pytest.approx(0.5)
    assert sign_flip_test(np.zeros(5)) == (1.0, "exact")


def test_sign_flip_random_flips_beyond_the_exact_limit():
    d = np.r_[np.ones(20), -np.ones(5)]
    p, how = sign_flip_test(d, max_exact=20, n_random=50_000, seed=1)
    assert how == "random 50000"
    assert p == pytest.approx(mcnemar_exact(20, 5), abs=0.002)
    assert sign_flip_test(d, max_exact=20, n_random=50_000, seed=1)[0] == p  # seeded


def test_holm_on_a_known_list():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, max(.03, 2*0.03), max(.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([0.01, float("nan"), 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_cluster_bootstrap_resamples_whole_clusters():
    values = np.r_[np.ones(50), np.zeros(50)]
    stat = lambda rows: float(values[rows].mean())  # noqa: E731
    # two clusters: a replicate has mean 0, 1/2 or 1 (prob 1/4, 1/2, 1/4)
    assert cluster_bootstrap_ci(stat, np.array([0] * 50 + [1] * 50)) == (0.0, 1.0)
    lo, hi = cluster_bootstrap_ci(stat, np.arange(100))  # independent rows: narrow
    assert 0.35 < lo < 0.45 and 0.55 < hi < 0.65


def test_logistic_regression_on_a_two_by_two_table():
    # x = 0: 2 of 4 chose first; x = 1: 3 of 4. Intercept logit(1/2) = 0, slope logit(3/4) =
    # ln 3; Woolf SEs: intercept sqrt(1/2 + 1/2), slope sqrt(1/2 + 1/2 + 1/3 + 1/1)
    x = np.array([0, 0, 0, 0, 1, 1, 1, 1], float)
    y = np.array([1, 1, 0, 0, 1, 1, 1, 0], float)
    fit = logistic_regression(np.column_stack([np.ones(8), x]), y)
    assert fit["converged"]
    assert fit["coef"] == pytest.approx([0.0, math.log(3)], abs=1e-9)
    assert fit["se"] == pytest.approx([1.0, math.sqrt(7 / 3)])
    assert fit["z"][1] == pytest.approx(math.log(3) / math.sqrt(7 / 3))
    assert fit["p"][1] == pytest.approx(math.erfc(fit["z"][1] / math.sqrt(2)))


def test_logistic_regression_refuses_separated_or_collinear_data():
    x = np.array([0, 0, 1, 1], float)
    sep = logistic_regression(np.column_stack([np.ones(4), x]), x)
    assert not sep["converged"] and math.isnan(sep["z"][1]) and sep["reason"]
    col = logistic_regression(np.column_stack([np.ones(4), np.ones(4)]), np.array([1, 0, 1, 0.]))
    assert not col["converged"] and col["reason"] == "collinear columns or too few rows"


def test_auc_and_pairwise_agreement_by_hand():
    # positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 orderings right
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1.])) == 0.75
    assert auc(np.array([0.5, 0.5]), np.array([1, 0.])) == 0.5  # tie counts half
    assert math.isnan(auc(np.array([0.3]), np.array([1.0])))
    # votes (1, 1, 0): 1 of the 3 worker pairs agrees; (1, 1): 1 of 1
    assert pairwise_agreement([[1, 1, 0], [1, 1], [0, 1]]).tolist() == [1 / 3, 1.0, 0.0]


def test_minimum_detectable_difference():
    # 5 pairs all won by one setting: the smallest exact p is 2/32 > 0.05, so nothing is
    # detectable; 6 pairs all won: p = 2/64 < 0.05, detected with certainty
    assert paired_power(5, 1.0, 1.0) == 0.0 and math.isnan(mdd_paired(5, 1.0))
    assert paired_power(6, 1.0, 1.0) == pytest.approx(1.0)
    assert math.isnan(mdd_paired(12, 0.37))  # the 12-pair prompt ablation detects nothing
    n = pairs_needed(0.10, 0.3)
    assert paired_power(n, 0.3, 0.10) >= 0.8 > paired_power(n - 10, 0.3, 0.10)
    # the normal approximation (1.96 + 0.84)^2 * 0.3 / 0.1^2 = 235 is close
    assert 220 < n < 270
    assert mdd_paired(n, 0.3) <= 0.10
