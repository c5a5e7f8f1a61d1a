"""What a loaded dataset holds, per subset: the table ``rlaif data`` prints.

Rows, distinct source ids (what splits keep apart), the share of ties, how often the humans
preferred the longer response (a quick look at length bias) and how long responses are.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.pair import Pair


@dataclass(frozen=True)
class SubsetStats:
    """Counts of one subset of a dataset (or of all of it)."""

    task: str
    """The pairs' task (``summarize``, ``dialogue``, ``instruction``)."""
    subset: str
    """The subset ('' where the dataset has none; ``all`` for the total)."""
    rows: int
    """Number of pairs."""
    ids: int
    """Distinct source ids (post, dialogue or instruction)."""
    ties: float
    """Share of pairs with ``human`` exactly 0.5."""
    longer_won: float | None
    """Among pairs that are not ties and whose responses differ in word count, the share
    where the humans preferred the longer one (``human`` > 0.5 for the first); None if no
    such pair."""
    decided: int
    """Number of pairs ``longer_won`` is computed over."""
    words: float
    """Mean words (whitespace-separated) per response."""


def subset_stats(pairs: list[Pair], subset: str, task: str = "") -> SubsetStats:
    """The counts of these pairs, labeled ``subset``."""
    lengths = [(len(p.first.split()), len(p.second.split())) for p in pairs]
    decided = [(p.human > 0.5) == (a > b)
               for p, (a, b) in zip(pairs, lengths) if p.human != 0.5 and a != b]
    n = len(pairs)
    return SubsetStats(
        task=task or (pairs[0].task if pairs else ""),
        subset=subset,
        rows=n,
        ids=len({p.post_id for p in pairs}),
        ties=sum(p.human == 0.5 for p in pairs) / n if n else 0.0,
        longer_won=sum(decided) / len(decided) if decided else None,
        decided=len(decided),
        words=sum(a + b for a, b in lengths) / (2 * n) if n else 0.0,
    )


def table(pairs: list[Pair]) -> list[SubsetStats]:
    """One row per subset (in order of first appearance), then ``all`` if there are
    several."""
    by_subset: dict[str, list[Pair]] = {}
    for p in pairs:
        by_subset.setdefault(p.subset, []).append(p)
    rows = [subset_stats(ps, name) for name, ps in by_subset.items()]
    if len(rows) > 1:
        rows.append(subset_stats(pairs, "all"))
    return rows


def format_table(rows: list[SubsetStats]) -> str:
    """The rows as a plain-text table (one line per row, a header first)."""
    width = max([len("subset"), *(len(r.subset or "-") for r in rows)])
    lines = [f"{'subset':<{width}}  {'rows':>6}  {'ids':>6}  {'ties':>5}  "
             f"{'longer won':>10}  {'(of n)':>6}  {'words/resp':>10}"]
    for r in rows:
        won = f"{r.longer_won:.3f}" if r.longer_won is not None else "-"
        lines.append(f"{r.subset or '-':<{width}}  {r.rows:>6}  {r.ids:>6}  {r.ties:>5.3f}  "
                     f"{won:>10}  {r.decided:>6}  {r.words:>10.1f}")
    return "\n".join(lines)
