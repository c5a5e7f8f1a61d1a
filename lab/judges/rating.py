"""The rating judge: each response rated alone on a 1-9 scale, the pair's p from the ratings.

The prompt (``prompts/judges/rating.jinja``) shows the post and one summary and asks for a
rating from 1 to 9; the rating is the expected value under the softmax of the next-token
log-probabilities of the scale tokens ``1`` ... ``9`` (G-Eval style: a soft score, not the
argmax digit),

    s = sum_k v_k softmax(logprobs)_k,

and the pair's preference is the rating difference mapped onto [0, 1],

    p = 0.5 + (s_first - s_second) / (2 (max - min)),   for 1-9: p = 0.5 + (s1 - s2) / 16,

so equal ratings give 0.5 and the best against the worst possible rating gives 1. A response's
rating is one unit, cached by its own key (judge name, model identity, engine, the rendered
prompt, the scale tokens): it is computed once and serves every pair it appears in. Nothing
depends on which response is called first, so the position bias is 0 by construction:
p(a, b) = 1 - p(b, a) exactly (the rule below is written so that floating point keeps it). The
record keeps ``rating_first`` and ``rating_second``; ``p_fwd = p`` and ``p_swapped = 1 - p``
(there is no second order to score), so ``p = (p_fwd + 1 - p_swapped) / 2`` holds as for every
judge. Cost: 2 prompts per pair, fewer where responses repeat.
"""

from __future__ import annotations

import math

from lab.backends import Score
from lab.cache import cache_key
from lab.judges.base import Judge, Probe, Unit, engine_of, pair_where, softmax
from lab.pair import Pair
from lab.prompts import render_parts


def expected_rating(logprobs: tuple[float, ...], values: tuple[int, ...]) -> tuple[float, list]:
    """The expected rating under the softmax of the scale tokens' log-probs, and the
    probabilities: (sum_k v_k P_k, [P_k])."""
    probs = softmax(logprobs)
    return sum(v * q for v, q in zip(values, probs)), probs


def rating_preference(s_first: float, s_second: float, span: float) -> float:
    """P(first better) from two ratings on a scale of width ``span`` (max - min):
    0.5 + (s_first - s_second) / (2 span).

    Computed as ``1 - (0.5 + |d|)`` when the second is rated higher, so that swapping the
    responses gives exactly 1 - p in floating point too.
    """
    d = (s_first - s_second) / (2 * span)
    return 0.5 + d if d >= 0 else 1.0 - (0.5 - d)


class RatingJudge(Judge):
    """Each response rated alone on a 1-9 scale; p from the expected ratings' difference."""

    name = "rating"
    candidates = tuple(str(v) for v in range(1, 10))
    tokens_named = "the scale tokens"
    value_named = "rating"
    aggregation = ("each response rated alone, s = expected rating over the scale tokens 1-9; "
                   "p = 0.5 + (s_first - s_second) / 16; no presentation order")
    templates = {"summarize": ("judges/rating.jinja",), "dialogue": ("hh/rating.jinja",),
                 "instruction": ("instruction/rating.jinja",)}

    @property
    def values(self) -> tuple[int, ...]:
        """The scale tokens as numbers."""
        return tuple(int(c) for c in self.candidates)

    def rating_prompt(self, pair: Pair, response: str) -> str:
        """The full prompt that rates one response of a pair (its family's template)."""
        r = render_parts(self.template(pair), text=pair.text, response=response,
                         **self.extra(pair))
        return self.format(r.user, r.assistant)

    def extra(self, pair: Pair) -> dict:
        """Variables a subclass's templates read besides ``text`` and ``response``."""
        return {}

    def prompt_for(self, pair: Pair, swapped: bool = False, rationale: str | None = None) -> str:
        return self.rating_prompt(pair, pair.second if swapped else pair.first)

    def units(self, pair: Pair) -> list[Unit]:
        return [self._unit(pair, "first", pair.first), self._unit(pair, "second", pair.second)]

    def _unit(self, pair: Pair, which: str, response: str) -> Unit:
        prompt = self.rating_prompt(pair, response)
        key = cache_key(self.name, self.backend.identity, engine_of(self.backend), prompt,
                        list(self.candidates))
        subject = f"the {which} response of {pair_where(pair)}"
        return Unit(key=key, heads=(prompt,), probes=(Probe(pair.text, (response,)),),
                    where=(subject,), subject=subject, pair=pair)

    def reduce(self, unit: Unit, scores: list[list[Score]], rationales: list[list[str]] | None,
               generated: int, seconds: float) -> dict:
        ((score,),) = scores
        rating, probs = expected_rating(score.logprobs, self.values)
        return {"rating": rating, "probs": probs, "prompt_tokens": score.prompt_tokens,
                "generated_tokens": generated, "seconds": seconds}

    def value_problem(self, value: dict) -> str | None:
        for name in ("rating", "probs", "prompt_tokens", "generated_tokens", "seconds"):
            if name not in value:
                return f"no '{name}'"
        v, lo, hi = value["rating"], min(self.values), max(self.values)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or not lo - 1e-9 <= v <= hi + 1e-9:
            return f"rating = {v!r} is not a number in [{lo}, {hi}]"
        if not isinstance(value["probs"], list) or len(value["probs"]) != len(self.values):
            return f"probs is not a list of {len(self.values)} probabilities"
        return None

    def combine(self, pair: Pair, values: list[dict]) -> dict:
        first, second = values
        span = max(self.values) - min(self.values)
        p = rating_preference(first["rating"], second["rating"], span)
        return {
            "p": p,
            "p_fwd": p,
            "p_swapped": 1.0 - p,
            "rating_first": first["rating"],
            "rating_second": second["rating"],
            "rationales": {},
            "prompt_tokens": first["prompt_tokens"] + second["prompt_tokens"],
            "generated_tokens": first["generated_tokens"] + second["generated_tokens"],
            "seconds": first["seconds"] + second["seconds"],
        }
