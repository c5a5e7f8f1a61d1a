"""The lab's one item type: a human comparison of two responses, and its identities.

Every loader in :mod:`lab.datasets` turns its rows into :class:`Pair`; every later stage
(labeling, metrics, reward models) reads only these fields. The label follows the lab's single
preference representation: ``human`` is the probability that the *first* response is better.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    """One human comparison of two responses to the same text."""

    key: str
    """Content key of this judgment: a hash of the text, both responses and the human's
    judgment (``~2``, ``~3``... for exact repeats), so a run folder matches a pair by what it
    is, never by where it stands in a file."""
    post_id: str
    """Id of the source text (post, dialogue prefix, instruction); splits never put one source
    in two parts."""
    text: str
    """The post, dialogue or instruction both responses answer."""
    title: str
    """Post title ('' where the source has none)."""
    subreddit: str
    """Subreddit without the ``r/`` prefix ('' where the source has none)."""
    first: str
    """The response shown first ('Summary 1', 'Response 1') in the forward order."""
    second: str
    """The response shown second in the forward order."""
    human: float
    """Probability that ``first`` is better according to the humans: 1.0 or 0.0 for a hard
    choice, 0.5 for a tie, the share of votes where several annotators judged (a tie vote
    counting half)."""
    confidence: int | None
    """Raw 9-point confidence (1 = first strongly preferred, 9 = second), None if absent."""
    worker: str
    """Anonymised annotator id ('' where absent)."""
    task: str = "summarize"
    """``summarize`` (TL;DR, CNN/DM), ``dialogue`` (HH-RLHF) or ``instruction`` (LLMBar,
    PandaLM, Auto-J)."""
    source: str = ""
    """Where the row was read (``file:line``, ``file[index]`` for JSON arrays), for messages."""
    reference: str | None = None
    """A reference answer, where the data has one (None otherwise)."""
    subset: str = ""
    """Part of its dataset the row belongs to: HH-RLHF split (``helpful-base``), LLMBar set
    (``Natural``, ``Adversarial/GPTInst``, ``MT-Bench``), PandaLM ``cmp_key``, Auto-J
    ``scenario``; '' where the dataset has none (TL;DR)."""
    votes: tuple[float, ...] = ()
    """The individual annotators' votes, each as a probability that ``first`` is better (1.0,
    0.0, 0.5 for a tie), where the data has several; ``human`` is their mean."""


# Fields added after run identities were first written: left out of identity_fields while
# they hold these defaults, so that the identity (and so the run folder) of every pair that
# does not use them is unchanged.
_LATER_FIELDS = {"reference": None, "subset": "", "votes": ()}


def identity_fields(pair: Pair) -> dict:
    """The pair's content as a dict for identity hashes: every field but ``source``; the
    later optional fields (reference, subset, votes) only where they are set."""
    return {
        k: v for k, v in dataclasses.asdict(pair).items()
        if k != "source" and not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])
    }


def content_key(*parts) -> str:
    """The content key of a judgment: sha256 of its parts (as JSON), 16 hex digits."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def post_key(text: str) -> str:
    """Identity of a post's text: a hash of it lower-cased with whitespace collapsed."""
    return hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()[:12]


def pair_id(pair: Pair) -> str:
    """Identity of a comparison (post and both responses in their order), shared by the
    repeated judgments of one pair."""
    raw = "\x00".join((pair.post_id, pair.first, pair.second))
    return hashlib.sha1(raw.encode()).hexdigest()[:12]
