"""Stage 4 of the pipeline: preference, the AI label of one pair, by the configured judge.

The :class:`Labeler` runs a judge (:mod:`lab.judges`, ``prompt.judge``) on pairs: it asks the
judge for each pair's *units* (the cached pieces of its label), looks each up in the label
cache, computes the missing ones with one ``generate`` call (chain-of-thought rationales) and
one ``score`` call for a whole chunk, and has the judge combine the units into the label.
Whatever the judge, ``p`` is the probability that the *first* response is better, the lab's
one preference representation.

The default judge, ``pairwise`` (:mod:`lab.judges.pairwise`), is RLAIF's (arXiv 2309.00267,
section 2): the softmax over the next-token log-probabilities of ``1`` and ``2``, both
presentation orders scored and averaged,

    p = (p_fwd + 1 - p_swapped) / 2,

where ``p_fwd`` is P("1") with the pair in its stored order and ``p_swapped`` is P("1") with
the summaries swapped. With chain-of-thought a rationale is decoded first (greedy, or N samples
at temperature T for self-consistency), appended with the ending ``Preferred Summary=``, and
the distributions of the N samples are averaged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

from lab.backends import Backend, Score
from lab.cache import FIX, LabelCache
from lab.data import Pair, pair_id
from lab.errors import BackendError, RunError
from lab.judges import Judge, Unit, judge_class
from lab.judges.base import (  # noqa: F401  (re-exported: their home before judges existed)
    LABEL_FIELDS,
    debias,
    label_problem,
    precision_of,
    prob_first,
)
from lab.judges.rating import RatingJudge
from lab.prompts import Exemplar, PromptConfig

CANDIDATES = ["1", "2"]
"""The pairwise judge's tokens (:attr:`lab.judges.pairwise.PairwiseJudge.candidates`)."""


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


def word_count(text: str) -> int:
    """Length measure used for length bias (whitespace words)."""
    return len(text.split())


class Labeler:
    """Turns a pair into an AI preference with a given backend, prompt, decoding and judge
    (``prompt.judge``)."""

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
        self.judge: Judge = judge_class(prompt.judge)(backend, prompt, decode, exemplars,
                                                      preamble_text)

    def prompt_for(self, pair: Pair, swapped: bool = False, rationale: str | None = None) -> str:
        """A full prompt of the pair (ends right before the answer): for the pairwise judges
        one order, for a rating judge the first response's rating (the second's if
        ``swapped``)."""
        return self.judge.prompt_for(pair, swapped, rationale)

    def too_long(self, pair: Pair) -> str | None:
        """Why the pair's prompt does not fit the model's context (None if it fits or the
        backend cannot say): the longest of its prompts, plus a rationale and the answer
        token."""
        limit = getattr(self.backend, "max_context", None)
        count = getattr(self.backend, "count_tokens", None)
        if not limit or count is None:
            return None
        extra = 1 + (self.decode.max_rationale_tokens + 16 if self.prompt.cot else 0)
        heads = [h for unit in self.judge.units(pair) for h in unit.heads]
        need = max(count(h) for h in heads) + extra
        if need <= limit:
            return None
        return (f"the prompt needs {need} tokens (post of {len(pair.text)} characters), more "
                f"than the {limit}-token context of {self.backend.identity}")

    def key_for(self, pair: Pair) -> tuple[list[str], str]:
        """The prompts a pair's label scores (no rationale) and its label-cache key (for a
        judge whose label is several cached units, a key made of theirs)."""
        units = self.judge.units(pair)
        heads = [h for unit in units for h in unit.heads]
        if len(units) == 1:
            return heads, units[0].key
        return heads, hashlib.sha256("\x00".join(u.key for u in units).encode()).hexdigest()

    def label(self, pair: Pair) -> dict:
        """Label one pair (or fetch its units from the cache).

        Returns:
            A record with ``p``, ``p_fwd``, ``p_swapped`` and the judge's own fields, the
            human label, lengths, the rationales of each order, prompt and generated tokens,
            seconds, and whether it came from the cache.
        """
        return next(self.label_many([pair]))

    def label_many(self, pairs: list[Pair]) -> Iterator[dict]:
        """Label a chunk of pairs with one backend call per stage; yields records in order.

        The cache is looked up for every unit of every pair first (a pairwise label is one
        unit; a rating judge's label two, one per response); the units it does not hold are
        computed together: one ``generate`` call for all their rationales (chain-of-thought),
        then one ``score`` call for all their prompts, so a batching backend sees the whole
        chunk, and a unit that several pairs share is computed once. Each record (and each
        cache entry) is the one :meth:`label` gives for that pair alone; a computed unit's
        ``seconds`` is its share of the chunk's time. Nothing is yielded (or cached) until
        the chunk's backend calls are done, so an interrupted chunk is lost whole and nothing
        before it. A record's ``cache_hit`` says that every unit of it was found.
        """
        units_of = [self.judge.units(pair) for pair in pairs]
        values: dict[str, dict] = {}  # key -> value, read from the cache or computed here
        hits: list[bool] = []
        todo: dict[str, Unit] = {}
        for units in units_of:
            found = []
            for unit in units:
                if unit.key in values or unit.key in todo:
                    found.append(True)  # a repeat: alone, it would find its twin in the cache
                    continue
                value = self.cache.get(unit.key)
                found.append(value is not None)
                if value is None:
                    todo[unit.key] = unit
                elif problem := self.judge.value_problem(value):
                    raise RunError(f"{self.cache.name}: entry {unit.key}: {problem}; {FIX}")
                else:
                    values[unit.key] = value
            hits.append(all(found))
        computed = self._compute_many(list(todo.values()))
        for unit, value in zip(todo.values(), computed):  # all checked before any is cached
            if problem := self.judge.value_problem(value):
                raise BackendError(f"{self.backend.identity} gave a bad "
                                   f"{self.judge.value_named} for {unit.subject}: {problem}")
        for key, value in zip(todo, computed):
            self.cache.put(key, value)
            values[key] = value
        precision = precision_of(self.backend)
        seen: set[str] = set()
        for pair, units, hit in zip(pairs, units_of, hits):
            for unit in units:
                if unit.key in seen:
                    values[unit.key] = self.cache.get(unit.key)  # read back, as it would be alone
                seen.add(unit.key)
            yield {
                "key": pair.key,
                "post_id": pair.post_id,
                "pair_id": pair_id(pair),
                **self.judge.combine(pair, [values[unit.key] for unit in units]),
                **self._shown(pair),
                "human": pair.human,
                "confidence": pair.confidence,
                "len_first": word_count(pair.first),
                "len_second": word_count(pair.second),
                "cache_hit": hit,
                "precision": precision,
            }

    def ratings(self, pairs: list[Pair]) -> list[float]:
        """The expected rating of each pair's *first* response, for a judge that rates each
        response alone (:class:`lab.judges.rating.RatingJudge` and its subclasses), in one
        chunk.

        Each pair is labeled as (first, first): both of its units are then the one rating of
        that response (computed once, through the label cache and the judge's units and
        reduce, with every check :meth:`label_many` makes), read back as ``rating_first``.
        The second response is neither rated nor read.
        """
        if not isinstance(self.judge, RatingJudge):
            raise RunError(f"the {self.judge.name} judge rates no response alone; ratings come "
                           "from a rating judge (rating, self-reward)")
        alone = [dataclasses.replace(p, second=p.first) for p in pairs]
        return [r["rating_first"] for r in self.label_many(alone)]

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

    def _score(self, prompts: list[str], probes: list) -> list[Score]:
        """The backend's scores of the judge's tokens; a backend that reads the item
        (``reads_probes``, the fake) also gets each prompt's :class:`lab.judges.Probe`."""
        candidates = list(self.judge.candidates)
        if getattr(self.backend, "reads_probes", False):
            return self.backend.score(prompts, candidates, probes=probes)
        return self.backend.score(prompts, candidates)

    def _compute_many(self, todo: list[Unit]) -> list[dict]:
        """Values of units: one generate and one score call for all."""
        if not todo:
            return []
        start = time.perf_counter()
        # per unit: its rationales per head, generated tokens, and the prompts it scores
        rationales: list[list[list[str]]] = [[[] for _ in unit.heads] for unit in todo]
        generated = [0] * len(todo)
        prompts: list[str] = []
        probes: list = []
        owners: list[tuple[int, int]] = []  # (unit index, head index) of each scored prompt
        if self.prompt.cot:
            gens = iter(self._rationales(todo))
            for i, unit in enumerate(todo):
                for h, probe in enumerate(unit.probes):
                    head_gens = next(gens)
                    rationales[i][h] = [g.text for g in head_gens]
                    generated[i] += sum(g.tokens for g in head_gens)
                    prompts += [self.judge.scored_prompt(unit, h, g.text) for g in head_gens]
                    probes += [dataclasses.replace(probe, rationale=g.text) for g in head_gens]
                    owners += [(i, h)] * len(head_gens)
        else:
            for i, unit in enumerate(todo):
                prompts += unit.heads
                probes += unit.probes
                owners += [(i, h) for h in range(len(unit.heads))]
        scores = self._score(prompts, probes)
        grouped: list[list[list[Score]]] = [[[] for _ in unit.heads] for unit in todo]
        n = len(self.judge.candidates)
        for (i, h), score in zip(owners, scores):
            lp = score.logprobs
            bad = len(lp) != n or any(x is None or x != x for x in lp) or max(lp) == -math.inf
            if bad:  # a missing candidate is not p = 0.5
                raise BackendError(
                    f"{self.backend.identity} gave no usable log-probabilities of "
                    f"{self.judge.tokens_named} {list(self.judge.candidates)} for "
                    f"{todo[i].where[h]}: {lp!r}")
            grouped[i][h].append(score)
        seconds = (time.perf_counter() - start) / len(todo)  # each unit's share of the chunk
        return [self.judge.reduce(unit, grouped[i], rationales[i] if self.prompt.cot else None,
                                  generated[i], seconds)
                for i, unit in enumerate(todo)]

    def _rationales(self, todo: list[Unit]) -> list[list]:
        """Decoded rationales of every head of each unit (in order).

        Each unit's rationales are seeded by its own cache key, so they do not depend on which
        other units share the call: one call with a seed per prompt where the backend takes
        that (``per_prompt_seeds``), else one call per unit.
        """
        d = self.decode
        seeds = [int(hashlib.sha256(f"{d.seed}:{unit.key}".encode()).hexdigest()[:8], 16)
                 for unit in todo]
        heads = [h for unit in todo for h in unit.heads]
        args = dict(n=d.samples, max_tokens=d.max_rationale_tokens, temperature=d.temperature)
        if len(todo) == 1:
            return self.backend.generate(heads, seed=seeds[0], **args)
        if getattr(self.backend, "per_prompt_seeds", False):
            return self.backend.generate(
                heads, seed=[s for unit, s in zip(todo, seeds) for _ in unit.heads], **args)
        return [g for unit, seed in zip(todo, seeds)
                for g in self.backend.generate(list(unit.heads), seed=seed, **args)]
