"""Stage 1 of the pipeline: human preference data.

Reads pairwise human judgments into one shape, :class:`Pair`, whose label follows the lab's
single preference representation: ``human`` is the probability that the *first* response is
better (1.0 or 0.0 for a hard choice).

Sources:
  * OpenAI TL;DR comparisons (Stiennon et al. 2020) in their JSON-lines format, from a file,
    a folder, or the hub id ``openai/summarize_from_feedback`` (config ``comparisons``);
  * Anthropic HH-RLHF ``chosen``/``rejected`` rows (``*.jsonl`` or ``*.jsonl.gz``).

Then the slicing every experiment needs: the high-confidence subset the RLAIF paper used,
a seeded sample of n, and a split by post id into exemplar pool / dev / test so that no post
is in two of them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from lab.errors import DataError  # noqa: F401  (re-exported)

HUB_ID = "openai/summarize_from_feedback"
HIGH_CONFIDENCE = (1, 2, 8, 9)
SPLITS = ("pool", "dev", "test")
ENV_VAR = "RLAIF_DATA_DIR"
SHIPPED_PATH = "../shared/data"  # where the shipped experiments and exports point
TLDR_SUBDIR = "summarize_from_feedback_comparisons"


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


@dataclass(frozen=True)
class Pair:
    """One human comparison of two responses to the same text."""

    key: str
    """Content key of this judgment: a hash of the title, post, both responses and the human's
    judgment (``~2``, ``~3``... for exact repeats), so a run folder matches a pair by what it
    is, never by where it stands in a file."""
    post_id: str
    """Id of the source text; splits never put one post in two parts."""
    text: str
    """The post (or dialogue) both responses answer."""
    title: str
    """Post title ('' where the source has none)."""
    subreddit: str
    """Subreddit without the ``r/`` prefix ('' where the source has none)."""
    first: str
    """The response shown as 'Summary 1' in the forward order."""
    second: str
    """The response shown as 'Summary 2' in the forward order."""
    human: float
    """Probability that ``first`` is better according to the human: 1.0 or 0.0."""
    confidence: int | None
    """Raw 9-point confidence (1 = first strongly preferred, 9 = second), None if absent."""
    worker: str
    """Anonymised annotator id ('' where absent)."""
    task: str = "summarize"
    """``summarize`` (TL;DR, CNN/DM) or ``dialogue`` (HH-RLHF)."""
    source: str = ""
    """Where the row was read (``file:line``), for messages."""


def content_key(*parts) -> str:
    """The content key of a judgment: sha256 of its parts (as JSON), 16 hex digits."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _number_repeats(pairs: list[Pair]) -> list[Pair]:
    """Give exact repeats of a judgment distinct keys (``KEY~2``, ``KEY~3``, in file order)."""
    seen: dict[str, int] = {}
    out = []
    for p in pairs:
        seen[p.key] = seen.get(p.key, 0) + 1
        out.append(p if seen[p.key] == 1 else dataclasses.replace(p, key=f"{p.key}~{seen[p.key]}"))
    return out


def resolve_data_path(path: str | os.PathLike | None) -> str:
    """Return where to read TL;DR comparisons from.

    Order: the explicit ``path``; the ``RLAIF_DATA_DIR`` environment variable; otherwise the
    hub id (``hub:openai/summarize_from_feedback``), which needs network access. The shipped
    experiments' ``../shared/data``, where it does not exist (a checkout elsewhere), gives way
    to ``RLAIF_DATA_DIR`` when that is set; any other missing path is kept, so that the error
    names it instead of reading other data.
    """
    env = os.environ.get(ENV_VAR)
    stand_in = env and path and Path(path) == Path(SHIPPED_PATH) and not Path(path).exists()
    if path and not stand_in:
        return str(path)
    if env:
        return env
    return f"hub:{HUB_ID}"


def load_pairs(
    source: str, skip_bad_rows: bool = False, include_edits: bool = False
) -> tuple[list[Pair], int]:
    """Load comparisons from a file, a folder or ``hub:<id>``.

    A folder is searched for the TL;DR comparisons sub-folder first; then every ``*.json``,
    ``*.jsonl`` and ``*.jsonl.gz`` file in it is read, except CNN/DM files and, unless
    ``include_edits``, the ``edit_*`` files (pass either explicitly to read it). HH-RLHF
    files (rows with ``chosen``/``rejected``) are recognised by content. A row without a post
    id takes the id of a row with the same normalised post text (see :func:`post_key`).

    Args:
        source: a path, or ``hub:<dataset id>``.
        skip_bad_rows: skip malformed rows and count them instead of stopping.
        include_edits: also read a folder's ``edit_*`` files (human-edited summaries).

    Returns:
        The pairs and the number of rows skipped.

    Raises:
        DataError: the source is missing, or a row is malformed (unless skipped).
    """
    if source.startswith("hub:"):
        return _number_repeats(_load_hub(source[4:])), 0
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder; pass --data PATH or set {ENV_VAR} "
            f"(e.g. ../shared/data)"
        )
    files = [path] if path.is_file() else _data_files(path, include_edits)
    pairs: list[Pair] = []
    skipped = 0
    for file in files:
        got, bad = _load_file(file, skip_bad_rows)
        pairs.extend(got)
        skipped += bad
    if not pairs:
        raise DataError(f"{path}: no comparison rows found; point --data at a TL;DR .json file")
    return _number_repeats(_adopt_post_ids(pairs)), skipped


def post_key(text: str) -> str:
    """Identity of a post's text: a hash of it lower-cased with whitespace collapsed."""
    return hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()[:12]


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


def pair_id(pair: Pair) -> str:
    """Identity of a comparison (post and both responses in their order), shared by the
    repeated judgments of one pair."""
    raw = "\x00".join((pair.post_id, pair.first, pair.second))
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def _data_files(folder: Path, include_edits: bool = False) -> list[Path]:
    if (folder / TLDR_SUBDIR).is_dir():
        folder = folder / TLDR_SUBDIR
    files = sorted(
        f
        for pattern in ("*.json", "*.jsonl", "*.jsonl.gz")
        for f in folder.glob(pattern)
        if "cnndm" not in f.name and (include_edits or not f.name.startswith("edit_"))
    )
    if not files:
        raise DataError(f"{folder}: no *.json/*.jsonl files; pass --data with a comparisons file")
    return files


def _load_file(file: Path, skip_bad_rows: bool) -> tuple[list[Pair], int]:
    opener = gzip.open if file.suffix == ".gz" else open
    pairs, skipped = [], 0
    with opener(file, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                row = _parse_json(_decode(raw))
                where = f"{file}:{lineno}"
                if "chosen" in row or "rejected" in row:
                    pairs.append(parse_hh_row(row, where))
                else:
                    pairs.append(parse_tldr_row(row, where))
            except DataError as err:
                if not skip_bad_rows:
                    raise DataError(
                        f"{file}:{lineno}: {err} (fix the row or pass --skip-bad-rows)"
                    ) from None
                skipped += 1
    return pairs, skipped


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"not UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of the line); "
            "save the file as UTF-8"
        ) from None


def _parse_json(line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"bad JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(row, dict):
        raise DataError("row is not a JSON object")
    return row


def _field(row: dict, dotted: str):
    value = row
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value or value[part] is None:
            raise DataError(f"missing field '{dotted}'")
        value = value[part]
    return value


def parse_tldr_row(row: dict, source: str) -> Pair:
    """Turn one OpenAI comparison row into a :class:`Pair` (raises DataError if malformed).

    ``source`` (``file:line``) is kept for messages; the pair's key is a hash of its content.
    """
    info = _field(row, "info")
    text = info.get("post") if isinstance(info, dict) else None
    if text is None and isinstance(info, dict):
        text = info.get("article")  # CNN/DM rows
    if not isinstance(text, str):
        raise DataError("missing field 'info.post'")
    summaries = _field(row, "summaries")
    if not isinstance(summaries, list) or len(summaries) != 2:
        n = len(summaries) if isinstance(summaries, list) else "no list of"
        raise DataError(f"field 'summaries' must hold exactly two summaries, found {n}")
    texts = []
    for i, s in enumerate(summaries):
        if not isinstance(s, dict) or not isinstance(s.get("text"), str):
            raise DataError(f"missing field 'summaries[{i}].text'")
        if not s["text"].strip():
            raise DataError(f"field 'summaries[{i}].text' is empty")
        texts.append(s["text"].strip())
    choice = _field(row, "choice")
    if choice not in (0, 1) or isinstance(choice, bool):
        raise DataError(f"field 'choice' must be 0 or 1, found {choice!r}")
    confidence = _field(row, "extra.confidence")
    if confidence not in range(1, 10) or isinstance(confidence, bool):
        raise DataError(f"field 'extra.confidence' must be 1..9, found {confidence!r}")
    title = info.get("title") or ""
    post_id = info.get("id") or "h" + post_key(text)
    human = 1.0 if choice == 0 else 0.0
    worker = str(_field(row, "worker"))
    return Pair(
        key=content_key(title.strip(), text.strip(), *texts, human, int(confidence), worker),
        post_id=str(post_id),
        text=text.strip(),
        title=title.strip(),
        subreddit=str(info.get("subreddit") or info.get("site") or "").removeprefix("r/"),
        first=texts[0],
        second=texts[1],
        human=human,
        confidence=int(confidence),
        worker=worker,
        source=source,
    )


def parse_hh_row(row: dict, source: str) -> Pair:
    """Turn one HH-RLHF ``chosen``/``rejected`` row into a :class:`Pair`.

    The shared dialogue up to the last ``Assistant:`` turn becomes ``text``; the two final
    replies become the responses. Which one is shown first is a deterministic coin flip per
    row, so that the human label is not always 'first'.
    """
    chosen, rejected = _field(row, "chosen"), _field(row, "rejected")
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise DataError("fields 'chosen' and 'rejected' must be strings")
    marker = "\n\nAssistant:"
    cut = chosen.rfind(marker)
    if cut < 0:
        raise DataError("field 'chosen' has no '\\n\\nAssistant:' turn")
    prompt = chosen[:cut]
    good = chosen[cut + len(marker):].strip()
    bad_cut = rejected.rfind(marker)
    bad = rejected[bad_cut + len(marker):].strip() if bad_cut >= 0 else rejected.strip()
    key = content_key(prompt.strip(), good, bad)
    flip = int(hashlib.sha1(key.encode()).hexdigest(), 16) % 2 == 1
    return Pair(
        key=key,
        post_id="hh" + hashlib.sha1(prompt.encode()).hexdigest()[:12],
        text=prompt.strip(),
        title="",
        subreddit="",
        first=bad if flip else good,
        second=good if flip else bad,
        human=0.0 if flip else 1.0,
        confidence=None,
        worker="",
        task="dialogue",
        source=source,
    )


def _load_hub(dataset_id: str) -> list[Pair]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            "loading from the hub needs `datasets`: pip install 'rlaif-lab[hub]', "
            f"or pass --data PATH / set {ENV_VAR} to a local copy"
        ) from None
    try:
        ds = datasets.load_dataset(dataset_id, "comparisons", split="validation")
    except Exception as err:  # network, auth, missing id: all end the same way
        raise DataError(
            f"hub:{dataset_id}: could not load ({type(err).__name__}); offline machines "
            f"must pass --data PATH or set {ENV_VAR}"
        ) from None
    return [parse_tldr_row(dict(row), f"hub:{i}") for i, row in enumerate(ds)]


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
    """
    if confidence not in ("high", "all"):
        raise ValueError(f"confidence must be 'high' or 'all', not {confidence!r}")
    if split not in (*SPLITS, "eval", "train", "all"):
        raise ValueError(f"split must be one of pool/dev/test/eval/train/all, not {split!r}")
    out = [p for p in pairs if confidence == "all" or p.confidence in HIGH_CONFIDENCE]
    if split == "eval":
        out = [p for p in out if split_of(p.post_id) != "pool"]
    elif split == "train":
        out = [p for p in out if split_of(p.post_id) != "test"]
    elif split != "all":
        out = [p for p in out if split_of(p.post_id) == split]
    if n is not None and n < len(out):
        out = random.Random(seed).sample(out, n)
    return out


def exemplar_pool(pairs: list[Pair]) -> list[Pair]:
    """High-confidence pairs of the exemplar pool, in a fixed order (for few-shot prompts)."""
    return [
        p for p in pairs if split_of(p.post_id) == "pool" and p.confidence in HIGH_CONFIDENCE
    ]
