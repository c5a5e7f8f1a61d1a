"""What a judge is: the contract between the labeler and one way of reading a preference.

A judge turns an item (:class:`lab.pair.Pair`) into *units*, the cached pieces of its label:
each unit is one or more prompts (its *heads*), scored on the next-token log-probabilities of
the judge's tokens, and reduced to a cached value; the pair's label is then combined from its
units' values. The pairwise judge has one unit per pair (both orders: today's label and cache
key); a rating judge has one unit per *response*, so a response's rating is computed once and
serves every pair it appears in.

Every prompt travels with a :class:`Probe`: the same item as data (the text, the response(s) in
the order shown, a decoded rationale). Real backends never see it; a backend that sets
``reads_probes = True`` (the fake) gets it as ``score(prompts, candidates, probes=...)`` and
computes its answer from the item instead of parsing the prompt text.

Every label, whatever the judge, keeps the lab's one preference representation: ``p`` is the
probability that the *first* response is better, with ``p_fwd`` and ``p_swapped`` such that
``p = (p_fwd + 1 - p_swapped) / 2`` (:func:`label_problem` checks it).

Prompts come in *task families*, one per kind of item (:data:`FAMILIES`: the pair's ``task``):
summaries of a post (TL;DR), dialogue replies (HH-RLHF), and answers to an instruction (LLMBar,
MT-Bench, PandaLM, Auto-J). A judge lists its templates per family (:attr:`Judge.templates`);
each family's templates live in its own folder under ``prompts/`` and receive the same
variables: ``text`` and either ``response`` (a rating) or ``response_1``/``response_2`` (a
comparison; the TL;DR templates call them ``summary_1``/``summary_2``), plus ``reference`` or
``principle`` for the judges that show one. A new family is a folder of templates plus a line
per judge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from lab.backends import Backend, Score
from lab.cache import cache_key
from lab.errors import ConfigError
from lab.pair import Pair
from lab.prompts import render_parts

if TYPE_CHECKING:
    from lab.prompts import Exemplar, PromptConfig  # noqa: F401  (annotations only)


FAMILIES = {
    "summarize": "a post and its summaries (TL;DR): prompts/*.jinja and prompts/judges/",
    "dialogue": "a dialogue and the assistant's next reply (HH-RLHF): prompts/hh/",
    "instruction": "an instruction and its answers (LLMBar, MT-Bench, PandaLM, Auto-J): "
                   "prompts/instruction/",
}
"""The task families (a pair's ``task``) and where their templates live."""


@dataclass(frozen=True)
class Probe:
    """What one scored prompt shows the model, as data (for backends that read the item)."""

    text: str
    """The post (or dialogue, instruction) the responses answer."""
    responses: tuple[str, ...]
    """The responses the prompt shows, in the order shown: two for a comparison, one for a
    rating."""
    rationale: str | None = None
    """The decoded rationale the prompt ends with (chain-of-thought), None before or without."""


@dataclass(frozen=True)
class Unit:
    """One cached piece of a label: the prompts it scores and the key it is cached under."""

    key: str
    """Label-cache key (:func:`lab.cache.cache_key` of everything the value depends on)."""
    heads: tuple[str, ...]
    """The prompts scored, before any rationale (both orders of a pair, or one rating)."""
    probes: tuple[Probe, ...]
    """The item as each head shows it (one per head)."""
    where: tuple[str, ...]
    """Per head, what it scores, for messages (``the pair at FILE:LINE (fwd order)``)."""
    subject: str
    """What the unit is about, for messages (``the pair at FILE:LINE``)."""
    pair: Pair
    """The pair that asked for it (the first, when pairs share the unit)."""


def pair_where(pair: Pair) -> str:
    """How messages name a pair: ``the pair at FILE:LINE`` (its key where it has no source)."""
    return f"the pair at {pair.source or pair.key}"


ORDERS = ("fwd", "swapped")
"""The two presentation orders of a pair, as records and messages name them."""


def both_orders_unit(pair: Pair, heads: list[str], key: str) -> Unit:
    """The one unit of a judge that scores a pair in both orders (pairwise, pairwise-tie):
    its two prompts, a probe per order and where each order comes from."""
    where = pair_where(pair)
    return Unit(
        key=key, heads=tuple(heads),
        probes=(Probe(pair.text, (pair.first, pair.second)),
                Probe(pair.text, (pair.second, pair.first))),
        where=tuple(f"{where} ({order} order)" for order in ORDERS),
        subject=where, pair=pair,
    )


def precision_of(backend: Backend) -> str:
    """How a backend computes the scored logits (its ``precision``, else its dtype)."""
    precision = getattr(backend, "precision", None)
    return str(precision if precision is not None else getattr(backend, "dtype", ""))


def engine_of(backend: Backend) -> list[str]:
    """The engine part of a cache key: the backend class and how it computes the scored
    logits (fp32, bf16 and bf16 with an fp32 head, or transformers and vLLM, of one model
    give different labels)."""
    return [type(backend).__name__, precision_of(backend)]


def softmax(logprobs: tuple[float, ...]) -> list[float]:
    """Softmax of log-probabilities (renormalised over just these tokens)."""
    m = max(logprobs)
    e = [math.exp(x - m) for x in logprobs]
    total = sum(e)
    return [x / total for x in e]


def prob_first(logprobs: tuple[float, ...]) -> float:
    """Softmax over the log-probs of '1' and '2': the probability of '1'."""
    a, b = logprobs
    m = max(a, b)
    ea, eb = math.exp(a - m), math.exp(b - m)
    return ea / (ea + eb)


def debias(p_fwd: float, p_swapped: float) -> float:
    """Average both orders: P(first better) = (p_fwd + 1 - p_swapped) / 2."""
    return (p_fwd + (1.0 - p_swapped)) / 2.0


LABEL_FIELDS = ("p", "p_fwd", "p_swapped", "rationales", "prompt_tokens", "generated_tokens",
                "seconds")
VERDICTS = ("first", "second", "tie")


def label_problem(label: dict) -> str | None:
    """What is wrong with a label (None if nothing): each of ``p``, ``p_fwd``, ``p_swapped``
    a finite number in [0, 1], and ``p`` their debiased mean, so a flipped ``p`` shows; a
    ``verdict`` (pairwise-tie judge), where there is one, one of first, second, tie."""
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
    if "verdict" in label and label["verdict"] not in VERDICTS:
        return f"verdict = {label['verdict']!r} is not one of {', '.join(VERDICTS)}"
    return None


class Judge:
    """How an item becomes prompts, which tokens are read, and how they aggregate into p.

    A judge is built per labeler with the backend (for chat formatting and cache keys), the
    prompt and decode configs and the few-shot exemplars. Subclasses set the class attributes
    and implement :meth:`units`, :meth:`reduce` and :meth:`combine` (and :meth:`prompt_for`).
    """

    name: ClassVar[str]
    """Registry name (``--judge NAME``)."""
    candidates: ClassVar[tuple[str, ...]]
    """The next tokens whose log-probabilities are read (each a single token)."""
    tokens_named: ClassVar[str] = "the candidates"
    """How messages name the candidates (``both candidates``, ``the scale tokens``)."""
    value_named: ClassVar[str] = "label"
    """How messages name a unit's value (``label``, ``rating``)."""
    aggregation: ClassVar[str]
    """How its presentation orders or responses aggregate into p, in one line (what
    ``rlaif export`` records as the exported judge's ``aggregation``)."""
    templates: ClassVar[dict[str, tuple[str, ...]]]
    """Per task family (:data:`FAMILIES`), the files under ``prompts/`` its prompts are
    rendered from, the one it renders first (their static includes are followed; a ``.yaml``
    is data the judge reads): a run folder records their digests."""
    reads_preamble: ClassVar[bool] = False
    """Whether its TL;DR prompts include ``prompt.preamble`` (and the preamble's file is
    recorded). The other families' templates read no preamble, exemplars or rationale."""
    reads_exemplars: ClassVar[bool] = False
    """Whether its TL;DR prompts show few-shot exemplars (``prompt.shots``)."""
    decodes_rationales: ClassVar[bool] = False
    """Whether its TL;DR prompts have a chain-of-thought ending (``prompt.cot``)."""
    needs_reference: ClassVar[bool] = False
    """Whether it shows a reference answer (pairs without one cannot be judged)."""

    def __init__(self, backend: Backend, prompt: PromptConfig, decode, exemplars: list[Exemplar],
                 preamble_text: str = "") -> None:
        self.backend = backend
        self.prompt = prompt
        self.decode = decode
        self.exemplars = exemplars
        self.preamble_text = preamble_text

    @classmethod
    def templates_for(cls, task: str, source: str = "config") -> tuple[str, ...]:
        """Its templates for a task family; a family it has none for is a one-line error."""
        if task not in cls.templates:
            raise ConfigError(f"{source}: the {cls.name} judge has no prompts for {task} pairs "
                              f"({FAMILIES.get(task, 'an unknown family')}); it judges "
                              f"{', '.join(cls.templates)} pairs")
        return cls.templates[task]

    @classmethod
    def check_prompt(cls, prompt: PromptConfig, source: str, task: str = "summarize") -> None:
        """Refuse prompt settings this judge does not read for a task family (one line naming
        the setting)."""
        templates = cls.templates_for(task, source)
        summarize = task == "summarize"
        what = f"{source}: the {cls.name} judge" + ("" if summarize else f" on {task} pairs")
        fix = " or use --judge pairwise" if summarize else " (only TL;DR prompts have them)"
        if prompt.cot and not (cls.decodes_rationales and summarize):
            raise ConfigError(f"{what} has no chain-of-thought ending; drop prompt.cot "
                              f"(--no-cot){fix}")
        if prompt.shots and not (cls.reads_exemplars and summarize):
            raise ConfigError(f"{what} shows no few-shot exemplars; set prompt.shots to 0{fix}")
        from lab.prompts import PromptConfig

        default = PromptConfig().preamble
        if prompt.preamble != default and not (cls.reads_preamble and summarize):
            raise ConfigError(f"{what} has its own prompt ({', '.join(templates)}) and "
                              f"reads no preamble; leave prompt.preamble at {default!r}")

    def template(self, pair: Pair) -> str:
        """The template a pair's prompts are rendered from (the first of its family's)."""
        return self.templates_for(pair.task)[0]

    def render_pair(self, pair: Pair, swapped: bool = False, **extra) -> str:
        """A full comparison prompt of a pair from its family's template: ``text`` and the
        two responses in the order shown (as ``response_1``/``response_2``, and as
        ``summary_1``/``summary_2`` for the TL;DR templates), plus ``extra`` variables."""
        s1, s2 = (pair.second, pair.first) if swapped else (pair.first, pair.second)
        r = render_parts(self.template(pair), text=pair.text, response_1=s1, response_2=s2,
                         summary_1=s1, summary_2=s2, **extra)
        return self.format(r.user, r.assistant)

    def units(self, pair: Pair) -> list[Unit]:
        """The cached pieces of a pair's label, in the order :meth:`combine` takes them."""
        raise NotImplementedError

    def both_orders_units(self, pair: Pair) -> list[Unit]:
        """The one unit of a judge that scores :meth:`prompt_for` in both orders, cached
        under its own key: the judge's name, the model identity, the engine, both prompts and
        the candidates (pairwise-tie, reference)."""
        heads = [self.prompt_for(pair, swapped) for swapped in (False, True)]
        key = cache_key(self.name, self.backend.identity, engine_of(self.backend), heads,
                        list(self.candidates))
        return [both_orders_unit(pair, heads, key)]

    def prompt_for(self, pair: Pair, swapped: bool = False, rationale: str | None = None) -> str:
        """A full prompt of the pair: the one that shows the stored second response first
        when ``swapped`` (ends right before the answer token)."""
        raise NotImplementedError

    def scored_prompt(self, unit: Unit, head: int, rationale: str) -> str:
        """A head's prompt with a decoded rationale (judges with ``decodes_rationales``)."""
        raise NotImplementedError(f"the {self.name} judge decodes no rationale")

    def reduce(self, unit: Unit, scores: list[list[Score]], rationales: list[list[str]] | None,
               generated: int, seconds: float) -> dict:
        """A unit's cached value from its scores.

        Args:
            unit: the unit.
            scores: per head, the scores of its prompts (one, or one per rationale sample).
            rationales: per head, the decoded rationales (None without chain-of-thought).
            generated: tokens generated for its rationales.
            seconds: its share of the backend calls' time.
        """
        raise NotImplementedError

    def value_problem(self, value: dict) -> str | None:
        """What is wrong with a unit's value (from the cache or the backend); None if nothing."""
        return label_problem(value)

    def combine(self, pair: Pair, values: list[dict]) -> dict:
        """The label fields of a pair from its units' values (``p``, ``p_fwd``, ``p_swapped``,
        ``rationales``, tokens, seconds, and the judge's own fields)."""
        raise NotImplementedError

    def format(self, user: str, assistant: str) -> str:
        """The backend's full prompt of a rendered user turn and assistant start."""
        return self.backend.format(user, assistant)
