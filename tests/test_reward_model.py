"""Reward model: the soft-label loss, training on a separable toy set, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from lab.reward_model import (
    FeatureCache,
    RMConfig,
    load_reward_model,
    score_pairs,
    soft_label_loss,
    train_reward_model,
)
from tests.tiny_model import build_tiny_encoder


def test_soft_label_loss_matches_hand_computation():
    r1, r2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    p = torch.tensor([0.8, 0.3])

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x))

    hand = [-(0.8 * log_sigmoid(1.0) + 0.2 * log_sigmoid(-1.0)),
            -(0.3 * log_sigmoid(-2.0) + 0.7 * log_sigmoid(2.0))]
    assert soft_label_loss(r1, r2, p).item() == pytest.approx(sum(hand) / 2, abs=1e-6)
    # a hard label is the Bradley-Terry loss; equal rewards cost log 2 whatever the label
    assert soft_label_loss(torch.tensor([3.0]), torch.tensor([1.0]),
                           torch.tensor([1.0])).item() == pytest.approx(-log_sigmoid(2.0))
    assert soft_label_loss(torch.zeros(3), torch.zeros(3),
                           torch.tensor([0.0, 0.5, 1.0])).item() == pytest.approx(math.log(2))


def toy_rows(n: int) -> list[dict]:
    """Pairs whose better summary says 'good' (the label the RM must learn)."""
    rows = []
    for i in range(n):
        good, bad = f"good summary {i}", f"bad summary {i}"
        first_good = i % 2 == 0
        rows.append({"key": f"k{i}", "post_id": f"p{i}", "post": f"post number {i}",
                     "first": good if first_good else bad, "second": bad if first_good else good,
                     "ai": 0.8 if first_good else 0.2, "human": 1.0 if first_good else 0.0,
                     "confidence": 1 if first_good else 9})
    return rows


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("enc"))


def test_training_changes_parameters_and_lowers_loss(tiny_encoder, tmp_path):
    rows = toy_rows(40)
    config = RMConfig(backbone=str(tiny_encoder), train_layers=1, head_hidden=16, epochs=12,
                      batch_size=8, lr=1e-2, backbone_lr=1e-3, patience=12, labels="ai")
    torch.manual_seed(config.seed)
    before = load_reward_model_untrained(config).trainable_state()
    m = train_reward_model(rows, config, tmp_path / "rm", progress=False)
    log = (tmp_path / "rm" / "log.csv").read_text().splitlines()
    first, last = (dict(zip(log[0].split(","), line.split(","))) for line in (log[1], log[-1]))
    assert float(last["train_loss"]) < float(first["train_loss"]) - 0.1
    model = load_reward_model(tmp_path / "rm")
    after = model.trainable_state()
    assert set(before) == set(after) and any(k.startswith("backbone.") for k in after)
    assert all(not torch.equal(before[k], after[k]) for k in after)
    r1, r2 = score_pairs(model, rows)
    accuracy = ((r1 > r2).float() == torch.tensor([r["human"] for r in rows])).float().mean()
    assert accuracy.item() >= 0.9
    assert m["n_train"] + m["n_val"] == 40


def load_reward_model_untrained(config: RMConfig):
    from lab.reward_model import RewardModel

    return RewardModel(config)


def test_frozen_backbone_caches_features_and_resumes(tiny_encoder, tmp_path):
    rows = toy_rows(24)
    config = RMConfig(backbone=str(tiny_encoder), head_hidden=8, epochs=3, batch_size=8,
                      patience=10)
    cache = FeatureCache(tmp_path / "features.pt")
    train_reward_model(rows, config, tmp_path / "a", cache, progress=False)
    assert (tmp_path / "features.pt").is_file()
    stored = FeatureCache(tmp_path / "features.pt").stores
    assert sum(len(s) for s in stored.values()) == 48  # 24 pairs x 2 summaries
    # a run stopped after its checkpoint resumes: more epochs continue the same log
    (tmp_path / "a" / "metrics.json").unlink()
    longer = RMConfig(**{**config.__dict__, "epochs": 5})
    with pytest.raises(RuntimeError, match="different reward-model config"):
        train_reward_model(rows, longer, tmp_path / "a", cache, progress=False)
    m = train_reward_model(rows, config, tmp_path / "a", cache, progress=False)
    assert m["epochs"] == 3
    lines = (tmp_path / "a" / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
