"""The reference judge: which of two responses is better, with a reference answer shown.

MT-Bench's reference-guided pairwise grading (Zheng et al. 2023, "Judging LLM-as-a-judge",
arXiv 2306.05685): for questions a judge may not answer well itself (math, reasoning, code) the
prompt shows a reference answer beside the two responses, and the judge compares them against
it. The prompt shows the text, the reference (``pair.reference``: a TL;DR post's human
reference summary, an MT-Bench question's reference answer) and both responses, and is answered
``1`` or ``2``; the answer is read as by the pairwise judge: the softmax over the next-token
log-probabilities of ``1`` and ``2``, both presentation orders,

    p = (p_fwd + 1 - p_swapped) / 2.

Templates per task family (``prompts/judges/reference.jinja`` for TL;DR,
``prompts/hh/reference.jinja``, ``prompts/instruction/reference.jinja``) get ``text``,
``response_1`` / ``response_2`` (``summary_1`` / ``summary_2``) and ``reference``.
``needs_reference``: ``run.prepare`` attaches the references the data holds and keeps only
the pairs with one (the others are skipped and counted). One unit per pair, cached under its
own key (the judge's name, model identity, engine, both prompts, the candidates). Cost: 2
prompts per pair, each longer than a pairwise prompt by the reference.
"""

from __future__ import annotations

from lab.backends import Score
from lab.errors import DataError
from lab.judges.base import (
    Judge,
    Unit,
    debias,
    pair_where,
    prob_first,
)
from lab.pair import Pair


class ReferenceJudge(Judge):
    """Pairwise 1 / 2 with a reference answer shown, both orders averaged."""

    name = "reference"
    candidates = ("1", "2")
    tokens_named = "both candidates"
    aggregation = ("the pair's reference answer shown with both responses, both presentation "
                   "orders scored; p = (p_fwd + 1 - p_swapped) / 2")
    templates = {"summarize": ("judges/reference.jinja",),
                 "dialogue": ("hh/reference.jinja",),
                 "instruction": ("instruction/reference.jinja",)}
    needs_reference = True

    def prompt_for(self, pair: Pair, swapped: bool = False, rationale: str | None = None) -> str:
        if not pair.reference:
            raise DataError(f"{pair_where(pair)} has no reference answer, which the {self.name} "
                            "judge shows; label pairs with references (rlaif label keeps only "
                            "those) or use another --judge")
        return self.render_pair(pair, swapped, reference=pair.reference)

    def units(self, pair: Pair) -> list[Unit]:
        return self.both_orders_units(pair)

    def reduce(self, unit: Unit, scores: list[list[Score]], rationales: list[list[str]] | None,
               generated: int, seconds: float) -> dict:
        (fwd,), (swapped,) = scores
        p_fwd, p_swapped = prob_first(fwd.logprobs), prob_first(swapped.logprobs)
        return {
            "p": debias(p_fwd, p_swapped),
            "p_fwd": p_fwd,
            "p_swapped": p_swapped,
            "rationales": {},
            "prompt_tokens": fwd.prompt_tokens + swapped.prompt_tokens,
            "generated_tokens": generated,
            "seconds": seconds,
        }

    def combine(self, pair: Pair, values: list[dict]) -> dict:
        (value,) = values
        return value
