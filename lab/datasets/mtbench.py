"""MT-Bench human judgments (Zheng et al. 2023, "Judging LLM-as-a-judge"): experts compare
two chatbots' answers to the 80 two-turn MT-Bench questions, with ties.

The lmsys release ``mt_bench_human_judgments`` (hub id ``lmsys/mt_bench_human_judgments``,
split ``human``; FastChat's ``human_judgments.json``) has one row per vote: ``question_id``,
``model_a``, ``model_b``, ``winner`` (``model_a``, ``model_b``, ``tie``, ``tie (bothbad)``),
``judge`` (the expert), ``turn`` (1 or 2, the turn judged) and ``conversation_a`` /
``conversation_b``, each model's whole conversation as ``{role, content}`` messages. Reads a
``.json`` / ``.jsonl`` file of such rows, a folder of them, or the hub id.

A pair, per row:

* turn 1: ``text`` is the first user message, ``first`` / ``second`` the answers of model_a
  and model_b;
* turn 2: ``text`` is the first user message (``User: ...``), and each response is that
  model's own continuation of the conversation, ``<its first answer>\\n\\nUser: <second
  question>\\n\\nAssistant: <its second answer>``. The two models' first answers differ, so
  the first exchange cannot be a text both responses share; each response carries its own,
  as MT-Bench's own turn-2 prompts show each assistant's whole conversation;
* ``human`` 1.0 / 0.0 for a win of model_a / model_b, 0.5 for either kind of tie;
  ``worker`` the judge's id, ``task`` ``instruction``, ``subset`` ``turn1`` / ``turn2``,
  ``post_id`` ``mt<question_id>-t<turn>``.

Reference answers: FastChat's question file (``question.jsonl``: ``question_id``,
``category``, ``turns``, and for math, reasoning and coding questions a ``reference`` list,
one answer per turn) lying beside the judgments file (or in the folder read) gives the
reference of a turn; the turn-2 reference has the responses' shape (the reference first
answer, the second question, the reference second answer). Like TL;DR's reference summaries
they are attached only for a judge that shows one (:func:`with_references`, called by
``run.prepare``), never at load: ``Pair.reference`` enters a pair's identity when set, so a
question file added later does not change the identity of runs made without it.
"""

from __future__ import annotations

from pathlib import Path

from lab.datasets.rows import (
    as_object,
    choice_field,
    decode,
    field,
    files_in,
    has_fields,
    hub_rows,
    instruction_pair,
    json_value,
    read_files,
    text_field,
    with_reference,
)
from lab.errors import DataError
from lab.pair import Pair, content_key

NAME = "mtbench"
TASK = "instruction"
FOLDER = "mt_bench_human_judgments"
HUB_ID = "lmsys/mt_bench_human_judgments"
HUB_SPLIT = "human"
QUESTIONS = "question.jsonl"
"""FastChat's question file, read for reference answers where it lies beside the judgments."""
FIELDS = ("conversation_a", "winner")
PATTERNS = ("*.json", "*.jsonl", "*.jsonl.gz")
WINNER = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}
"""The release's ``winner`` as the probability that model_a's answer is better."""
UPSTREAM = "huggingface.co/datasets/lmsys/mt_bench_human_judgments (split human)"


def files(folder: Path) -> list[Path]:
    """The folder's ``*.json`` / ``*.jsonl(.gz)`` files whose rows have ``conversation_a``
    and ``winner``."""
    return [f for f in files_in(folder, PATTERNS) if has_fields(f, *FIELDS)]


def detect(path: Path) -> bool:
    """A file whose first row has ``conversation_a`` and ``winner``; a folder holding one."""
    if path.is_file():
        return has_fields(path, *FIELDS)
    return bool(files(path))


def load(path: Path, skip_bad_rows: bool = False) -> tuple[list[Pair], int]:
    """Load MT-Bench human judgments from a file or a folder of them.

    Args:
        path: a judgments file (``.json`` array or JSON lines), or a folder of them.
        skip_bad_rows: skip malformed rows and count them instead of stopping.

    Returns:
        The pairs (``subset`` = ``turn1`` / ``turn2``, no references: see
        :func:`with_references`) and the number of rows skipped.
    """
    found = [path] if path.is_file() else files(path)
    if not found:
        raise DataError(f"{path}: no MT-Bench judgment files (rows with conversation_a and "
                        f"winner); pass --data with a copy of {UPSTREAM}")
    return read_files(found, parse_row, skip_bad_rows)


def load_hub(dataset_id: str) -> list[Pair]:
    """The ``human`` split of a hub copy (no question file there: no references)."""
    rows = hub_rows(dataset_id, f"{FOLDER}/", split=HUB_SPLIT)
    return [parse_row(row, f"hub:{dataset_id}/{HUB_SPLIT}:{i}") for i, row in enumerate(rows, 1)]


def _messages(row: dict, name: str, turn: int) -> list[tuple[str, str]]:
    """The first ``turn`` exchanges of a conversation as (question, answer) pairs."""
    value = field(row, name)
    shape = f"field '{name}' must be a list of {{role, content}} messages"
    if not isinstance(value, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in value):
        raise DataError(shape)
    if len(value) < 2 * turn:
        raise DataError(f"field '{name}' has {len(value)} messages, too few for turn {turn} "
                        f"(a user message and an answer per turn)")
    exchanges = []
    for i in range(turn):
        user, answer = value[2 * i], value[2 * i + 1]
        if user["role"] != "user" or answer["role"] != "assistant":
            raise DataError(f"field '{name}' message {2 * i + 1} must be a user message and "
                            f"message {2 * i + 2} an assistant answer, found "
                            f"{user['role']!r} and {answer['role']!r}")
        exchanges.append((user["content"].strip(), answer["content"].strip()))
    return exchanges


def post_id(question_id, turn: int) -> str:
    """The source id of a question's turn: ``mt<question_id>-t<turn>``."""
    return f"mt{question_id}-t{turn}"


def response(exchanges: list[tuple[str, str]]) -> str:
    """A model's response to the judged turn: its answer (turn 1), or its whole continuation
    of the conversation from its first answer on (turn 2)."""
    (_, first), *rest = exchanges
    return first + "".join(f"\n\nUser: {q}\n\nAssistant: {a}" for q, a in rest)


def parse_row(row: dict, source: str) -> Pair:
    """Turn one MT-Bench human judgment into a :class:`Pair` (see the module docstring)."""
    qid = field(row, "question_id")
    if isinstance(qid, bool) or not isinstance(qid, int | str) or not str(qid).strip():
        raise DataError(f"field 'question_id' must be a number or a string, found {qid!r}")
    turn = choice_field(row, "turn", (1, 2))
    winner = field(row, "winner")
    if winner not in WINNER:
        raise DataError(f"field 'winner' must be 'model_a', 'model_b', 'tie' or "
                        f"'tie (bothbad)', found {winner!r}")
    judge = text_field(row, "judge")
    a, b = _messages(row, "conversation_a", turn), _messages(row, "conversation_b", turn)
    questions = [q for q, _ in a]
    if questions != [q for q, _ in b]:
        raise DataError("fields 'conversation_a' and 'conversation_b' ask different questions")
    if not questions[0]:
        raise DataError("field 'conversation_a' has an empty first user message")
    text = questions[0] if turn == 1 else f"User: {questions[0]}"
    first, second, human = response(a), response(b), WINNER[winner]
    return instruction_pair(
        content_key(NAME, str(qid), turn, text, first, second, human, judge),
        post_id(qid, turn), text, first, second, human, TASK, source, f"turn{turn}",
        worker=judge)


def question_file(path: Path) -> Path | None:
    """The question file of judgments at ``path``: ``question.jsonl`` in the folder, or
    beside the file; None where there is none."""
    folder = path if path.is_dir() else path.parent
    found = folder / QUESTIONS
    return found if found.is_file() else None


def references(path: Path) -> dict[str, str]:
    """The reference answers of the question file beside the judgments at ``path``, by
    :func:`post_id` (question and turn); empty where there is no question file.

    Turn 1's reference is the question's first reference answer; turn 2's has the shape of a
    turn-2 response (:func:`response`): the first reference answer, the second question, the
    second reference answer. Questions without ``reference`` (writing, roleplay...) give
    none. A malformed question row is a one-line error naming the file and line.
    """
    file = question_file(path)
    if file is None:
        return {}
    refs: dict[str, str] = {}
    with open(file, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                row = as_object(json_value(decode(raw)))
                qid, turns, given = field(row, "question_id"), field(row, "turns"), \
                    row.get("reference")
                if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
                    raise DataError("field 'turns' must be a list of strings")
                if given is not None and (not isinstance(given, list) or not all(
                        isinstance(r, str) for r in given)):
                    raise DataError("field 'reference' must be a list of strings, one answer "
                                    "per turn")
            except DataError as err:
                raise DataError(f"{file}:{lineno}: {err} (fix the question file, or move it "
                                "away to judge without references)") from None
            for turn in range(1, min(len(given or []), len(turns)) + 1):
                exchanges = [(turns[i].strip(), given[i].strip()) for i in range(turn)]
                refs[post_id(qid, turn)] = response(exchanges)
    return refs


def with_references(pairs: list[Pair], path: Path) -> list[Pair]:
    """The pairs, each with its question turn's reference answer (:func:`references`) as
    ``reference`` where the question file has one, except where a response *is* the
    reference; only for a judge that shows a reference (see the module docstring)."""
    refs = references(path)
    return [with_reference(p, refs.get(p.post_id)) for p in pairs]
