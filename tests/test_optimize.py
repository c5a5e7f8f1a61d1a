"""Preamble optimisation with DSPy on the fake backend: the rewarded keyword is found."""

from __future__ import annotations

import json

import pytest

from lab.backends.dspy_engine import repair_fields
from lab.optimize import OptimizeExperiment
from tests.conftest import tldr_row, write_rows
from tests.test_cli import rlaif


def test_optimizer_finds_the_keyword_the_fake_labeler_rewards(tmp_path):
    # every human prefers summary 1, which shares more words with the post; the fake labeler
    # sees that (skill) only when its prompt contains "faithfulness", else it is at chance
    data = write_rows(tmp_path / "c.jsonl", [tldr_row(i) for i in range(240)])
    exp = tmp_path / "kw.yaml"
    exp.write_text(
        f"data: {{path: {data}, confidence: high}}\n"
        "n_train: 12\nn_eval: 10\nstart_preamble: base\nbreadth: 3\ndepth: 2\n"
        "labeler: {backend: {backend: fake, fake: {skill: 3.0, keyword: faithfulness}}}\n"
        "proposer: {backend: fake}\n")
    prompts = tmp_path / "prompts"
    r = rlaif("optimize", str(exp), "--results", str(tmp_path / "results"), "--no-progress",
              env={"RLAIF_PROMPTS_DIR": str(copy_prompts(prompts))})
    assert r.returncode == 0, r.stderr
    assert not (prompts / "preamble" / "opt_kw.jinja").exists()  # not offered to every sweep
    template = (tmp_path / "results" / "kw" / "opt_kw.jinja").read_text()
    assert template.startswith("{#- Optimised by `rlaif optimize` (experiment 'kw'")
    assert "Focus on faithfulness." in template
    record = json.loads((tmp_path / "results" / "kw" / "optimize.json").read_text())
    assert record["train"]["alignment"] == 1.0
    start = next(c for c in record["candidates"] if "Focus on" not in c["text"])
    assert start["train_alignment"] == 0.5  # the fake labeler ties without the keyword
    evals = {(e["split"], e["preamble"]): e for e in record["evaluation"]}
    assert evals[("test", "opt_kw")]["alignment"] == 1.0
    assert evals[("test", "base")]["alignment"] == 0.5
    assert "| test | opt_kw |" in r.stdout


def copy_prompts(target):
    import shutil

    from lab.prompts import PROMPTS_DIR

    shutil.copytree(PROMPTS_DIR, target)
    return target


def test_unknown_key_and_bad_name_are_refused(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("breadht: 3\n")
    with pytest.raises(ValueError, match="unknown key 'breadht'"):
        OptimizeExperiment.load(bad)
    bad.write_text("labeler: {promt: {shots: 1}}\n")
    with pytest.raises(ValueError, match="promt"):
        OptimizeExperiment.load(bad)


def test_repair_fields_wraps_an_answer_without_markers():
    system = ("Your input fields are:\n1. `basic_instruction` (str)\n"
              "Your output fields are:\n1. `proposed_instruction` (str): x\n"
              "2. `proposed_prefix_for_output_field` (str): y\n\nAll interactions ...")
    fixed = repair_fields('"Judge the summaries by accuracy."', system)
    assert fixed == ("[[ ## proposed_instruction ## ]]\nJudge the summaries by accuracy.\n\n"
                     "[[ ## proposed_prefix_for_output_field ## ]]\nPreferred Summary=\n\n"
                     "[[ ## completed ## ]]")
    marked = "[[ ## proposed_instruction ## ]]\nx"
    assert repair_fields(marked, system) == marked
