"""A2C: GAE by hand, and a few updates of a tiny random policy on a toy reward."""

from __future__ import annotations

import math

import pytest
import torch

from lab.a2c import A2CConfig, Policy, a2c_update, gae
from tests.tiny_model import build_tiny_model


def test_gae_matches_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last token is padding
    adv, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    d2 = 1.0 - 0.3  # terminal: no bootstrap from the padding's value
    d1 = 0.0 + 0.9 * 0.3 - 0.4
    d0 = 0.0 + 0.9 * 0.4 - 0.5
    a2 = d2
    a1 = d1 + 0.45 * a2
    a0 = d0 + 0.45 * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2, 0.0])
    assert returns[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 0.3, 0.0])


def test_a2c_updates_raise_a_toy_reward(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_model(tmp_path / "policy")
    tok = AutoTokenizer.from_pretrained(folder)
    lm = AutoModelForCausalLM.from_pretrained(folder)
    ref = AutoModelForCausalLM.from_pretrained(folder).eval()
    torch.manual_seed(0)
    policy = Policy(lm, train_layers=2)
    # a random tiny LM head has logits near 0 that its blocks alone move slowly; let it train
    policy.lm.lm_head.weight.requires_grad_(True)
    half = len(tok) // 2

    def toy_reward(posts, summaries):  # share of characters from the first half of the vocab
        ids = [tok.encode(s, add_special_tokens=False) or [len(tok)] for s in summaries]
        return torch.tensor([sum(i < half for i in x) / len(x) for x in ids])

    config = A2CConfig(lr=3e-2, kl_coef=0.001, max_new_tokens=8, batch_size=8, ent_coef=0.0)
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=config.lr)
    posts = [f"SUBREDDIT: r/pets\nTITLE: t{i}\nPOST: my cat {i} ate it" for i in range(8)]
    log = [a2c_update(policy, ref, tok, posts, toy_reward, opt, config) for _ in range(30)]
    for row in log:
        assert all(math.isfinite(v) for v in row.values())
    first = sum(r["score"] for r in log[:5]) / 5
    last = sum(r["score"] for r in log[-5:]) / 5
    assert last > first + 0.1
    assert log[-1]["kl"] > 0  # it moved away from the reference


# Direct RLAIF: the reward is exactly the exported judge, on the fake backend whose
# preference is a known formula (``length: 1``: a comparison's logit is log(words_1 / words_2),
# a rating's tilt q = log(words), so P(v) is proportional to words ** v).

POST = "SUBREDDIT: r/pets\nTITLE: t\nPOST: my cat ate my homework"


def anchor_pair(first="cat", second="a b"):
    from lab.pair import Pair

    return Pair(key="k0", post_id="p0", text="my cat ate my homework", title="t",
                subreddit="pets", first=first, second=second, human=1.0, confidence=2,
                worker="w", source="c.jsonl:1")


def labeler_config(tmp_path, judge, shots=0, **backend):
    import yaml

    from tests.conftest import tldr_row, write_rows

    data = write_rows(tmp_path / "c.jsonl", [tldr_row(i) for i in range(12)])
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"path": str(data), "split": "all"},
        "prompt": {"judge": judge, "shots": shots},
        "backend": {"backend": "fake", "fake": {"length": 1.0}, **backend},
        "export": {"aggregation": "ignored when loading", "debiasing": "old files said this"},
    }))
    return path


def labeler_scorer(tmp_path, judge, **kw):
    from lab.a2c import make_scorer

    path = labeler_config(tmp_path, judge, **kw)
    return make_scorer(A2CConfig(reward="labeler", labeler=str(path)), {POST: anchor_pair()})


def test_direct_rlaif_with_a_rating_judge_rewards_the_rescaled_expected_rating(tmp_path):
    scorer = labeler_scorer(tmp_path, "rating")
    reward = scorer([POST, POST, POST], ["one", "two words", "two words"])
    # "one": q = 0, uniform over 1..9, rating 5, (5 - 1) / 8 = 1/2;
    # "two words": P(v) ~ 2^v, rating sum v 2^v / sum 2^v = 8194 / 1022, rescaled (s - 1) / 8
    assert reward.tolist() == pytest.approx([0.5, 1793 / 2044, 1793 / 2044], abs=1e-12)
    assert scorer.labeler.backend.calls["score"] == 2  # the repeated summary is rated once
    note = scorer.note()
    assert (note["reward"], note["judge"], note["rule"]) == (
        "labeler", "rating", "rescaled expected rating")
    assert note["description"].endswith("reward = (s - 1) / (9 - 1), s its expected rating over "
                                        "the scale tokens 1-9")


def test_direct_rlaif_rescales_every_rating_scale_to_0_1(tmp_path):
    scorer = labeler_scorer(tmp_path, "self-reward")
    # scale 0..5: P(v) ~ 2^v, s = sum v 2^v / sum 2^v = 258 / 63, rescaled s / 5
    assert scorer([POST, POST], ["one", "two words"]).tolist() == pytest.approx(
        [0.5, 86 / 105], abs=1e-12)


def test_direct_rlaif_with_a_pairwise_judge_rewards_p_against_the_first_summary(tmp_path):
    scorer = labeler_scorer(tmp_path, "pairwise", shots=1, batch_pairs=2)
    from lab.config import RunConfig
    from lab.run import prepare

    # the exported judge's exemplars, exactly as it labels
    assert scorer.labeler.exemplars == prepare(RunConfig.load(scorer.path))[2]
    assert len(scorer.labeler.exemplars) == 1
    summaries = ["three word summary", "one", "six words in this summary here"]
    reward = scorer([POST] * 3, summaries)
    # p = words / (words + 1) against the anchor "cat" (pair.first, 1 word); against the
    # second summary (2 words) it would be 3/5, 1/3, 3/4
    assert reward.tolist() == pytest.approx([3 / 4, 1 / 2, 6 / 7], abs=1e-12)
    assert scorer.labeler.backend.backend_calls == 2  # chunks of batch_pairs = 2 pairs
    assert scorer.note()["judge"] == "pairwise"
    assert scorer.note()["rule"] == "p against the anchor"


def test_direct_rlaif_with_the_pairwise_tie_judge(tmp_path):
    scorer = labeler_scorer(tmp_path, "pairwise-tie")
    # 3 words vs 1: logit log 3; per order the softmax of (x/2, -x/2, 0); P(first) + P(tie)/2
    r3 = 3 ** 0.5
    total = r3 + 1 / r3 + 1
    p_fwd, p_swapped = (r3 + 0.5) / total, (1 / r3 + 0.5) / total
    assert scorer([POST], ["three word summary"]).tolist() == pytest.approx(
        [(p_fwd + 1 - p_swapped) / 2], abs=1e-12)


def test_direct_rlaif_anchors_default_to_the_data_and_unknown_posts_are_refused(tmp_path):
    from lab.a2c import make_scorer, post_pairs
    from lab.errors import RunError

    path = labeler_config(tmp_path, "pairwise")
    data = str(tmp_path / "c.jsonl")
    scorer = make_scorer(A2CConfig(reward="labeler", labeler=str(path), data=data))
    posts = post_pairs(data)
    assert posts
    _, post, pair = posts[0]
    # the anchor is that post's data pair's first summary: itself against it is a tie
    assert scorer([post], [pair.first]).tolist() == [0.5]
    with pytest.raises(RunError, match="a post with no data pair"):
        scorer(["another post"], ["x"])
