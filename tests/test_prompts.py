"""Stage 2: rendered prompts match golden files; template errors are clear."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab import prompts
from lab.backends.fake import FakeBackend
from lab.prompts import Exemplar, PromptConfig, PromptError, render, render_template

GOLDEN = Path(__file__).parent / "golden"
TEXT = (
    "I (24F) adopted a cat last week. She hides under the bed all day. "
    "How do I help her settle in?"
)
S1 = "New cat hides all day, how do I help her feel at home?"
S2 = "I got a cat."
EXEMPLARS = [
    Exemplar("My landlord kept my deposit for no reason. What can I do?",
             "Landlord kept deposit without reason, what are my options?", "Deposit gone.", 1),
    Exemplar("Ran my first marathon today after a year of training!",
             "Ran.", "Finished my first marathon after training for a year.", 2),
]
CASES = {
    "base_0shot_direct": (PromptConfig("base", 0, False), [], None),
    "detailed_0shot_direct": (PromptConfig("detailed", 0, False), [], None),
    "base_2shot_direct": (PromptConfig("base", 2, False), EXEMPLARS, None),
    "detailed_2shot_cot": (PromptConfig("detailed", 2, True), EXEMPLARS, None),
    "base_0shot_cot_scored": (PromptConfig("base", 0, True), [], " Summary 1 is more complete."),
}


def _full(config, exemplars, rationale) -> str:
    r = render(config, TEXT, S1, S2, exemplars, rationale)
    return FakeBackend().format(r.user, r.assistant)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_prompt_matches_golden(name):
    text = _full(*CASES[name])
    path = GOLDEN / f"prompt_{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_prompt_ends_right_before_the_digit():
    assert _full(*CASES["detailed_0shot_direct"]).endswith("\nPreferred Summary=")
    assert _full(*CASES["detailed_2shot_cot"]).endswith("\nRationale:")
    assert _full(*CASES["base_0shot_cot_scored"]).endswith("more complete.\nPreferred Summary=")


def test_unknown_variable_names_the_template(tmp_path, monkeypatch):
    (tmp_path / "preamble").mkdir()
    (tmp_path / "preamble" / "mine.jinja").write_text("Rate {{ mystery }} carefully.")
    for name in ("labeler.jinja", "sample.jinja", "exemplar.jinja"):
        (tmp_path / name).write_text((prompts.PROMPTS_DIR / name).read_text())
    (tmp_path / "ending").mkdir()
    (tmp_path / "ending" / "direct.jinja").write_text(
        (prompts.PROMPTS_DIR / "ending" / "direct.jinja").read_text())
    monkeypatch.setattr(prompts, "PROMPTS_DIR", tmp_path)
    monkeypatch.setattr(prompts, "_ENV", None)
    with pytest.raises(PromptError) as err:
        render(PromptConfig("mine"), TEXT, S1, S2, [])
    assert str(err.value).startswith("template 'preamble/mine.jinja': 'mystery' is undefined")
    monkeypatch.setattr(prompts, "_ENV", None)


def test_missing_template_lists_known_ones():
    with pytest.raises(PromptError) as err:
        render(PromptConfig("nonexistent"), TEXT, S1, S2, [])
    msg = str(err.value)
    assert "template 'preamble/nonexistent.jinja' not found" in msg
    assert "preamble/detailed.jinja" in msg


def test_environment_is_sandboxed():
    env = prompts.environment()
    from jinja2.sandbox import SecurityError

    with pytest.raises(SecurityError):
        env.from_string("{{ ''.__class__.__mro__ }}").render()
    assert render_template("sample.jinja", text="t", summary_1="a", summary_2="b") == (
        "Text - t\nSummary 1 - a\nSummary 2 - b"
    )


def test_choose_exemplars_alternates_labels(real_data):
    from lab.data import exemplar_pool, load_pairs

    pool = exemplar_pool(load_pairs(str(real_data))[0])
    ex = prompts.choose_exemplars(pool, 4, seed=0, max_chars=2000)
    assert [e.label for e in ex] == [1, 2, 1, 2]
    assert ex == prompts.choose_exemplars(pool, 4, seed=0, max_chars=2000)
    with pytest.raises(PromptError, match="lower --shots"):
        prompts.choose_exemplars(pool, 500, seed=0, max_chars=2000)
