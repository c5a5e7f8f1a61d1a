"""Stage 1 of the pipeline: human preference data.

Reads pairwise human judgments into one shape, :class:`Pair` (see :mod:`lab.pair`), whose
label follows the lab's single preference representation: ``human`` is the probability that
the *first* response is better (1.0 or 0.0 for a hard choice, 0.5 for a tie).

Sources, one loader each in :mod:`lab.datasets` (``task`` names one; by default it is
detected from the path, TL;DR first):
  * ``tldr``: OpenAI TL;DR comparisons (Stiennon et al. 2020) in their JSON-lines format,
    from a file, a folder, or the hub id ``openai/summarize_from_feedback``;
  * ``hh``: Anthropic HH-RLHF ``chosen``/``rejected`` rows (``*.jsonl`` or ``*.jsonl.gz``,
    or the split folders), or the hub id ``Anthropic/hh-rlhf``;
  * ``llmbar``, ``pandalm``, ``autoj``: instruction-following judge sets (LLMBar with the
    processed MT-Bench/FairEval/LLMEval² human sets, PandaLM's 3-annotator test set, Auto-J's
    pairwise test set);
  * ``mtbench``: the MT-Bench human judgments (lmsys release, two turns, ties), or the hub id
    ``lmsys/mt_bench_human_judgments``.

Reference answers (TL;DR ``ref`` summaries, MT-Bench's question file) are attached only for a
judge that shows one (:func:`attach_references`), never at load.

Then the slicing every experiment needs: the high-confidence subset the RLAIF paper used,
a seeded sample of n, and a split by post id into exemplar pool / dev / test so that no post
is in two of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

from lab import datasets as registry
from lab.datasets.hh import parse_row as parse_hh_row  # noqa: F401  (re-exported)
from lab.datasets.tldr import FOLDER as TLDR_SUBDIR
from lab.datasets.tldr import HUB_ID
from lab.datasets.tldr import parse_row as parse_tldr_row  # noqa: F401  (re-exported)
from lab.errors import DataError  # noqa: F401  (re-exported)
from lab.pair import Pair, content_key, pair_id, post_key  # noqa: F401  (re-exported)

HIGH_CONFIDENCE = (1, 2, 8, 9)
SPLITS = ("pool", "dev", "test")
ENV_VAR = "RLAIF_DATA_DIR"
SHIPPED_PATH = "../shared/data"  # where the shipped experiments and exports point
__all__ = ["HUB_ID", "TLDR_SUBDIR", "DataConfig", "DataError", "Pair", "attach_references",
           "content_key", "exemplar_pool", "load_pairs", "pair_id", "parse_hh_row",
           "parse_tldr_row", "in_subset", "post_key", "resolve_data_path", "select", "split_of"]


@dataclass(frozen=True)
class DataConfig:
    """Which human-labeled pairs a run labels."""

    path: str | None = None
    """File, folder or ``hub:<id>``; None means ``$RLAIF_DATA_DIR``, then the hub."""
    confidence: str = "high"
    """``high`` (9-point confidence 1, 2, 8, 9, as in the paper) or ``all``."""
    split: str = "eval"
    """``dev``, ``test``, ``eval`` (dev + test), ``pool``, ``train`` (pool + dev) or ``all``."""
    n: int | None = None
    """Seeded sample of at most n pairs (None: all)."""
    seed: int = 0
    """Seed of the sample and of the exemplar draw."""
    skip_bad_rows: bool = False
    """Skip malformed rows (and count them) instead of stopping."""
    include_edits: bool = False
    """Also read the ``edit_*`` files of a TL;DR folder (human-edited summaries, the edit
    always listed first). Off by default: those rows are off-distribution."""
    task: str | None = None
    """The dataset's loader (:data:`lab.datasets.LOADERS`: ``tldr``, ``hh``, ``llmbar``,
    ``pandalm``, ``autoj``, ``mtbench``); None detects it from ``path`` (TL;DR first)."""
    with_reference: bool = False
    """Keep only the pairs that have a reference answer (attached as for the ``reference``
    judge), so that any judge can be compared with it on the same pairs."""
    subset: str | None = None
    """Keep only this subset or its parts (``helpful`` keeps every ``helpful-*`` HH split,
    ``Adversarial`` every adversarial LLMBar set; see :func:`select`); None keeps all."""


def _number_repeats(pairs: list[Pair]) -> list[Pair]:
    """Give exact repeats of a judgment distinct keys (``KEY~2``, ``KEY~3``, in file order)."""
    seen: dict[str, int] = {}
    out = []
    for p in pairs:
        seen[p.key] = seen.get(p.key, 0) + 1
        out.append(p if seen[p.key] == 1 else dataclasses.replace(p, key=f"{p.key}~{seen[p.key]}"))
    return out


def resolve_data_path(path: str | os.PathLike | None, task: str | None = None) -> str:
    """Return where to read comparisons from.

    Order: the explicit ``path``; the ``RLAIF_DATA_DIR`` environment variable; otherwise the
    hub id of the dataset (TL;DR's ``hub:openai/summarize_from_feedback`` unless ``task``
    names another), which needs network access. The shipped experiments' ``../shared/data``
    (or a file under it), where it does not exist (a checkout elsewhere), gives way to
    ``RLAIF_DATA_DIR`` (the same file under it) when that is set; any other missing path is
    kept, so that the error names it instead of reading other data.

    Raises:
        DataError: nothing local is given and the named dataset has no hub copy.
    """
    env = os.environ.get(ENV_VAR)
    if env and path and not Path(path).exists():
        # a shipped experiment's ../shared/data (or a file in it) read from elsewhere
        try:
            inside = Path(path).relative_to(SHIPPED_PATH)
        except ValueError:
            inside = None
        if inside is not None:
            return str(Path(env) / inside) if inside.parts else env
    if path:
        return str(path)
    if env:
        return env
    return f"hub:{registry.hub_id(task)}"


def load_pairs(
    source: str, skip_bad_rows: bool = False, include_edits: bool = False,
    task: str | None = None,
) -> tuple[list[Pair], int]:
    """Load comparisons from a file, a folder or ``hub:<id>``.

    With ``task`` None the dataset is detected (:func:`lab.datasets.detect`): a folder that
    holds the TL;DR comparisons sub-folder reads TL;DR (a data root with several datasets
    included); a TL;DR folder reads every ``*.json``, ``*.jsonl`` and ``*.jsonl.gz`` file in
    it, except CNN/DM files and, unless ``include_edits``, the ``edit_*`` files (pass either
    explicitly to read it); other datasets are recognised by their folder or their rows'
    fields. A named ``task`` reads that dataset from its file, its folder, or a data root
    holding its folder. A row without a post id takes the id of a row with the same
    normalised post text (see :func:`post_key`).

    Args:
        source: a path, or ``hub:<dataset id>``.
        skip_bad_rows: skip malformed rows and count them instead of stopping.
        include_edits: also read a TL;DR folder's ``edit_*`` files (human-edited summaries).
        task: a loader name (``tldr``, ``hh``, ``llmbar``, ``pandalm``, ``autoj``,
            ``mtbench``); None detects it.

    Returns:
        The pairs and the number of rows skipped.

    Raises:
        DataError: the source is missing, or a row is malformed (unless skipped).
    """
    if source.startswith("hub:"):
        return _number_repeats(registry.load_hub(source[4:], task)), 0
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder; pass --data PATH or set {ENV_VAR} "
            f"(e.g. ../shared/data)"
        )
    loader, pairs, skipped = registry.load(path, task, skip_bad_rows, include_edits)
    if not pairs:
        what = "a TL;DR .json file" if loader.NAME == "tldr" else f"a {loader.NAME} file"
        raise DataError(f"{path}: no comparison rows found; point --data at {what}")
    return _number_repeats(_adopt_post_ids(pairs)), skipped


def attach_references(source: str, pairs: list[Pair], task: str | None = None,
                      include_edits: bool = False) -> list[Pair]:
    """The pairs with the reference answers their data holds (``Pair.reference``), for a judge
    that shows one (:func:`lab.datasets.attach_references`: TL;DR posts' ``ref`` summaries,
    except in a comparison with that summary itself; MT-Bench's question file). A hub source
    has none (the pairs come back unchanged).

    Args:
        source: where the pairs were loaded from (a path, or ``hub:<id>``).
        pairs: those pairs (or a slice of them).
        task: the loader's name; None detects it.
        include_edits: TL;DR only: also read the ``edit_*`` files.
    """
    if source.startswith("hub:"):
        return pairs
    return registry.attach_references(Path(source), pairs, task, include_edits)


def _adopt_post_ids(pairs: list[Pair]) -> list[Pair]:
    """Rows without an id (``h`` + text hash) take the id of a row with the same post text.

    Without this, one post could get two ids (the edit file has none) and so land in two
    splits.
    """
    def text_id(p: Pair) -> bool:
        return p.post_id == "h" + post_key(p.text)

    known = {post_key(p.text): p.post_id for p in pairs if not text_id(p)}
    return [
        dataclasses.replace(p, post_id=known[post_key(p.text)])
        if text_id(p) and post_key(p.text) in known else p
        for p in pairs
    ]


def split_of(post_id: str, pool: float = 0.1, dev: float = 0.45) -> str:
    """Deterministic split of a post by a hash of its id: 'pool', 'dev' or 'test'."""
    u = int(hashlib.sha256(post_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if u < pool:
        return "pool"
    return "dev" if u < pool + dev else "test"


def select(
    pairs: list[Pair],
    confidence: str = "high",
    split: str = "eval",
    n: int | None = None,
    seed: int = 0,
    subset: str | None = None,
) -> list[Pair]:
    """Slice pairs for one run.

    Args:
        pairs: everything loaded.
        confidence: ``high`` (9-point confidence 1, 2, 8, 9) or ``all``.
        split: ``pool``, ``dev``, ``test``, ``eval`` (dev + test: never the exemplar pool),
            ``train`` (pool + dev: every post outside the test split, for reward models)
            or ``all``.
        n: keep a seeded random sample of at most n pairs (None keeps all).
        seed: seed of that sample.
        subset: keep only pairs of this subset or of its parts (``helpful`` keeps
            ``helpful-base``, ``helpful-online``...; ``Adversarial`` keeps
            ``Adversarial/GPTInst``...); None keeps all. Datasets without the 9-point
            confidence (all but TL;DR) need ``confidence="all"``.
    """
    if confidence not in ("high", "all"):
        raise ValueError(f"confidence must be 'high' or 'all', not {confidence!r}")
    if split not in (*SPLITS, "eval", "train", "all"):
        raise ValueError(f"split must be one of pool/dev/test/eval/train/all, not {split!r}")
    out = [p for p in pairs if confidence == "all" or p.confidence in HIGH_CONFIDENCE]
    if subset is not None:
        out = [p for p in out if in_subset(p.subset, subset)]
    if split == "eval":
        out = [p for p in out if split_of(p.post_id) != "pool"]
    elif split == "train":
        out = [p for p in out if split_of(p.post_id) != "test"]
    elif split != "all":
        out = [p for p in out if split_of(p.post_id) == split]
    if n is not None and n < len(out):
        out = random.Random(seed).sample(out, n)
    return out


def in_subset(subset: str, wanted: str) -> bool:
    """Whether a pair's subset is ``wanted`` or one of its parts (``wanted`` followed by
    ``-`` or ``/``): ``harmless`` matches ``harmless-base``, ``Adversarial`` matches
    ``Adversarial/Manual``."""
    return subset == wanted or subset.startswith((f"{wanted}-", f"{wanted}/"))


def exemplar_pool(pairs: list[Pair]) -> list[Pair]:
    """High-confidence pairs of the exemplar pool, in a fixed order (for few-shot prompts)."""
    return [
        p for p in pairs if split_of(p.post_id) == "pool" and p.confidence in HIGH_CONFIDENCE
    ]
