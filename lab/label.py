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

import dataclasses
import hashlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

from lab.backends import Backend
from lab.cache import FIX, LabelCache, cache_key
from lab.data import Pair, pair_id
from lab.errors import BackendError, RunError
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


def precision_of(backend: Backend) -> str:
    """How a backend computes the scored logits (its ``precision``, else its dtype)."""
    precision = getattr(backend, "precision", None)
    return str(precision if precision is not None else getattr(backend, "dtype", ""))


LABEL_FIELDS = ("p", "p_fwd", "p_swapped", "rationales", "prompt_tokens", "generated_tokens",
                "seconds")


def label_problem(label: dict) -> str | None:
    """What is wrong with a label (None if nothing): each of ``p``, ``p_fwd``, ``p_swapped``
    a finite number in [0, 1], and ``p`` their debiased mean, so a flipped ``p`` shows."""
    missing = [f for f in LABEL_FIELDS if f not in label]
    if missing:
        return f"no '{missing[0]}'"
    for name in ("p", "p_fwd", "p_swapped"):
        v = label[name]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or not 0.0 <= v <= 1.0:
            return f"{name} = {v!r} is not a probability in [0, 1]"
    expected = debias(label["p_fwd"], label["p_swapped"])
    if abs(label["p"] - expected) > 1e-9:
        return f"p = {label['p']!r} is not (p_fwd + 1 - p_swapped) / 2 = {expected!r}"
    return None


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
        cache: LabelCache | None = None,
        preamble_text: str = "",
    ) -> None:
        self.backend = backend
        self.preamble_text = preamble_text
        self.prompt = prompt
        self.decode = decode
        self.exemplars = exemplars
        self.cache = cache if cache is not None else LabelCache()

    def prompt_for(self, pair: Pair, swapped: bool = False, rationale: str | None = None) -> str:
        """The full prompt string for one order of a pair (ends right before the answer)."""
        s1, s2 = (pair.second, pair.first) if swapped else (pair.first, pair.second)
        r = render(self.prompt, pair.text, s1, s2, self.exemplars, rationale, self.preamble_text)
        return self.backend.format(r.user, r.assistant)

    def too_long(self, pair: Pair) -> str | None:
        """Why the pair's prompt does not fit the model's context (None if it fits or the
        backend cannot say): the longer order, plus a rationale and the answer token."""
        limit = getattr(self.backend, "max_context", None)
        count = getattr(self.backend, "count_tokens", None)
        if not limit or count is None:
            return None
        extra = 1 + (self.decode.max_rationale_tokens + 16 if self.prompt.cot else 0)
        need = max(count(self.prompt_for(pair, swapped)) for swapped in (False, True)) + extra
        if need <= limit:
            return None
        return (f"the prompt needs {need} tokens (post of {len(pair.text)} characters), more "
                f"than the {limit}-token context of {self.backend.identity}")

    def key_for(self, pair: Pair) -> tuple[list[str], str]:
        """The prompts of both orders (no rationale) and the pair's label-cache key."""
        heads = [self.prompt_for(pair, swapped) for swapped in (False, True)]
        decoding = dataclasses.asdict(self.decode) if self.prompt.cot else None
        # the engine and how it computes the scored logits too: fp32, bf16 and bf16 with an
        # fp32 head (or transformers and vLLM) of one model give different labels
        engine = [type(self.backend).__name__, precision_of(self.backend)]
        key = cache_key(self.backend.identity, engine, heads, decoding, CANDIDATES)
        return heads, key

    def label(self, pair: Pair) -> dict:
        """Label one pair in both orders (or fetch the label from the cache).

        Returns:
            A record with ``p``, ``p_fwd``, ``p_swapped``, the human label, lengths, the
            rationales of each order, prompt and generated tokens, seconds, and whether it
            came from the cache.
        """
        return next(self.label_many([pair]))

    def label_many(self, pairs: list[Pair]) -> Iterator[dict]:
        """Label a chunk of pairs with one backend call per stage; yields records in order.

        The cache is looked up for every pair first; the pairs it does not hold are labeled
        together: one ``generate`` call for all their rationales (chain-of-thought), then one
        ``score`` call for all their prompts, so a batching backend sees the whole chunk. Each
        record (and its cache entry) is the one :meth:`label` gives for that pair alone; a
        computed pair's ``seconds`` is its share of the chunk's time. Nothing is yielded (or
        cached) until the chunk's backend calls are done, so an interrupted chunk is lost whole
        and nothing before it.
        """
        keyed = [self.key_for(pair) for pair in pairs]
        labels: dict[str, dict] = {}  # key -> label, read from the cache or computed here
        hits: list[bool] = []
        todo: list[tuple[Pair, list[str], str]] = []
        for pair, (heads, key) in zip(pairs, keyed):
            if key in labels or key in {k for _, _, k in todo}:
                hits.append(True)  # a repeat: alone, it would find its twin in the cache
                continue
            label = self.cache.get(key)
            hits.append(label is not None)
            if label is None:
                todo.append((pair, heads, key))
            elif problem := label_problem(label):
                raise RunError(f"{self.cache.name}: entry {key}: {problem}; {FIX}")
            else:
                labels[key] = label
        computed = self._compute_many(todo)
        for (pair, _, _), label in zip(todo, computed):  # all checked before any is cached
            if problem := label_problem(label):
                raise BackendError(f"{self.backend.identity} gave a bad label for the pair at "
                                   f"{pair.source or pair.key}: {problem}")
        for (_, _, key), label in zip(todo, computed):
            self.cache.put(key, label)
            labels[key] = label
        precision = precision_of(self.backend)
        seen: set[str] = set()
        for pair, (_, key), hit in zip(pairs, keyed, hits):
            if key in seen:
                labels[key] = self.cache.get(key)  # read back, as it would be alone
            seen.add(key)
            yield {
                "key": pair.key,
                "post_id": pair.post_id,
                "pair_id": pair_id(pair),
                **labels[key],
                **self._shown(pair),
                "human": pair.human,
                "confidence": pair.confidence,
                "len_first": word_count(pair.first),
                "len_second": word_count(pair.second),
                "cache_hit": hit,
                "precision": precision,
            }

    def _shown(self, pair: Pair) -> dict:
        """Which stored response is shown first (``--shuffle-order``): a seeded coin per pair.

        Both orders are scored either way, so this names the order a single-order reader
        (``alignment_presented_first_only``) takes, free of the file's order.
        """
        seed = self.prompt.shuffle_order
        if seed is None:
            return {}
        coin = int(hashlib.sha256(f"{seed}:{pair.key}".encode()).hexdigest()[:8], 16) % 2
        return {"first_shown": "second" if coin else "first"}

    def _compute_many(self, todo: list[tuple[Pair, list[str], str]]) -> list[dict]:
        """Labels of (pair, heads, key) triples: one generate and one score call for all."""
        if not todo:
            return []
        start = time.perf_counter()
        orders = ("fwd", "swapped")
        # per pair: its rationales per order, generated tokens, and the prompts it scores
        rationales: list[dict[str, list[str]]] = [{} for _ in todo]
        generated = [0] * len(todo)
        prompts: list[str] = []
        owners: list[tuple[int, str]] = []  # (pair index, order) of each scored prompt
        if self.prompt.cot:
            gens = self._rationales(todo)
            for i, (pair, _, _) in enumerate(todo):
                for order, swapped, order_gens in zip(orders, (False, True), gens[2 * i:2 * i + 2]):
                    rationales[i][order] = [g.text for g in order_gens]
                    generated[i] += sum(g.tokens for g in order_gens)
                    prompts += [self.prompt_for(pair, swapped, g.text) for g in order_gens]
                    owners += [(i, order)] * len(order_gens)
        else:
            for i, (_, heads, _) in enumerate(todo):
                prompts += heads
                owners += [(i, order) for order in orders]
        scores = self.backend.score(prompts, CANDIDATES)
        probs: list[dict[str, list[float]]] = [{"fwd": [], "swapped": []} for _ in todo]
        tokens = [0] * len(todo)
        for (i, order), score in zip(owners, scores):
            lp = score.logprobs
            bad = len(lp) != 2 or any(x is None or x != x for x in lp) or max(lp) == -math.inf
            if bad:  # a missing candidate is not p = 0.5
                pair = todo[i][0]
                raise BackendError(
                    f"{self.backend.identity} gave no usable log-probabilities of both "
                    f"candidates {CANDIDATES} for the pair at {pair.source or pair.key} "
                    f"({order} order): {lp!r}")
            probs[i][order].append(prob_first(lp))
            tokens[i] += score.prompt_tokens
        seconds = (time.perf_counter() - start) / len(todo)  # each pair's share of the chunk
        labels = []
        for i in range(len(todo)):
            p_fwd = sum(probs[i]["fwd"]) / len(probs[i]["fwd"])
            p_swapped = sum(probs[i]["swapped"]) / len(probs[i]["swapped"])
            labels.append({
                "p": debias(p_fwd, p_swapped),
                "p_fwd": p_fwd,
                "p_swapped": p_swapped,
                "rationales": rationales[i],
                "prompt_tokens": tokens[i],
                "generated_tokens": generated[i],
                "seconds": seconds,
            })
        return labels

    def _rationales(self, todo: list[tuple[Pair, list[str], str]]) -> list[list]:
        """Decoded rationales of both orders of each pair (2 entries per pair, in order).

        Each pair's rationales are seeded by its own cache key, so they do not depend on which
        other pairs share the call: one call with a seed per prompt where the backend takes
        that (``per_prompt_seeds``), else one call per pair.
        """
        d = self.decode
        seeds = [int(hashlib.sha256(f"{d.seed}:{key}".encode()).hexdigest()[:8], 16)
                 for _, _, key in todo]
        heads = [h for _, pair_heads, _ in todo for h in pair_heads]
        args = dict(n=d.samples, max_tokens=d.max_rationale_tokens, temperature=d.temperature)
        if len(todo) == 1:
            return self.backend.generate(heads, seed=seeds[0], **args)
        if getattr(self.backend, "per_prompt_seeds", False):
            return self.backend.generate(heads, seed=[s for s in seeds for _ in (0, 1)], **args)
        return [g for i, seed in enumerate(seeds)
                for g in self.backend.generate(heads[2 * i:2 * i + 2], seed=seed, **args)]
