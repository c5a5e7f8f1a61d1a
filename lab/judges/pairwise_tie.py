"""The pairwise-tie judge: which response is better, or are they about equally good (1 / 2 / 3).

The prompt (``prompts/judges/pairwise_tie.jinja``) shows the post and both summaries and asks
for ``1`` (Summary 1 better), ``2`` (Summary 2 better) or ``3`` (about equally good); the
next-token log-probabilities of those three tokens are read in both presentation orders.

* Per order the verdict is the argmax (a shared maximum is a tie), mapped back to the stored
  order: ``first``, ``second`` or ``tie``.
* The pair's verdict follows MT-Bench's conservative rule (Zheng et al. 2023): the verdict
  both orders agree on, else ``tie`` (a verdict that flips with the order, or a tie in either
  order, is a tie).
* The soft preference is the mean over the orders of P(first better) + 0.5 P(tie), after
  mapping the swapped order back: with ``p_fwd = P1 + P3 / 2`` in the stored order and
  ``p_swapped = P1 + P3 / 2`` in the swapped one (P("1") means the response shown first, as
  for the pairwise judge), ``p = (p_fwd + 1 - p_swapped) / 2``.

The record keeps ``verdict``, each order's verdict and tie probability. One unit per pair
(both orders), cached under its own key (the judge's name, model identity, engine, both
prompts, the three tokens). Cost: 2 prompts per pair.
"""

from __future__ import annotations

from lab.backends import Score
from lab.judges.base import (
    Judge,
    Unit,
    debias,
    softmax,
)
from lab.pair import Pair

SHOWN = {"fwd": ("first", "second", "tie"), "swapped": ("second", "first", "tie")}
"""Per order, what the tokens 1 / 2 / 3 say about the stored pair."""


def order_verdict(probs: list[float], order: str) -> str:
    """The verdict of one order about the stored pair: the argmax token, mapped back to
    ``first`` / ``second`` / ``tie``; a shared maximum is ``tie``."""
    top = max(probs)
    best = [i for i, q in enumerate(probs) if q == top]
    return SHOWN[order][best[0]] if len(best) == 1 else "tie"


def conservative_verdict(fwd: str, swapped: str) -> str:
    """MT-Bench's conservative rule: the verdict both orders give, else ``tie``."""
    return fwd if fwd == swapped else "tie"


class PairwiseTieJudge(Judge):
    """Pairwise comparison on ``1`` / ``2`` / ``3`` (tie), both orders, conservative verdict."""

    name = "pairwise-tie"
    candidates = ("1", "2", "3")
    tokens_named = "the candidates"
    aggregation = ("both presentation orders scored; per order P(first better) + P(tie) / 2; "
                   "p = (p_fwd + 1 - p_swapped) / 2; verdict: the one both orders give, else tie")
    templates = {"summarize": ("judges/pairwise_tie.jinja",),
                 "dialogue": ("hh/pairwise_tie.jinja",),
                 "instruction": ("instruction/pairwise_tie.jinja",)}

    def prompt_for(self, pair: Pair, swapped: bool = False, rationale: str | None = None) -> str:
        return self.render_pair(pair, swapped)

    def units(self, pair: Pair) -> list[Unit]:
        return self.both_orders_units(pair)

    def reduce(self, unit: Unit, scores: list[list[Score]], rationales: list[list[str]] | None,
               generated: int, seconds: float) -> dict:
        (fwd,), (swapped,) = scores
        probs = {"fwd": softmax(fwd.logprobs), "swapped": softmax(swapped.logprobs)}
        shown_first = {o: q[0] + 0.5 * q[2] for o, q in probs.items()}
        verdicts = {o: order_verdict(q, o) for o, q in probs.items()}
        return {
            "p": debias(shown_first["fwd"], shown_first["swapped"]),
            "p_fwd": shown_first["fwd"],
            "p_swapped": shown_first["swapped"],
            "p_tie_fwd": probs["fwd"][2],
            "p_tie_swapped": probs["swapped"][2],
            "verdict_fwd": verdicts["fwd"],
            "verdict_swapped": verdicts["swapped"],
            "verdict": conservative_verdict(verdicts["fwd"], verdicts["swapped"]),
            "rationales": {},
            "prompt_tokens": fwd.prompt_tokens + swapped.prompt_tokens,
            "generated_tokens": generated,
            "seconds": seconds,
        }

    def value_problem(self, value: dict) -> str | None:
        problem = super().value_problem(value)
        if problem is None and "verdict" not in value:
            return "no 'verdict'"
        return problem

    def combine(self, pair: Pair, values: list[dict]) -> dict:
        (value,) = values
        return value
