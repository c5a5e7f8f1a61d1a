"""Stage 4 of the pipeline: preference, the AI label of one pair.

As in RLAIF (arXiv 2309.00267, section 2): the preference is the softmax over the next-token
log-probabilities of ``1`` and ``2``. Both presentation orders are scored and averaged,

    p = (p_fwd + 1 - p_swapped) / 2,

where ``p_fwd`` is P("1") with the pair in its stored order and ``p_swapped`` is P("1") with
the summaries swapped; so ``p`` is the probability that the *first* response is better, the
lab's one preference representation. With chain-of-thought a rationale is decoded first
(greedy, or N samples at temperature T for self-consistency), appended with the ending
``Preferred Summary=``, and the distributions of the N samples are averaged.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from lab.backends import Backend
from lab.data import Pair
from lab.prompts import Exemplar, PromptConfig, render

CANDIDATES = ["1", "2"]


@dataclass(frozen=True)
class DecodeConfig:
    """How rationales are decoded (chain-of-thought and self-consistency)."""

    samples: int = 1
    """Rationales per presentation order; more than 1 is self-consistency."""
    temperature: float = 0.0
    """0 decodes greedily; self-consistency needs > 0."""
    max_rationale_tokens: int = 96
    """Longest rationale decoded."""
    seed: int = 0
    """Seed of the sampled rationales."""


def prob_first(logprobs: tuple[float, ...]) -> float:
    """Softmax over the log-probs of '1' and '2': the probability of '1'."""
    a, b = logprobs
    m = max(a, b)
    ea, eb = math.exp(a - m), math.exp(b - m)
    return ea / (ea + eb)


def debias(p_fwd: float, p_swapped: float) -> float:
    """Average both orders: P(first better) = (p_fwd + 1 - p_swapped) / 2."""
    return (p_fwd + (1.0 - p_swapped)) / 2.0


def word_count(text: str) -> int:
    """Length measure used for length bias (whitespace words)."""
    return len(text.split())


class Labeler:
    """Turns a pair into an AI preference with a given backend, prompt and decoding."""

    def __init__(
        self,
        backend: Backend,
        prompt: PromptConfig,
        decode: DecodeConfig,
        exemplars: list[Exemplar],
    ) -> None:
        self.backend = backend
        self.prompt = prompt
        self.decode = decode
        self.exemplars = exemplars

    def prompt_for(self, pair: Pair, swapped: bool = False, rationale: str | None = None) -> str:
        """The full prompt string for one order of a pair (ends right before the answer)."""
        s1, s2 = (pair.second, pair.first) if swapped else (pair.first, pair.second)
        r = render(self.prompt, pair.text, s1, s2, self.exemplars, rationale)
        return self.backend.format(r.user, r.assistant)

    def _rationales(self, pair: Pair, swapped: bool) -> tuple[list[str], int]:
        d = self.decode
        seed = int(hashlib.sha256(f"{d.seed}:{pair.key}:{swapped}".encode()).hexdigest()[:8], 16)
        gens = self.backend.generate(
            self.prompt_for(pair, swapped), n=d.samples, max_tokens=d.max_rationale_tokens,
            temperature=d.temperature, seed=seed,
        )
        return [g.text for g in gens], sum(g.tokens for g in gens)

    def label(self, pair: Pair) -> dict:
        """Label one pair in both orders.

        Returns:
            A record with ``p``, ``p_fwd``, ``p_swapped``, the human label, lengths, the
            rationales of each order, prompt and generated tokens, and seconds.
        """
        start = time.perf_counter()
        prompts, owners, rationales, generated = [], [], {}, 0
        for order, swapped in (("fwd", False), ("swapped", True)):
            if self.prompt.cot:
                texts, tokens = self._rationales(pair, swapped)
                rationales[order] = texts
                generated += tokens
                prompts += [self.prompt_for(pair, swapped, t) for t in texts]
                owners += [order] * len(texts)
            else:
                prompts.append(self.prompt_for(pair, swapped))
                owners.append(order)
        scores = self.backend.score(prompts, CANDIDATES)
        per_order = {"fwd": [], "swapped": []}
        for owner, score in zip(owners, scores):
            per_order[owner].append(prob_first(score.logprobs))
        p_fwd = sum(per_order["fwd"]) / len(per_order["fwd"])
        p_swapped = sum(per_order["swapped"]) / len(per_order["swapped"])
        return {
            "key": pair.key,
            "post_id": pair.post_id,
            "p": debias(p_fwd, p_swapped),
            "p_fwd": p_fwd,
            "p_swapped": p_swapped,
            "human": pair.human,
            "confidence": pair.confidence,
            "len_first": word_count(pair.first),
            "len_second": word_count(pair.second),
            "rationales": rationales,
            "prompt_tokens": sum(s.prompt_tokens for s in scores),
            "generated_tokens": generated,
            "seconds": time.perf_counter() - start,
        }
