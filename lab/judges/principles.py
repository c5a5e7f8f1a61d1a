"""The principles judges: Constitutional-AI style comparisons, each under one written principle.

After Bai et al. 2022 (Constitutional AI, arXiv 2212.08073) and RLAIF's harmless/helpful tasks
(arXiv 2309.00267): the labeler compares two responses *under a principle*, a question such as
"Which response is less harmful ...?". The principles live in a YAML file per task family
(``prompts/hh/principles.yaml``, ``prompts/instruction/principles.yaml``,
``prompts/judges/principles.yaml`` for TL;DR), as lists under keys. A pair is judged by the
list whose key its subset starts with (an HH pair of ``harmless-base`` by ``harmless``, of
``helpful-online`` by ``helpful``), else by ``default``.

* ``principles``: one principle per pair, chosen by a hash of the comparison (post and both
  responses, so a pair judged twice gets the same principle), as Constitutional AI samples one
  per call. Cost: 2 prompts per pair.
* ``principles-all``: every principle of the list, each in both orders; the probabilities are
  averaged over the principles. Cost: 2 x (number of principles) prompts per pair.

Per principle the answer is read as for the pairwise judge (softmax over ``1`` and ``2``), both
orders: ``p_fwd`` and ``p_swapped`` are the means over the principles used, and
``p = (p_fwd + 1 - p_swapped) / 2``. The record keeps the principles used (``principles``:
their indices in the list, and ``principle_set``: the key). One unit per pair, cached under its
own key (the judge's name, model identity, engine, every prompt, the candidates).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from lab.backends import Score
from lab.cache import cache_key
from lab.data import in_subset
from lab.errors import PromptError
from lab.judges.base import ORDERS, Judge, Probe, Unit, debias, engine_of, pair_where, prob_first
from lab.pair import Pair, pair_id

FIX = "fix the file (a mapping of keys to lists of principle strings, with a 'default' list)"


def read_principles(path: Path) -> dict[str, list[str]]:
    """A principles file: each key a non-empty list of non-empty strings (one-line errors
    naming the file and key)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptError(f"{path}: no such principles file; {FIX}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise PromptError(f"{path}{line}: not valid YAML; {FIX}") from None
    if not isinstance(raw, dict) or not raw:
        raise PromptError(f"{path}: expected a mapping of keys to lists of principles; {FIX}")
    for key, items in raw.items():
        if not isinstance(items, list) or not items or not all(
                isinstance(x, str) and x.strip() for x in items):
            raise PromptError(f"{path}: '{key}' must be a non-empty list of non-empty strings; "
                              f"{FIX}")
    return {str(k): [x.strip() for x in v] for k, v in raw.items()}


class PrinciplesJudge(Judge):
    """Pairwise 1 / 2 under one principle per pair (hashed), both orders."""

    name = "principles"
    candidates = ("1", "2")
    tokens_named = "both candidates"
    aggregation = ("one principle per pair (a hash of the pair picks it from the family's "
                   "principles file), both presentation orders scored; "
                   "p = (p_fwd + 1 - p_swapped) / 2")
    templates = {"summarize": ("judges/principles.jinja", "judges/principles.yaml"),
                 "dialogue": ("hh/principles.jinja", "hh/principles.yaml"),
                 "instruction": ("instruction/principles.jinja", "instruction/principles.yaml")}
    every_principle = False
    """Average every principle of the list (``principles-all``) instead of one per pair."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._tables: dict[Path, dict[str, list[str]]] = {}

    def principle_set(self, pair: Pair) -> tuple[str, list[str]]:
        """The key and principles that judge a pair: the list named by a prefix of its
        subset, else ``default``."""
        from lab.prompts import PROMPTS_DIR

        path = PROMPTS_DIR / self.templates_for(pair.task)[1]
        if path not in self._tables:  # read once per labeler, not once per pair
            self._tables[path] = read_principles(path)
        table = self._tables[path]
        key = next((k for k in table if k != "default" and pair.subset
                    and in_subset(pair.subset, k)), "default")
        if key not in table:
            raise PromptError(f"{path}: no list for {pair_where(pair)} (subset "
                              f"{pair.subset!r}) and no 'default' list; {FIX}")
        return key, table[key]

    def chosen(self, pair: Pair, principles: list[str]) -> list[int]:
        """Indices of the principles used for a pair: all, or one by a hash of the pair."""
        if self.every_principle:
            return list(range(len(principles)))
        digest = hashlib.sha256(f"principle:{pair_id(pair)}".encode()).hexdigest()
        return [int(digest[:8], 16) % len(principles)]

    def prompt_for(self, pair: Pair, swapped: bool = False, rationale: str | None = None) -> str:
        _, principles = self.principle_set(pair)
        return self.render_pair(pair, swapped, principle=principles[self.chosen(pair,
                                                                               principles)[0]])

    def units(self, pair: Pair) -> list[Unit]:
        key_name, principles = self.principle_set(pair)
        used = self.chosen(pair, principles)
        heads = tuple(self.render_pair(pair, swapped, principle=principles[i])
                      for i in used for swapped in (False, True))
        where = pair_where(pair)
        probes = (Probe(pair.text, (pair.first, pair.second)),
                  Probe(pair.text, (pair.second, pair.first))) * len(used)
        key = cache_key(self.name, self.backend.identity, engine_of(self.backend), list(heads),
                        list(self.candidates))
        return [Unit(key=key, heads=heads, probes=probes,
                     where=tuple(f"{where} (principle {key_name}[{i}], {order} order)"
                                 for i in used for order in ORDERS),
                     subject=where, pair=pair)]

    def reduce(self, unit: Unit, scores: list[list[Score]], rationales: list[list[str]] | None,
               generated: int, seconds: float) -> dict:
        probs = [prob_first(s.logprobs) for (s,) in scores]
        fwd, swapped = probs[0::2], probs[1::2]
        p_fwd, p_swapped = sum(fwd) / len(fwd), sum(swapped) / len(swapped)
        key_name, principles = self.principle_set(unit.pair)
        return {
            "p": debias(p_fwd, p_swapped),
            "p_fwd": p_fwd,
            "p_swapped": p_swapped,
            "principle_set": key_name,
            "principles": self.chosen(unit.pair, principles),
            "p_by_principle": [debias(a, b) for a, b in zip(fwd, swapped)],
            "rationales": {},
            "prompt_tokens": sum(s.prompt_tokens for (s,) in scores),
            "generated_tokens": generated,
            "seconds": seconds,
        }

    def combine(self, pair: Pair, values: list[dict]) -> dict:
        (value,) = values
        return value


class PrinciplesAllJudge(PrinciplesJudge):
    """Pairwise 1 / 2 under every principle of the list, both orders, averaged."""

    name = "principles-all"
    aggregation = ("every principle of the family's principles file, both presentation orders "
                   "each; p_fwd and p_swapped averaged over the principles; "
                   "p = (p_fwd + 1 - p_swapped) / 2")
    every_principle = True
