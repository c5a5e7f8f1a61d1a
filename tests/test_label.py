"""Stage 4: preferences from the fake backend, with exact expectations."""

from __future__ import annotations

import math

import pytest

from lab.backends.fake import FakeBackend
from lab.data import Pair
from lab.label import DecodeConfig, Labeler, debias, prob_first
from lab.prompts import PromptConfig


def pair(first="cat ate homework", second="a long summary about the cat and the homework",
         human=1.0, key="k1") -> Pair:
    return Pair(key, "t3_x", "My cat ate my homework again today.", "", "", first, second,
                human, 2, "w")


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def labeler(prompt=None, decode=None, **knobs):
    prompt, decode = prompt or PromptConfig("base"), decode or DecodeConfig()
    return Labeler(FakeBackend(**knobs), prompt, decode, [])


@pytest.mark.parametrize("bias", [0.3, 1.7, -2.5, 6.0])
def test_purely_position_biased_labeler_is_exactly_neutral(bias):
    r = labeler(position=bias).label(pair())
    assert r["p_fwd"] == pytest.approx(sigmoid(bias), abs=1e-12)
    assert r["p_swapped"] == pytest.approx(sigmoid(bias), abs=1e-12)
    assert r["p"] == 0.5


def test_length_biased_labeler_prefers_the_longer_in_both_orders():
    r = labeler(length=1.0).label(pair())
    # words: 3 vs 9 -> logit log(3/9) in the stored order, log(9/3) swapped
    assert r["p_fwd"] == pytest.approx(sigmoid(math.log(3 / 9)))
    assert r["p_swapped"] == pytest.approx(sigmoid(math.log(9 / 3)))
    assert r["p"] == pytest.approx(sigmoid(math.log(3 / 9)))
    assert (r["len_first"], r["len_second"]) == (3, 9)


def test_position_bias_is_removed_but_content_preference_kept():
    both = labeler(position=2.0, skill=3.0).label(pair())
    content = labeler(skill=3.0).label(pair())
    assert both["p_fwd"] > content["p_fwd"]  # biased toward whatever is shown first...
    assert both["p"] != 0.5 and (both["p"] > 0.5) == (content["p"] > 0.5)  # ...not after


def test_record_fields():
    r = labeler().label(pair(key="abc"))
    assert set(r) == {"key", "post_id", "pair_id", "p", "p_fwd", "p_swapped", "human",
                      "confidence",
                      "len_first", "len_second", "rationales", "prompt_tokens",
                      "generated_tokens", "seconds", "cache_hit", "precision"}
    assert r["key"] == "abc" and r["generated_tokens"] == 0 and r["prompt_tokens"] > 0
    assert r["precision"] == ""  # the fake backend has no number format


def test_shuffle_order_records_which_response_is_shown_first():
    plain = labeler(PromptConfig("base")).label(pair(key="abc"))
    shown = [labeler(PromptConfig("base", shuffle_order=7)).label(pair(key=f"k{i}"))
             for i in range(40)]
    assert "first_shown" not in plain
    assert {r["first_shown"] for r in shown} == {"first", "second"}  # a coin per pair
    again = [labeler(PromptConfig("base", shuffle_order=7)).label(pair(key=f"k{i}"))
             for i in range(40)]
    assert [r["first_shown"] for r in again] == [r["first_shown"] for r in shown]  # seeded
    # p is still P(stored first better): the same as without shuffling
    assert labeler(PromptConfig("base", shuffle_order=7)).label(pair(key="abc"))["p"] == plain["p"]


def test_chain_of_thought_scores_after_the_rationale():
    lab = labeler(PromptConfig("base", cot=True), rationale=4.0, skill=2.0)
    r = lab.label(pair())
    assert set(r["rationales"]) == {"fwd", "swapped"}
    assert len(r["rationales"]["fwd"]) == 1
    assert r["rationales"]["fwd"][0].startswith(" Summary 1 is")  # greedy: the preferred one
    assert r["rationales"]["swapped"][0].startswith(" Summary 2 is")
    assert r["generated_tokens"] > 0
    assert lab.backend.calls == {"score": 2, "generate": 2}
    # The rationale shifts the score by +-4 on top of the fake's content logit.
    base = labeler(PromptConfig("base"), skill=2.0).label(pair())
    assert r["p_fwd"] > base["p_fwd"] and r["p_swapped"] < base["p_swapped"]


def test_self_consistency_averages_sampled_rationales():
    decode = DecodeConfig(samples=8, temperature=1.0, seed=3)
    lab = labeler(PromptConfig("base", cot=True), decode, rationale=3.0, noise=0.0)
    r = lab.label(pair())
    assert len(r["rationales"]["fwd"]) == 8 and lab.backend.calls["score"] == 16
    # p_fwd is the mean of the per-rationale probabilities: each is sigmoid(+-3).
    said_1 = sum(t.startswith(" Summary 1 is") for t in r["rationales"]["fwd"])
    expected = (said_1 * sigmoid(3.0) + (8 - said_1) * sigmoid(-3.0)) / 8
    assert r["p_fwd"] == pytest.approx(expected)
    assert 0 < said_1 < 8  # at temperature 1 the samples differ
    again = labeler(PromptConfig("base", cot=True), decode, rationale=3.0).label(pair())
    assert again["rationales"] == r["rationales"]  # seeded


def test_softmax_and_debias_helpers():
    assert prob_first((math.log(0.2), math.log(0.6))) == pytest.approx(0.25)
    assert prob_first((-1000.0, -1000.0)) == 0.5
    assert debias(0.9, 0.3) == pytest.approx(0.8)


def test_cache_makes_a_repeated_label_free():
    from lab.cache import LabelCache

    cache = LabelCache()
    first = Labeler(FakeBackend(skill=2.0), PromptConfig("base"), DecodeConfig(), [], cache)
    r1 = first.label(pair())
    again = Labeler(FakeBackend(skill=2.0), PromptConfig("base"), DecodeConfig(), [], cache)
    r2 = again.label(pair(key="other-worker"))
    assert again.backend.calls == {"score": 0, "generate": 0}
    assert r2["p"] == r1["p"] and r2["cache_hit"] and not r1["cache_hit"]
    # another model, prompt or decoding is another key
    other = Labeler(FakeBackend(skill=3.0), PromptConfig("base"), DecodeConfig(), [], cache)
    other.label(pair())
    assert other.backend.calls["score"] == 2
    cot = Labeler(FakeBackend(skill=2.0), PromptConfig("base", cot=True), DecodeConfig(), [], cache)
    cot.label(pair())
    assert cot.backend.calls["generate"] == 2
    # the same model in another number format (or engine) is another key
    bf16 = FakeBackend(skill=2.0)
    bf16.dtype = "bfloat16"
    Labeler(bf16, PromptConfig("base"), DecodeConfig(), [], cache).label(pair())
    assert bf16.calls["score"] == 2
