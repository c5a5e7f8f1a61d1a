"""RLAIF end to end through the command line on the fake labeler and tiny random models:
rm label -> rm train -> rm eval -> rl train -> winrate, then a resumed RL run."""

from __future__ import annotations

import csv
import json

from tests.conftest import tldr_row, write_rows
from tests.test_cli import rlaif
from tests.tiny_model import build_tiny_encoder, build_tiny_model


def test_rlaif_pipeline_on_fake_backend(tmp_path):
    rows = [tldr_row(i, choice=i % 2, confidence=2 if i % 2 == 0 else 8) for i in range(48)]
    data = write_rows(tmp_path / "comparisons.jsonl", rows)
    labeler = tmp_path / "best.yaml"
    labeler.write_text(f"data: {{path: {data}}}\n"
                       "backend: {backend: fake, fake: {length: 1.0, noise: 0.5}}\n")
    encoder = build_tiny_encoder(tmp_path / "encoder")
    policy = build_tiny_model(tmp_path / "policy")
    rm = tmp_path / "rm"

    r = rlaif("rm", "label", "--config", str(labeler), "--out", str(rm), "--no-progress")
    assert r.returncode == 0, r.stderr
    pairs = [json.loads(x) for x in (rm / "pairs.jsonl").read_text().splitlines()]
    trl = [json.loads(x) for x in (rm / "trl_preferences.jsonl").read_text().splitlines()]
    test_posts = {f"t3_post{i}" for i in range(48)} - {p["post_id"] for p in pairs}
    assert pairs and test_posts  # the test split's posts are held out of the training pairs
    assert len(trl) == len(pairs) and set(trl[0]) == {"prompt", "chosen", "rejected", "score"}
    for p, t in zip(pairs, trl):
        assert 0 <= p["ai"] <= 1 and p["human"] in (0.0, 1.0)
        first_chosen = p["ai"] >= 0.5
        assert t["chosen"].strip() == (p["first"] if first_chosen else p["second"])
        assert t["score"] == max(p["ai"], 1 - p["ai"]) >= 0.5
    # the fake labeler prefers the longer summary (the second one in every row)
    assert all(p["ai"] < 0.5 for p in pairs)

    r = rlaif("rm", "train", str(rm), "--backbone", str(encoder), "--epochs", "3",
              "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "rm_ai:" in r.stdout and "rm_human:" in r.stdout

    r = rlaif("rm", "eval", str(rm), "--curve", "8,16", "--no-progress")
    assert r.returncode == 0, r.stderr
    result = json.loads((rm / "rm_eval.json").read_text())
    names = [row["name"] for row in result["rows"]]
    assert names == ["reward model on AI labels", "reward model on human labels",
                     "length-only baseline"]
    n_test = len([i for i in range(48) if f"t3_post{i}" in test_posts])
    assert all(row["n"] == n_test for row in result["rows"])
    # every held-out human label prefers summary 1 on even rows; the longer one is always 2nd
    even = sum(1 for i in range(48) if f"t3_post{i}" in test_posts and i % 2 == 0)
    assert result["rows"][2]["accuracy"] == 1 - even / n_test
    assert (rm / "rm_curve.png").stat().st_size > 10_000
    assert {(p["labels"], p["n_train"] <= 16) for p in result["curve"]} >= {
        ("ai", True), ("human", True)}

    rl = tmp_path / "rl"
    args = ("rl", "train", "--policy", str(policy), "--rm", str(rm / "rm_ai"), "--data",
            str(data), "--max-new-tokens", "6", "--batch-size", "2", "--out", str(rl),
            "--no-progress")
    r = rlaif(*args, "--updates", "2")
    assert r.returncode == 0, r.stderr
    log = list(csv.DictReader(open(rl / "log.csv")))
    assert [row["update"] for row in log] == ["1", "2"]
    assert (rl / "curves.png").is_file() and (rl / "checkpoint.pt").is_file()
    # rerun with more updates: resumes from the checkpoint and keeps the first two updates
    r = rlaif(*args, "--updates", "3")
    assert r.returncode == 0, r.stderr
    log3 = list(csv.DictReader(open(rl / "log.csv")))
    assert [row["update"] for row in log3] == ["1", "2", "3"] and log3[:2] == log
    # changing a setting in the same folder is refused
    r = rlaif(*args, "--updates", "4", "--lr", "1e-3")
    assert r.returncode == 2 and "different A2C config" in r.stderr

    r = rlaif("winrate", str(rl), "--labeler", str(labeler), "--n", "4", "--no-progress")
    assert r.returncode == 0, r.stderr
    win = json.loads((rl / "winrate.json").read_text())
    assert win["overall"]["n"] == 4 and 0 <= win["overall"]["win_rate"] <= 1
    parts = sum(win[k]["n"] for k in ("trained_longer", "trained_shorter", "same_length"))
    assert parts == 4
    assert len((rl / "summaries.jsonl").read_text().splitlines()) == 4
