"""The self-reward judge: the additive 5-point rubric of Self-Rewarding LMs, as a rating judge.

After Yuan et al. 2024 (arXiv 2401.10020), where a model judges responses with an additive
rubric: a point for each of five criteria a response meets, so a score from 0 to 5. The rubric
text is the lab's own, written for summaries (``prompts/judges/self_reward.jinja``). It is a
:class:`lab.judges.rating.RatingJudge` with the scale ``0`` ... ``5``: the score is the
expected value under the softmax of those six tokens' log-probs, and

    p = 0.5 + (s_first - s_second) / 10.

Cached per response like every rating; position bias 0 by construction; 2 prompts per pair.
"""

from __future__ import annotations

from lab.judges.rating import RatingJudge


class SelfRewardJudge(RatingJudge):
    """Additive 0-5 rubric (a point per criterion met) per response; p = 0.5 + (s1 - s2) / 10."""

    name = "self-reward"
    candidates = tuple(str(v) for v in range(0, 6))
    aggregation = ("each response rated alone, s = expected score over the scale tokens 0-5; "
                   "p = 0.5 + (s_first - s_second) / 10; no presentation order")
    templates = {"summarize": ("judges/self_reward.jinja",),
                 "dialogue": ("hh/self_reward.jinja",),
                 "instruction": ("instruction/self_reward.jinja",)}
