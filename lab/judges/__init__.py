"""Judges: the ways the lab reads a preference out of a labeler model, by name.

A judge (:class:`lab.judges.base.Judge`) says how an item renders into prompts, which next
tokens are read, and how the orders or responses aggregate into p = P(first response better).
Adding one is one module in this package plus one line in :data:`JUDGES`; its prompt text goes
under ``prompts/judges/``. ``prompt.judge`` (``rlaif label --judge NAME``, the ``judge`` axis
of an experiment file) picks one; docs/judges.md describes each.
"""

from __future__ import annotations

from lab.errors import ConfigError
from lab.judges.base import Judge, Probe, Unit  # noqa: F401  (re-exported)
from lab.judges.pairwise import PairwiseJudge
from lab.judges.pairwise_tie import PairwiseTieJudge
from lab.judges.principles import PrinciplesAllJudge, PrinciplesJudge
from lab.judges.rating import RatingJudge
from lab.judges.reference import ReferenceJudge
from lab.judges.self_reward import SelfRewardJudge

JUDGES: dict[str, type[Judge]] = {
    judge.name: judge
    for judge in (PairwiseJudge, RatingJudge, PairwiseTieJudge, SelfRewardJudge,
                  PrinciplesJudge, PrinciplesAllJudge, ReferenceJudge)
}
"""Every judge by name (the first is the default)."""


def judge_class(name: str) -> type[Judge]:
    """The judge a name picks; an unknown name is a one-line error listing the known ones."""
    try:
        return JUDGES[name]
    except KeyError:
        raise ConfigError(f"unknown judge {name!r}; known: {', '.join(JUDGES)}") from None
