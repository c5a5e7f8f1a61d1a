"""The pairwise judge: which of two responses is better, read off the tokens ``1`` and ``2``.

As in RLAIF (arXiv 2309.00267, section 2): the preference is the softmax over the next-token
log-probabilities of ``1`` and ``2``. Both presentation orders are scored and averaged,

    p = (p_fwd + 1 - p_swapped) / 2,

where ``p_fwd`` is P("1") with the pair in its stored order and ``p_swapped`` is P("1") with
the responses swapped. With chain-of-thought a rationale is decoded first (greedy, or N samples
at temperature T for self-consistency), appended with the ending ``Preferred Summary=``, and
the distributions of the N samples are averaged. The prompt is ``prompts/labeler.jinja`` with
the chosen preamble, exemplars and ending (:func:`lab.prompts.render`).

One unit per pair, cached under the key the lab has always used (model identity, engine, both
rendered prompts, decoding settings with CoT, the candidates), so the label caches written
before judges existed stay valid. Cost: 2 prompts per pair (2 x samples with CoT, plus the
rationales' generation).
"""

from __future__ import annotations

import dataclasses

from lab.backends import Score
from lab.cache import cache_key
from lab.judges.base import (
    ORDERS,
    Judge,
    Unit,
    both_orders_unit,
    debias,
    engine_of,
    prob_first,
)
from lab.pair import Pair
from lab.prompts import render


class PairwiseJudge(Judge):
    """Pairwise comparison on ``1`` / ``2``, both orders averaged (the lab's first judge)."""

    name = "pairwise"
    candidates = ("1", "2")
    tokens_named = "both candidates"
    aggregation = ("both presentation orders scored (with chain-of-thought, each order's "
                   "P('1') averaged over its rationale samples); p = (p_fwd + 1 - p_swapped) / 2")
    templates = {"summarize": ("labeler.jinja", "ending/direct.jinja", "ending/cot.jinja"),
                 "dialogue": ("hh/pairwise.jinja",),
                 "instruction": ("instruction/pairwise.jinja",)}
    reads_preamble = True
    reads_exemplars = True
    decodes_rationales = True

    def prompt_for(self, pair: Pair, swapped: bool = False, rationale: str | None = None) -> str:
        if pair.task != "summarize":  # the other families' own template, no preamble
            return self.render_pair(pair, swapped)
        s1, s2 = (pair.second, pair.first) if swapped else (pair.first, pair.second)
        r = render(self.prompt, pair.text, s1, s2, self.exemplars, rationale, self.preamble_text)
        return self.format(r.user, r.assistant)

    def units(self, pair: Pair) -> list[Unit]:
        heads = [self.prompt_for(pair, swapped) for swapped in (False, True)]
        decoding = dataclasses.asdict(self.decode) if self.prompt.cot else None
        key = cache_key(self.backend.identity, engine_of(self.backend), heads, decoding,
                        list(self.candidates))
        return [both_orders_unit(pair, heads, key)]

    def scored_prompt(self, unit: Unit, head: int, rationale: str) -> str:
        return self.prompt_for(unit.pair, head == 1, rationale)

    def reduce(self, unit: Unit, scores: list[list[Score]], rationales: list[list[str]] | None,
               generated: int, seconds: float) -> dict:
        p_fwd, p_swapped = (sum(prob_first(s.logprobs) for s in ss) / len(ss) for ss in scores)
        return {
            "p": debias(p_fwd, p_swapped),
            "p_fwd": p_fwd,
            "p_swapped": p_swapped,
            "rationales": dict(zip(ORDERS, rationales)) if rationales is not None else {},
            "prompt_tokens": sum(s.prompt_tokens for ss in scores for s in ss),
            "generated_tokens": generated,
            "seconds": seconds,
        }

    def combine(self, pair: Pair, values: list[dict]) -> dict:
        (value,) = values
        return value
