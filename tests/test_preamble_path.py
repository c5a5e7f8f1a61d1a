"""A preamble named by the path of a .jinja file (where `rlaif optimize` writes its winner),
in `rlaif label` and in a sweep, renders like a template of prompts/preamble/."""

from __future__ import annotations

import pytest
import yaml

from lab.prompts import PromptConfig, PromptError, render
from tests.conftest import tldr_row, write_rows
from tests.test_cli import one_line_error, rlaif


def test_path_preamble_renders_its_text_without_the_header(tmp_path):
    path = tmp_path / "results" / "opt_x.jinja"
    path.parent.mkdir()
    path.write_text("{#- Optimised by `rlaif optimize` -#}\nJudge by {{ 'accuracy' }} only.\n")
    r = render(PromptConfig(preamble=str(path)), "post", "one", "two", [])
    assert r.user.startswith("Judge by accuracy only.\n\n")
    named = render(PromptConfig(preamble="base"), "post", "one", "two", [])
    assert r.user.split("\n\n", 1)[1] == named.user.split("\n\n", 1)[1]  # the rest is the same


def test_missing_or_broken_path_preamble_is_a_prompt_error(tmp_path):
    with pytest.raises(PromptError, match=f"preamble {tmp_path}/nope.jinja: no such file"):
        render(PromptConfig(preamble=str(tmp_path / "nope.jinja")), "p", "a", "b", [])
    bad = tmp_path / "bad.jinja"
    bad.write_text("line one\n{% if %}\n")
    with pytest.raises(PromptError, match=f"preamble {bad} line 2: "):
        render(PromptConfig(preamble=str(bad)), "p", "a", "b", [])


def test_label_and_sweep_take_a_path_preamble(tmp_path):
    data = write_rows(tmp_path / "c.json", [tldr_row(i) for i in range(12)])
    pre = tmp_path / "results" / "opt" / "opt_opt.jinja"
    pre.parent.mkdir(parents=True)
    pre.write_text("Prefer the faithful summary.\n")
    r = rlaif("label", "--backend", "fake", "--data", str(data), "--confidence", "all",
              "--split", "all", "--preamble", str(pre), "--out", str(tmp_path / "run"),
              "--no-progress", "--no-cache")
    assert r.returncode == 0, r.stderr
    r = rlaif("label", "--backend", "fake", "--data", str(data), "--split", "all",
              "--preamble", "results/none.jinja", "--out", str(tmp_path / "r2"),
              "--no-progress", "--no-cache")
    one_line_error(r, "preamble results/none.jinja: no such file")
    exp = tmp_path / "p.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "p", "data": {"path": str(data), "confidence": "all"}, "dev_split": "all",
        "test_split": "all", "base": {"backend": {"backend": "fake"}},
        "axes": {"preamble": ["base", str(pre)]}}))
    r = rlaif("sweep", str(exp), "--results", str(tmp_path / "out"), "--no-progress",
              env={"RLAIF_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    trials = sorted(p.name for p in (tmp_path / "out" / "p" / "trials").iterdir())
    assert trials == ["preamble=" + str(pre).replace("/", "_"), "preamble=base"]
