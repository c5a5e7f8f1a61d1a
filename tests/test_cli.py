"""The command line through subprocess: smoke runs and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, tldr_row, write_rows


def rlaif(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, **(env or {})}, timeout=300,
    )


def test_label_fake_on_real_data(real_data, tmp_path):
    out = tmp_path / "run"
    r = rlaif("label", "--backend", "fake", "--data", str(real_data), "--n", "40",
              "--preamble", "base", "--shots", "2", "--cot", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "AI-labeler alignment" in r.stdout and "length-only baseline" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 40
    config = json.loads((out / "config.json").read_text())
    assert config["prompt"] == {"preamble": "base", "shots": 2, "cot": True,
                                "max_exemplar_chars": 1200, "shuffle_order": None}
    # reload the resolved config: same labels, nothing recomputed
    r2 = rlaif("label", "--config", str(out / "config.json"), "--out", str(out), "--no-progress")
    assert r2.returncode == 0, r2.stderr
    assert json.loads((out / "metrics.json").read_text())["alignment"] == metrics["alignment"]


def test_data_from_environment_variable(real_data, tmp_path):
    r = rlaif("label", "--backend", "fake", "--n", "5", "--out", str(tmp_path / "r"),
              "--no-progress", env={"RLAIF_DATA_DIR": str(real_data)})
    assert r.returncode == 0, r.stderr


def one_line_error(r, *needles):
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for needle in needles:
        assert needle in lines[0]


def test_malformed_row_error_and_skip(tmp_path):
    f = write_rows(tmp_path / "c.json", [tldr_row(1), {"info": {}}, tldr_row(2)])
    args = ["label", "--backend", "fake", "--data", str(f), "--confidence", "all",
            "--split", "all", "--no-progress"]
    one_line_error(rlaif(*args, "--out", str(tmp_path / "a")), f"{f}:2", "info.post")
    r = rlaif(*args, "--out", str(tmp_path / "b"), "--skip-bad-rows")
    assert r.returncode == 0, r.stderr
    assert "skipped 1 malformed rows" in r.stdout
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["skipped_rows"] == 1


def test_missing_data_unknown_template_model_and_key(tmp_path):
    base = ["label", "--backend", "fake", "--no-progress", "--out", str(tmp_path / "x")]
    one_line_error(rlaif(*base, "--data", str(tmp_path / "none")), "no such file", "--data")
    f = write_rows(tmp_path / "c.json", [tldr_row(1)])
    one_line_error(rlaif(*base, "--data", str(f), "--split", "all", "--preamble", "nope"),
                   "preamble/nope.jinja", "not found")
    one_line_error(
        rlaif("label", "--model", "no-such-model", "--data", str(f), "--split", "all",
              "--no-progress", "--out", str(tmp_path / "y")),
        "no-such-model", "rlaif models list")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backend:\n  modle: x\n")
    one_line_error(rlaif("label", "--config", str(cfg), "--out", str(tmp_path / "z")),
                   str(cfg), "unknown key 'modle'")


def test_models_list():
    r = rlaif("models", "list")
    assert r.returncode == 0
    for name in ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "gemma3-270m"):
        assert name in r.stdout


def test_dialogue_rows_are_labeled_with_the_dialogue_prompts(tmp_path):
    f = tmp_path / "hh.jsonl"
    f.write_text('{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: hello", '
                 '"rejected": "\\n\\nHuman: hi\\n\\nAssistant: no"}\n')
    args = ("label", "--backend", "fake", "--data", str(f), "--confidence", "all",
            "--split", "all", "--no-progress", "--no-cache")
    r = rlaif(*args, "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    (record,) = [json.loads(x) for x in (tmp_path / "o" / "labels.jsonl").read_text().splitlines()]
    assert {record["len_first"], record["len_second"]} == {1}
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert list(run["templates"]) == ["hh/pairwise.jinja", "hh/task.jinja"]
    # the TL;DR-only prompt settings are refused for them, in one line
    r = rlaif(*args, "--shots", "1", "--out", str(tmp_path / "o2"))
    one_line_error(r, "config: the pairwise judge on dialogue pairs shows no few-shot "
                      "exemplars; set prompt.shots to 0 (only TL;DR prompts have them)")
