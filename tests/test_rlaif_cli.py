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
    label_out = r.stdout
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

    calib = json.loads((rm / "calibration.json").read_text())
    n_pool = sum(p["split"] == "pool" for p in pairs)
    assert calib["scale"] is None and calib["n_fit"] == n_pool < 20
    assert calib["reason"] == (f"only {n_pool} labeled pairs of the pool split (at least 20 "
                               "needed); label more pairs (drop --n)")
    assert f"no calibration: {calib['reason']}\n" in label_out

    r = rlaif("rm", "train", str(rm), "--backbone", str(encoder), "--epochs", "3",
              "--seeds", "0", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"skipped rm_ai_calibrated: {calib['reason']}" in r.stdout
    for name in ("rm_ai", "rm_ai_seed1", "rm_ai_hard", "rm_ai_hard_seed1", "rm_human",
                 "rm_human_seed1"):
        assert f"{name}: " in r.stdout and (rm / name / "model.pt").is_file()
    assert not (rm / "rm_ai_calibrated").exists()
    # asking for the calibrated labels by name is an error, not a skip
    r = rlaif("rm", "train", str(rm), "--labels", "ai_calibrated", "--backbone", str(encoder))
    assert r.returncode == 2
    assert r.stderr == (f"error: {rm}/pairs.jsonl has no calibrated labels: {calib['reason']}\n")

    r = rlaif("rm", "eval", str(rm), "--curve", "8,16", "--no-progress")
    assert r.returncode == 0, r.stderr
    result = json.loads((rm / "rm_eval.json").read_text())
    names = [(row["labels"], row["seed"]) for row in result["rows"]]
    assert names == [("ai", 0), ("ai", 1), ("ai_hard", 0), ("ai_hard", 1), ("human", 0),
                     ("human", 1), ("-", None)]
    n_test = len([i for i in range(48) if f"t3_post{i}" in test_posts])
    assert all(row["n"] == n_test for row in result["rows"])
    # every held-out human label prefers summary 1 on even rows; the longer one is always 2nd
    even = sum(1 for i in range(48) if f"t3_post{i}" in test_posts and i % 2 == 0)
    base = result["rows"][-1]
    assert base["accuracy"] == 1 - even / n_test
    assert base["prefers_longer"] == 1.0 and base["length_balanced"] == 0.5
    assert [k["labels"] for k in result["kinds"]] == ["ai", "ai_hard", "human"]
    assert all(k["seeds"] == 2 for k in result["kinds"])
    assert [(t["a"], t["b"]) for t in result["tests"]] == [("ai", "human"), ("ai_hard", "human")]
    assert (rm / "rm_curve.png").stat().st_size > 10_000
    assert {(p["labels"], p["n_train"] <= 16) for p in result["curve"]} >= {
        ("ai", True), ("ai_hard", True), ("human", True)}

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

    t = json.loads((rl / "trend.json").read_text())
    assert t["updates"] == 3 and "slope_per_update" in t
    assert {"truncated", "length"} <= set(log3[0])
    assert json.loads((rl / "reward.json").read_text())["reward"] == "rm"

    # direct RLAIF: the labeler's (pairwise) judge against each post's first data summary
    direct = tmp_path / "rl_direct"
    r = rlaif("rl", "train", "--policy", str(policy), "--reward", "labeler", "--labeler",
              str(labeler), "--data", str(data), "--max-new-tokens", "6", "--batch-size", "2",
              "--updates", "1", "--out", str(direct), "--no-progress")
    assert r.returncode == 0, r.stderr
    note = json.loads((direct / "reward.json").read_text())
    assert (note["reward"], note["judge"], note["rule"]) == (
        "labeler", "pairwise", "p against the anchor")
    assert f"reward: {note['description']}\n" in r.stderr
    (row,) = csv.DictReader(open(direct / "log.csv"))
    assert 0 <= float(row["score"]) <= 1

    win = tmp_path / "win"
    r = rlaif("winrate", "--out", str(win), "--policy", f"rlaif={rl}",
              "--judge-rm", f"human-rm={rm / 'rm_human'}",
              "--judge-rm", f"ai-hard-rm={rm / 'rm_ai_hard'}",
              "--judge-labeler", f"labeler={labeler}", "--n", "4", "--no-progress")
    assert r.returncode == 0, r.stderr
    w = json.loads((win / "winrate.json").read_text())
    assert [(row["a"], row["b"], row["judge"], row["independent"]) for row in w["rows"]] == [
        ("rlaif", "start", "human-rm", True), ("rlaif", "start", "ai-hard-rm", False),
        ("rlaif", "start", "labeler", False)]
    # the policy's reward model (rm_ai) and the rm_ai_hard judge learned from the same AI
    # labels, and the labeler judge made them
    assert w["rows"][1]["source_of"] == w["rows"][2]["source_of"] == ["rlaif"]
    for row in w["rows"]:
        assert row["n"] == 4 and 0 <= row["win_rate"] <= 1
    assert w["policies"]["start"]["kl"] == 0.0 and set(w["policies"]) == {"start", "rlaif"}
    assert len((win / "summaries.jsonl").read_text().splitlines()) == 4
    assert len((win / "judgments.jsonl").read_text().splitlines()) == 12
    assert "| rlaif vs start | labeler | no: reward of rlaif |" in r.stdout
    r = rlaif("winrate", "--out", str(win), "--policy", f"rlaif={rm / 'rm_ai'}",
              "--judge-rm", "x=y")
    assert r.returncode == 2
    assert r.stderr == (f"error: --policy rlaif={rm / 'rm_ai'}: not a folder `rlaif rl train` "
                        "wrote (no A2C config.json); pass an A2C run folder\n")
    r = rlaif("winrate", "--out", str(win), "--policy", "rlaif", "--judge-rm", "x=y")
    assert r.returncode == 2
    assert r.stderr == ("error: --policy 'rlaif': expected NAME=PATH, e.g. --policy "
                        "rlaif=results/rlaif/a2c_ai\n")
