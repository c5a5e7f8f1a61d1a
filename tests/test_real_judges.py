"""Every judge's templates on the smallest packaged real model (smollm2-135m). Marked slow.

For each judge of :data:`lab.judges.JUDGES` (the list follows the registry; a judge that
shows a reference answer reads CNN/DM batch 0, whose human reference summaries are the shared
data's only references, and is listed as skipped for the other families) and each task family
it has templates for, two real pairs of that family's dataset (TL;DR, HH-RLHF, LLMBar) are
prepared as ``rlaif label`` prepares them (:func:`lab.run.prepare`, the backend
from the run config: transformers, ``dtype: auto``) and labeled one pair per call. What is
checked is what only a real tokenizer and model can show: the judge's tokens are single tokens
of the model's vocabulary and stay so after the prompt's last characters, every scored prompt
ends with the model's chat template's assistant turn and the family's answer start, the label
passes :func:`lab.judges.base.label_problem` with p strictly inside (0, 1) and off 0.5, the
token counts are the prompts', and a rating judge's ratings lie on its scale with
p(a, b) == 1 - p(b, a) exactly. Speed is not checked here: ``bench/judges.py``
measures seconds and tokens per pair for each judge in one run.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from lab import models
from lab.backends import BackendConfig, make_backend
from lab.cache import LabelCache
from lab.config import RunConfig
from lab.data import DataConfig
from lab.judges import JUDGES
from lab.judges.base import label_problem
from lab.judges.rating import RatingJudge
from lab.label import Labeler
from lab.prompts import PromptConfig
from lab.run import prepare

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"
BACKEND = BackendConfig(model=MODEL)  # transformers, dtype auto, as `rlaif label` runs it

TASK_OF = {"summarize": "tldr", "dialogue": "hh", "instruction": "llmbar"}
"""The dataset each task family's pairs come from (``data.task``)."""

COMPARISON_START = {"summarize": "Preferred Summary=", "dialogue": "Preferred Response=",
                    "instruction": "Preferred Output="}
"""The assistant turn's start of a family's comparison prompts (the digit follows)."""

RATING_START = {"rating": "Rating:", "self-reward": "Score:"}
"""The assistant turn's start of each rating judge's prompts (the same in every family)."""

SENTINEL = "\x00USER-TURN\x00"


def cases() -> list:
    """(judge, family) for every judge in the registry and every family it has prompts for."""
    out = []
    for name, judge in JUDGES.items():
        for family in judge.templates:
            # the shared data's only reference answers: CNN/DM batch 0's `ref` summaries
            skip = ([pytest.mark.skip(reason=f"the {name} judge shows a reference answer; the "
                                             f"shared data has none for {family} pairs")]
                    if judge.needs_reference and family != "summarize" else [])
            out.append(pytest.param(name, family, id=f"{name}-{family}", marks=skip))
    return out


@pytest.fixture(scope="module")
def backend():
    if not models.is_installed(MODEL):
        if os.environ.get("CI"):
            pytest.fail(f"{MODEL} not installed; .ci/run must run `rlaif models install {MODEL}`")
        pytest.skip(f"{MODEL} not installed (rlaif models install {MODEL})")
    return make_backend(BACKEND)


@pytest.fixture(scope="module")
def chat_turn(backend) -> tuple[str, str]:
    """What the model's chat template puts before and after a user turn (up to and with the
    start of the assistant turn)."""
    assert backend.chat, f"{MODEL} should be read through its chat template"
    whole = backend.tokenizer.apply_chat_template(
        [{"role": "user", "content": SENTINEL}], tokenize=False, add_generation_prompt=True)
    before, after = whole.split(SENTINEL)
    assert after.strip(), "the chat template should open an assistant turn"
    return before, after


def expected_start(name: str, judge, family: str) -> str:
    """The answer start a judge's prompts should end with in a family."""
    if isinstance(judge, RatingJudge):
        if name not in RATING_START:
            pytest.fail(f"rating judge {name}: add its assistant-turn start to RATING_START")
        return RATING_START[name]
    return COMPARISON_START[family]


def encode(backend, text: str) -> list[int]:
    """Token ids of a prompt as the backend reads it."""
    return backend.tokenizer(text, add_special_tokens=not backend.chat)["input_ids"]


@pytest.mark.parametrize(("name", "family"), cases())
def test_judge_labels_real_pairs(backend, chat_turn, real_data, name, family):
    if family not in TASK_OF:
        pytest.fail(f"no dataset for {family} pairs: add its task to TASK_OF")
    task = TASK_OF[family]
    data = DataConfig(path=str(real_data), task=task, n=2, split="all",
                      confidence="high" if task == "tldr" else "all")
    if JUDGES[name].needs_reference:  # CNN/DM batch 0 has the human reference summaries
        data = DataConfig(path=str(real_data / "summarize_from_feedback_comparisons"
                                   / "batch0_cnndm.json"), n=2, split="all",
                          confidence="all", skip_bad_rows=True)
    config = RunConfig(data=data, prompt=PromptConfig(judge=name), backend=BACKEND)
    pairs, skipped, exemplars = prepare(config)
    assert len(pairs) == 2 and {p.task for p in pairs} == {family}
    assert skipped == 0 or JUDGES[name].needs_reference  # pairs without a reference skipped
    labeler = Labeler(backend, config.prompt, config.decode, exemplars, LabelCache())
    judge = labeler.judge
    tok = backend.tokenizer

    # the scored tokens: each one token of the vocabulary that decodes back to itself
    ids = {}
    for c in judge.candidates:
        encoded = tok.encode(c, add_special_tokens=False)
        assert len(encoded) == 1, f"{name}: candidate {c!r} is {len(encoded)} tokens of {MODEL}"
        ids[c] = encoded[0]
        assert tok.decode(encoded) == c
        assert backend.token_id(c) == ids[c]
    before, after = chat_turn
    start = expected_start(name, judge, family)

    for pair in pairs:
        units = judge.units(pair)
        heads = [h for unit in units for h in unit.heads]
        probes = [probe for unit in units for probe in unit.probes]
        assert len(set(heads)) == len(heads)  # both orders (or both responses) differ
        for head, probe in zip(heads + [labeler.prompt_for(pair, s) for s in (False, True)],
                               probes + [None, None]):
            assert head.startswith(before) and head.endswith(after + start), head[-200:]
            user = head[len(before):-len(after + start)]
            assert pair.text.strip()[:200] in user
            for shown in probe.responses if probe else ():
                assert shown.strip() in user
            # the digit after the prompt is the scored token: no merge with the last characters
            prompt_ids = encode(backend, head)
            for c in judge.candidates:
                assert encode(backend, head + c) == prompt_ids + [ids[c]], (name, family, c)

        (record,) = labeler.label_many([pair])  # batch 1
        assert label_problem(record) is None, label_problem(record)
        assert 0.0 < record["p"] < 1.0 and record["p"] != 0.5, record["p"]
        assert record["prompt_tokens"] > 0
        assert record["prompt_tokens"] == sum(backend.count_tokens(h) for h in heads)
        assert record["generated_tokens"] == 0 and record["seconds"] > 0
        assert record["precision"] == backend.precision and not record["cache_hit"]

        if isinstance(judge, RatingJudge):
            lo, hi = min(judge.values), max(judge.values)
            for which in ("rating_first", "rating_second"):
                assert lo < record[which] < hi, (which, record[which])
            swapped = dataclasses.replace(pair, first=pair.second, second=pair.first)
            (back,) = labeler.label_many([swapped])
            assert back["cache_hit"]  # a response's rating is computed once
            assert back["p"] == 1.0 - record["p"]  # exactly
            assert (back["rating_first"], back["rating_second"]) == (
                record["rating_second"], record["rating_first"])
        else:
            assert 0.0 < record["p_fwd"] < 1.0 and 0.0 < record["p_swapped"] < 1.0
