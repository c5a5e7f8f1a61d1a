"""The RLAIF chain's arithmetic, by hand: temperature scaling, training targets, early
stopping, the A2C score trend, and win-rate outcomes with their length-controlled rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab import calibration
from lab.a2c import score_trend
from lab.reward_model import _better, _stop_score, target
from lab.rm_labels import calibrate
from lab.run import RunError
from lab.winrate import length_controlled, outcome


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_temperature_scale_is_the_maximum_likelihood_one():
    # logit(p) = +-1; humans pick the first in 80% of the +1 pairs and 20% of the -1 pairs,
    # so the likelihood is maximal where sigmoid(scale) = 0.8: scale = log(4)
    p = np.array([_sig(1.0)] * 10 + [_sig(-1.0)] * 10)
    human = np.array([1] * 8 + [0] * 2 + [1] * 2 + [0] * 8, float)
    scale = calibration.fit_scale(p, human)
    assert scale == pytest.approx(math.log(4), abs=1e-9)
    assert calibration.apply(np.array([_sig(1.0), 0.5]), scale) == pytest.approx([0.8, 0.5])
    # a labeler that points the wrong way is not turned around: the scale stops at 0
    assert calibration.fit_scale(p, 1 - human) == 0.0
    # an over-confident labeler (0.99 / 0.01, right 70% of the time): the optimum lies below 1,
    # where a plain Newton step from 1 overshoots past 0; sigmoid(scale * logit(0.99)) = 0.7
    over = np.array([0.99] * 100 + [0.01] * 100)
    truth = np.array([1] * 70 + [0] * 30 + [0] * 70 + [1] * 30, float)
    assert calibration.fit_scale(over, truth) == pytest.approx(
        math.log(0.7 / 0.3) / math.log(0.99 / 0.01), abs=1e-9)
    with pytest.raises(ValueError, match="at least 20 human-labeled pairs, found 19"):
        calibration.fit_scale(p[:19], human[:19])


def test_calibrate_fits_on_the_pool_and_scores_the_rest():
    z = [1.0] * 10 + [-1.0] * 10
    human = [1] * 8 + [0] * 2 + [1] * 2 + [0] * 8
    rows = [{"ai": _sig(v), "human": h, "split": "pool"} for v, h in zip(z, human)]
    rows += [{"ai": _sig(2.0), "human": 1, "split": "dev"}, {"ai": 0.5, "human": 0,
                                                             "split": "dev"}]
    report = calibrate(rows)
    s = math.log(4)
    assert report["scale"] == pytest.approx(s)
    assert (report["n_fit"], report["n_held_out"]) == (20, 2)
    assert rows[-2]["ai_calibrated"] == pytest.approx(_sig(2 * s))  # = 16/17
    assert rows[-1]["ai_calibrated"] == 0.5
    held = report["held_out"]
    assert held["nll_raw"] == pytest.approx(-(math.log(_sig(2.0)) + math.log(0.5)) / 2)
    assert held["nll_calibrated"] == pytest.approx(-(math.log(16 / 17) + math.log(0.5)) / 2)
    assert report["fit"]["nll_calibrated"] < report["fit"]["nll_raw"]
    few_rows = [{"ai": r["ai"], "human": r["human"], "split": "pool"} for r in rows[:5]]
    few = calibrate(few_rows)
    assert few["scale"] is None and all("ai_calibrated" not in r for r in few_rows)
    assert few["reason"] == ("only 5 labeled pairs of the pool split (at least 20 needed); "
                             "label more pairs (drop --n)")


def test_training_targets():
    row = {"key": "k1", "ai": 0.53, "human": 0.0}
    assert target(row, "ai") == 0.53
    assert target(row, "ai_hard") == 1.0
    assert target({**row, "ai": 0.47}, "ai_hard") == 0.0
    assert target({**row, "ai": 0.5}, "ai_hard") == 0.5
    assert target(row, "human") == 0.0
    with pytest.raises(RunError, match=r"^pairs.jsonl: row k1 has no 'ai_calibrated' label "
                                       r"\(no calibration: see calibration.json"):
        target(row, "ai_calibrated")


def test_early_stopping_scores():
    acc = [_stop_score("accuracy", loss, a) for loss, a in ((0.69, 0.60), (0.68, 0.60),
                                                            (0.70, 0.62), (0.60, 0.61))]
    assert _better(acc[1], acc[0])  # same accuracy, lower loss
    assert _better(acc[2], acc[1]) and not _better(acc[3], acc[2])
    loss = [_stop_score("loss", v, 0.5) for v in (0.69, 0.6899999, 0.65)]
    assert not _better(loss[1], loss[0]) and _better(loss[2], loss[0])
    assert _better(_stop_score("none", 9.0, 0.0), _stop_score("none", 0.1, 1.0))


def test_score_trend_by_hand():
    log = [{"score": float(s), "kl": 0.1 * i, "length": 10.0, "truncated": 0.5}
           for i, s in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])]
    t = score_trend(log)
    assert t["slope_per_update"] == pytest.approx(1.0) and t["slope_se"] == pytest.approx(0.0)
    assert (t["k"], t["first_mean"], t["last_mean"]) == (2, 1.5, 9.5)
    assert t["difference"] == 8.0 and t["difference_ci"] == [7.0, 9.0]
    assert t["kl_first"] == pytest.approx(0.05) and t["kl_last"] == pytest.approx(0.85)
    noisy = score_trend([{"score": v} for v in [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]])
    assert noisy["slope_per_update"] == pytest.approx(3 / 35)


def test_win_outcomes_and_length_controlled_rate():
    p = np.array([0.9, 0.5004, 0.1, 0.7, 0.2])
    a = ["x", "y", "z", "same", "w"]
    b = ["q", "r", "s", " same ", "v"]
    assert outcome(p, a, b, 1e-3).tolist() == [1.0, 0.5, 0.0, 0.5, 0.0]
    # 4 pairs with A longer by 2 words: A wins 3; 4 with A shorter by 2 words: A wins 2.
    # The fit is saturated: logits log(3) and 0, so at equal length sigmoid(log(3)/2)
    wins = np.array([1, 1, 1, 0, 1, 1, 0, 0], float)
    wa = np.array([12] * 4 + [10] * 4)
    wb = np.array([10] * 4 + [12] * 4)
    lc = length_controlled(wins, wa, wb)
    assert lc["win_rate"] == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)))
    assert lc["ci"][0] < lc["win_rate"] < lc["ci"][1]
    same = length_controlled(wins, wa, wa)
    assert same["win_rate"] == 0.625 and same["reason"].startswith("every pair has the same")
