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
