"""The dataset loaders (lab.datasets): tiny hand-written files for every format, the real
copies in RLAIF_DATA_DIR against the counts of their READMEs, and TL;DR identities that must
not move."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import sys
from pathlib import Path

import pytest

from lab import datasets as registry
from lab.cli import main
from lab.data import (
    DataError,
    attach_references,
    load_pairs,
    resolve_data_path,
    select,
    split_of,
)
from lab.datasets import hh, stats
from lab.pair import Pair, content_key, identity_fields, post_key
from tests.conftest import SHARED_DATA, tldr_row, write_rows

FIX = "(fix the row or pass --skip-bad-rows)"


def write_gz(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_rows(path, rows)


def write_json(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    return path


def hh_row(question: str, good: str, bad: str) -> dict:
    return {"chosen": f"\n\nHuman: {question}\n\nAssistant: {good}",
            "rejected": f"\n\nHuman: {question}\n\nAssistant: {bad}"}


# --------------------------------------------------------------------------- HH-RLHF


def test_hh_rows_order_subset_and_ids(tmp_path):
    rows = [hh_row(f"q{i}?", f"good {i}", f"bad {i}") for i in range(8)]
    f = write_gz(tmp_path / "helpful-base" / "test.jsonl.gz", rows)
    pairs, skipped = load_pairs(str(f))
    assert skipped == 0 and len(pairs) == 8
    for i, p in enumerate(pairs):
        key = content_key(f"Human: q{i}?", f"good {i}", f"bad {i}")
        # the seeded coin: sha256 of "0:<key>", first 8 hex digits, odd = chosen shown second
        flip = int(hashlib.sha256(f"0:{key}".encode()).hexdigest()[:8], 16) % 2 == 1
        assert p.key == key and hh.chosen_second(key) == flip
        assert (p.first, p.second, p.human) == (
            (f"bad {i}", f"good {i}", 0.0) if flip else (f"good {i}", f"bad {i}", 1.0))
        assert p.text == f"Human: q{i}?" and p.task == "dialogue"
        assert p.subset == "helpful-base" and p.reference is None and p.votes == ()
        assert p.post_id == "hh" + hashlib.sha1(f"\n\nHuman: q{i}?".encode()).hexdigest()[:12]
        assert p.source == f"{f}:{i + 1}" and p.confidence is None
    # the order is fixed by content (the same every load) and not always chosen-first
    assert [p.human for p in pairs] == [p.human for p in load_pairs(str(f))[0]]
    assert [p.human for p in pairs] == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]


def test_hh_multi_turn_dialogue_and_a_reply_that_runs_over_turns(tmp_path):
    shared = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c"
    row = {"chosen": shared + "\n\nAssistant: d  Human: e\n\nAssistant: f",
           "rejected": shared + "\n\nAssistant: g"}
    (p,), _ = load_pairs(str(write_gz(tmp_path / "x.jsonl.gz", [row])))
    assert p.text == "Human: a\n\nAssistant: b\n\nHuman: c"
    assert {p.first, p.second} == {"d  Human: e\n\nAssistant: f", "g"}
    better = p.first if p.human == 1.0 else p.second
    assert better == "d  Human: e\n\nAssistant: f"
    assert p.subset == ""  # not in a split folder


def test_hh_folder_reads_every_split_and_subsets_select(tmp_path):
    root = tmp_path / "hh_rlhf_test"
    write_gz(root / "helpful-base" / "test.jsonl.gz", [hh_row("h1", "a", "b")])
    write_gz(root / "helpful-online" / "test.jsonl.gz", [hh_row("h2", "a", "b")])
    write_gz(root / "harmless-base" / "test.jsonl.gz",
             [hh_row("x1", "a", "b"), hh_row("x2", "a", "b")])
    write_gz(root / "harmless-base" / "train.jsonl.gz", [hh_row("t", "a", "b")])  # not read
    pairs, _ = load_pairs(str(root))
    assert [p.subset for p in pairs] == ["harmless-base", "harmless-base", "helpful-base",
                                         "helpful-online"]
    helpful = select(pairs, "all", "all", subset="helpful")
    assert [p.text for p in helpful] == ["Human: h1", "Human: h2"]
    assert [p.text for p in select(pairs, "all", "all", subset="harmless-base")] == [
        "Human: x1", "Human: x2"]
    assert select(pairs, "high", "all") == []  # no 9-point confidence outside TL;DR
    # named as a task from a data root
    assert load_pairs(str(tmp_path), task="hh")[0] == pairs


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"chosen": "\\n\\nHuman: hi", "rejected": "\\n\\nHuman: ho"}',
         "field 'chosen' has no '\\n\\nAssistant:' turn"),
        ('{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: a", "rejected": "\\n\\nHuman: ho"}',
         "fields 'chosen' and 'rejected' share no '\\n\\nAssistant:' turn"),
        ('{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: x"}', "missing field 'rejected'"),
        ('{"chosen": 1, "rejected": "x"}', "fields 'chosen' and 'rejected' must be strings"),
        ("[1, 2]", "row is not a JSON object"),
        ('{"chosen": ', "bad JSON (Expecting value at column 12)"),
    ],
)
def test_hh_bad_row_is_one_line_naming_file_and_line(tmp_path, line, message):
    f = write_gz(tmp_path / "helpful-base" / "test.jsonl.gz",
                 [hh_row("q", "a", "b"), line, hh_row("r", "a", "b")])
    with pytest.raises(DataError) as err:
        load_pairs(str(f))
    assert str(err.value) == f"{f}:2: {message} {FIX}"
    pairs, skipped = load_pairs(str(f), skip_bad_rows=True)
    assert ([p.source for p in pairs], skipped) == ([f"{f}:1", f"{f}:3"], 1)


# --------------------------------------------------------------------------- LLMBar


def llmbar_row(i: int, label: int) -> dict:
    return {"input": f" Instruction {i}. ", "output_1": f"  out {i}a\n", "output_2": f"out {i}b",
            "label": label}


def test_llmbar_sets_labels_and_subsets(tmp_path):
    root = tmp_path / "llmbar"
    natural = write_json(root / "LLMBar" / "Natural" / "dataset.json",
                         [llmbar_row(1, 1), llmbar_row(2, 2)])
    write_json(root / "LLMBar" / "Adversarial" / "GPTInst" / "dataset.json", [llmbar_row(3, 2)])
    write_json(root / "Processed" / "MT-Bench" / "dataset.json", [llmbar_row(4, 1)])
    write_json(root / "Processed" / "LLMEval^2" / "dataset.json", [llmbar_row(5, 1)])
    pairs, skipped = load_pairs(str(root))
    assert skipped == 0
    assert [(p.subset, p.human) for p in pairs] == [
        ("Adversarial/GPTInst", 0.0), ("Natural", 1.0), ("Natural", 0.0), ("LLMEval2", 1.0),
        ("MT-Bench", 1.0)]
    p = pairs[1]
    assert (p.text, p.first, p.second) == ("Instruction 1.", "  out 1a\n", "out 1b")  # verbatim
    assert p.key == content_key("llmbar", "Instruction 1.", "  out 1a\n", "out 1b", 1.0)
    assert p.post_id == "lb" + post_key("Instruction 1.") and p.task == "instruction"
    assert p.source == f"{natural}[0]" and p.reference is None and p.votes == ()
    assert [p.subset for p in select(pairs, "all", "all", subset="Adversarial")] == [
        "Adversarial/GPTInst"]
    # one file alone; and the whole tree from a data root, by name or detected
    assert [p.subset for p in load_pairs(str(natural))[0]] == ["Natural", "Natural"]
    assert load_pairs(str(tmp_path), task="llmbar")[0] == pairs
    assert load_pairs(str(tmp_path))[0] == pairs  # no TL;DR there: detected


@pytest.mark.parametrize(
    "row, message",
    [
        ({**llmbar_row(2, 1), "label": 3}, "field 'label' must be 1 or 2, found 3"),
        ({**llmbar_row(2, 1), "label": True}, "field 'label' must be 1 or 2, found True"),
        ({k: v for k, v in llmbar_row(2, 1).items() if k != "output_2"},
         "missing field 'output_2'"),
        ({**llmbar_row(2, 1), "output_1": 5}, "field 'output_1' must be a string, found int"),
        ({**llmbar_row(2, 1), "input": " "}, "field 'input' is empty"),
        ("not an object", "row is not a JSON object"),
    ],
)
def test_llmbar_bad_row_names_file_and_index(tmp_path, row, message):
    f = write_json(tmp_path / "Natural" / "dataset.json",
                   [llmbar_row(1, 1), row, llmbar_row(3, 2)])
    with pytest.raises(DataError) as err:
        load_pairs(str(f))
    assert str(err.value) == f"{f}[1]: {message} {FIX}"
    pairs, skipped = load_pairs(str(f), skip_bad_rows=True)
    assert ([p.source for p in pairs], skipped) == ([f"{f}[0]", f"{f}[2]"], 1)


def test_json_array_that_is_not_json_names_the_file(tmp_path):
    f = tmp_path / "dataset.json"
    f.write_text('[{"input": "x", "output_1": "a", "output_2": "b", "label": 1},\n  {oops}]')
    with pytest.raises(DataError) as err:
        load_pairs(str(f), task="llmbar")
    assert str(err.value) == (
        f"{f}: bad JSON (Expecting property name enclosed in double quotes at line 2 column 4); "
        "fix the file (a JSON array of rows, or one JSON object per line)")


# --------------------------------------------------------------------------- PandaLM


def panda_row(idx: int, votes: tuple[int, int, int], given: str = "", r1="yes", r2="no") -> dict:
    return {"idx": idx, "motivation_app": "Grammarly", "cmp_key": "bloom-7b_llama-7b",
            "instruction": f"Task {idx}.", "input": given, "response1": r1, "response2": r2,
            "annotator1": votes[0], "annotator2": votes[1], "annotator3": votes[2]}


def test_pandalm_vote_shares_ties_and_text(tmp_path):
    f = write_json(tmp_path / "pandalm_testset" / "testset-v1.json", [
        panda_row(0, (1, 1, 1), given="  the input "),
        panda_row(1, (2, 2, 0)),
        panda_row(2, (0, 0, 0)),
        panda_row(3, (1, 2, 0)),
        panda_row(4, (1, 1, 2), r1=True),
        {**panda_row(5, (0, 1, 1)), "instruction": " ", "input": "Truthfulness"},
    ])
    pairs, _ = load_pairs(str(f.parent))
    assert [p.votes for p in pairs] == [(1.0, 1.0, 1.0), (0.0, 0.0, 0.5), (0.5, 0.5, 0.5),
                                        (1.0, 0.0, 0.5), (1.0, 1.0, 0.0), (0.5, 1.0, 1.0)]
    assert [p.human for p in pairs] == [1.0, 0.5 / 3, 0.5, 0.5, 2 / 3, 2.5 / 3]
    assert pairs[0].text == "Task 0.\n\nInput:\nthe input"
    assert pairs[1].text == "Task 1." and pairs[5].text == "Truthfulness"
    assert pairs[4].first == "True"  # JSON true in the upstream file: read as its text
    p = pairs[0]
    assert (p.subset, p.task, p.source, p.first, p.second) == (
        "bloom-7b_llama-7b", "instruction", f"{f}[0]", "yes", "no")
    assert p.key == content_key("pandalm", "Task 0.\n\nInput:\nthe input", "yes", "no", 1, 1, 1)
    assert p.post_id == "pl" + post_key(p.text)


def test_pandalm_bad_vote(tmp_path):
    f = write_json(tmp_path / "testset-v1.json", [panda_row(0, (1, 1, 1)), panda_row(1, (1, 3, 1))])
    with pytest.raises(DataError) as err:
        load_pairs(str(f))
    assert str(err.value) == f"{f}[1]: field 'annotator2' must be 0, 1 or 2, found 3 {FIX}"
    assert load_pairs(str(f), skip_bad_rows=True)[1] == 1


# --------------------------------------------------------------------------- Auto-J


def autoj_row(label: int, scenario: str = "chitchat", prompt: str = "Hi there") -> dict:
    return {"scenario": scenario, "label": label, "prompt": prompt,
            "response 1": "one two three", "response 2": "four"}


def test_autoj_labels_ties_and_scenarios(tmp_path):
    f = write_rows(tmp_path / "testdata_pairwise.jsonl",
                   [autoj_row(0), autoj_row(1, "math_reasoning", "2+2?"), autoj_row(2)])
    pairs, _ = load_pairs(str(tmp_path))
    assert [(p.human, p.subset) for p in pairs] == [
        (1.0, "chitchat"), (0.0, "math_reasoning"), (0.5, "chitchat")]
    p = pairs[0]
    assert (p.text, p.first, p.second, p.source) == (
        "Hi there", "one two three", "four", f"{f}:1")
    assert p.key == content_key("autoj", "chitchat", "Hi there", "one two three", "four", 1.0)
    assert p.post_id == "aj" + post_key("Hi there") == pairs[2].post_id
    assert pairs[2].key != p.key  # same texts, another label


@pytest.mark.parametrize(
    "row, message",
    [
        ({**autoj_row(0), "label": 3}, "field 'label' must be 0, 1 or 2, found 3"),
        ({k: v for k, v in autoj_row(0).items() if k != "response 1"},
         "missing field 'response 1'"),
        ({**autoj_row(0), "scenario": None}, "missing field 'scenario'"),
    ],
)
def test_autoj_bad_row(tmp_path, row, message):
    f = write_rows(tmp_path / "testdata_pairwise.jsonl", [autoj_row(0), row])
    with pytest.raises(DataError) as err:
        load_pairs(str(f))
    assert str(err.value) == f"{f}:2: {message} {FIX}"


# --------------------------------------------------------------------------- MT-Bench


def conversation(q1: str, a1: str, q2: str, a2: str) -> list[dict]:
    return [{"role": "user", "content": q1}, {"role": "assistant", "content": a1},
            {"role": "user", "content": q2}, {"role": "assistant", "content": a2}]


def mt_row(qid: int, turn: int, winner: str, judge: str) -> dict:
    """One vote in the lmsys release's format (each model's whole two-turn conversation)."""
    q1, q2 = f"Question {qid}?", f"Follow-up {qid}?"
    return {"question_id": qid, "model_a": "gpt-4", "model_b": "alpaca-13b", "winner": winner,
            "judge": judge, "turn": turn,
            "conversation_a": conversation(q1, f"A answers {qid}.", q2, f"A again {qid}."),
            "conversation_b": conversation(q1, f" B answers {qid}. ", q2, f"B again {qid}.")}


MT_ROWS = [mt_row(81, 1, "model_a", "expert_0"), mt_row(81, 2, "model_b", "expert_1"),
           mt_row(111, 1, "tie", "author_2"), mt_row(111, 2, "tie (bothbad)", "author_2")]
QUESTIONS = [{"question_id": 81, "category": "writing", "turns": ["Question 81?", "Follow-up 81?"]},
             {"question_id": 111, "category": "math", "turns": ["Question 111?", "Follow-up 111?"],
              "reference": ["Ref one.", " Ref two. "]}]


def mt_pair(f: Path, line: int, qid: int, turn: int, human: float, judge: str) -> Pair:
    a1, b1 = f"A answers {qid}.", f"B answers {qid}."
    if turn == 1:
        text, first, second = f"Question {qid}?", a1, b1
    else:
        text = f"User: Question {qid}?"
        first = f"{a1}\n\nUser: Follow-up {qid}?\n\nAssistant: A again {qid}."
        second = f"{b1}\n\nUser: Follow-up {qid}?\n\nAssistant: B again {qid}."
    key = content_key("mtbench", str(qid), turn, text, first, second, human, judge)
    return Pair(key, f"mt{qid}-t{turn}", text, "", "", first, second, human, None, judge,
                "instruction", f"{f}:{line}", None, f"turn{turn}")


def test_mtbench_rows_turns_ties_and_references_only_when_asked(tmp_path):
    f = write_jsonl(tmp_path / "mt_bench_human_judgments" / "human.jsonl", MT_ROWS)
    write_jsonl(tmp_path / "mt_bench_human_judgments" / "question.jsonl", QUESTIONS)
    pairs, skipped = load_pairs(str(f))
    assert skipped == 0 and pairs == [mt_pair(f, 1, 81, 1, 1.0, "expert_0"),
                                      mt_pair(f, 2, 81, 2, 0.0, "expert_1"),
                                      mt_pair(f, 3, 111, 1, 0.5, "author_2"),
                                      mt_pair(f, 4, 111, 2, 0.5, "author_2")]
    # the question file's references: attached only when asked (a judge that shows one)
    with_refs = attach_references(str(f), pairs)
    assert [p.reference for p in with_refs] == [
        None, None, "Ref one.", "Ref one.\n\nUser: Follow-up 111?\n\nAssistant: Ref two."]
    assert with_refs[2] == dataclasses.replace(pairs[2], reference="Ref one.")
    # the folder, named or detected (a data root reads TL;DR first), and by name from a root
    assert load_pairs(str(f.parent))[0] == pairs
    assert registry.detect(f).NAME == registry.detect(f.parent).NAME == "mtbench"
    assert load_pairs(str(tmp_path), task="mtbench")[0] == pairs
    assert attach_references(str(tmp_path), pairs, task="mtbench") == with_refs
    assert [p.subset for p in select(pairs, "all", "all", subset="turn2")] == ["turn2"] * 2
    # a reference that is one of the responses is not attached (it would give the pair away)
    same = write_jsonl(tmp_path / "same" / "human.jsonl", MT_ROWS[2:3])
    write_jsonl(tmp_path / "same" / "question.jsonl",
                [{**QUESTIONS[1], "reference": ["A answers 111.", "x"]}])
    assert attach_references(str(same), load_pairs(str(same))[0])[0].reference is None


def test_mtbench_json_array_file_without_question_file(tmp_path):
    f = write_json(tmp_path / "human_judgments.json", MT_ROWS[:2])
    pairs, _ = load_pairs(str(f))
    assert [(p.source, p.human) for p in pairs] == [(f"{f}[0]", 1.0), (f"{f}[1]", 0.0)]
    assert attach_references(str(f), pairs) == pairs  # no question.jsonl: no references


@pytest.mark.parametrize(
    "row, message",
    [
        ({**MT_ROWS[0], "winner": "model_c"},
         "field 'winner' must be 'model_a', 'model_b', 'tie' or 'tie (bothbad)', found "
         "'model_c'"),
        ({**MT_ROWS[0], "turn": 3}, "field 'turn' must be 1 or 2, found 3"),
        ({**MT_ROWS[1], "conversation_b": MT_ROWS[1]["conversation_b"][:3]},
         "field 'conversation_b' has 3 messages, too few for turn 2 (a user message and an "
         "answer per turn)"),
        ({**MT_ROWS[0], "conversation_a": "hi"},
         "field 'conversation_a' must be a list of {role, content} messages"),
        ({**MT_ROWS[0], "conversation_a": list(reversed(MT_ROWS[0]["conversation_a"]))},
         "field 'conversation_a' message 1 must be a user message and message 2 an assistant "
         "answer, found 'assistant' and 'user'"),
        ({**MT_ROWS[0], "conversation_b": conversation("Other?", "b", "q", "a")},
         "fields 'conversation_a' and 'conversation_b' ask different questions"),
        ({k: v for k, v in MT_ROWS[0].items() if k != "judge"}, "missing field 'judge'"),
    ],
)
def test_mtbench_bad_row_is_one_line_naming_file_and_line(tmp_path, row, message):
    f = write_rows(tmp_path / "human.jsonl", [MT_ROWS[0], row, MT_ROWS[2]])
    with pytest.raises(DataError) as err:
        load_pairs(str(f))
    assert str(err.value) == f"{f}:2: {message} {FIX}"
    pairs, skipped = load_pairs(str(f), skip_bad_rows=True)
    assert ([p.source for p in pairs], skipped) == ([f"{f}:1", f"{f}:3"], 1)


def test_mtbench_bad_question_file_is_one_line(tmp_path):
    f = write_rows(tmp_path / "human.jsonl", MT_ROWS)
    write_rows(tmp_path / "question.jsonl", [QUESTIONS[0], {**QUESTIONS[1], "reference": "x"}])
    pairs, _ = load_pairs(str(f))  # loading does not read it
    with pytest.raises(DataError) as err:
        attach_references(str(f), pairs)
    assert str(err.value) == (f"{tmp_path / 'question.jsonl'}:2: field 'reference' must be a "
                              "list of strings, one answer per turn (fix the question file, or "
                              "move it away to judge without references)")


def test_mtbench_hub_id_and_offline_message(monkeypatch):
    assert registry.hub_id("mtbench") == "lmsys/mt_bench_human_judgments"
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the [hub] extra were missing
    with pytest.raises(DataError) as err:
        load_pairs("hub:lmsys/mt_bench_human_judgments")
    assert str(err.value) == (
        "loading from the hub needs `datasets`: pip install 'rlaif-lab[hub]', or pass "
        "--data PATH / set RLAIF_DATA_DIR to a local copy (mt_bench_human_judgments/)")


# --------------------------------------------------------------------------- TL;DR references


def tldr_with(post: int, policies: tuple[str, str], texts: tuple[str, str]) -> dict:
    row = tldr_row(post)
    row["summaries"] = [{"text": f" {t}", "policy": p, "note": None}
                        for p, t in zip(policies, texts)]
    return row


def test_tldr_references_attach_only_when_asked_and_never_to_the_ref_summary(tmp_path):
    rows = [tldr_with(1, ("a", "b"), ("a says", "b says")),       # gets post 1's reference
            tldr_with(1, ("ref", "a"), ("The reference.", "a says")),  # holds it: none
            tldr_with(1, ("b", "ref"), ("b says", "The reference.")),  # holds it: none
            tldr_with(2, ("a", "b"), ("a two", "b two"))]        # post 2 has no reference
    f = write_rows(tmp_path / "c.json", rows)
    pairs, _ = load_pairs(str(f))
    assert all(p.reference is None for p in pairs)  # loading never attaches them
    got = attach_references(str(f), pairs)
    assert [p.reference for p in got] == ["The reference.", None, None, None]
    assert got[0] == dataclasses.replace(pairs[0], reference="The reference.")
    assert got[1:] == pairs[1:]
    # from a folder too, and the hub (no references known there) leaves pairs as they are
    assert attach_references(str(tmp_path), pairs) == got
    assert attach_references("hub:openai/summarize_from_feedback", pairs) == pairs
    # loaders without references leave pairs as they are
    hh_file = write_gz(tmp_path / "hh" / "test.jsonl.gz", [hh_row("q", "a", "b")])
    hh_pairs = load_pairs(str(hh_file))[0]
    assert attach_references(str(hh_file), hh_pairs) == hh_pairs


def test_real_tldr_and_cnndm_references():
    root = real("summarize_from_feedback_comparisons")
    pairs, _ = load_pairs(str(root.parent))
    assert attach_references(str(root.parent), pairs) == pairs  # batch13 has no 'ref' summary
    cnndm = str(root / "batch0_cnndm.json")
    pairs, _ = load_pairs(cnndm, skip_bad_rows=True)
    got = attach_references(cnndm, pairs)
    assert sum(p.reference is not None for p in got) == 208
    assert len({p.post_id for p in got if p.reference}) == 45


# --------------------------------------------------------------------------- registry


def data_root(tmp_path: Path) -> Path:
    """A data root holding all six datasets (a few rows each)."""
    root = tmp_path / "data"
    write_rows((root / "summarize_from_feedback_comparisons").mkdir(parents=True)
               or root / "summarize_from_feedback_comparisons" / "batch1.json", [tldr_row(1)])
    write_gz(root / "hh_rlhf_test" / "helpful-base" / "test.jsonl.gz", [hh_row("q", "a", "b")])
    write_json(root / "llmbar" / "LLMBar" / "Natural" / "dataset.json",
               [llmbar_row(1, 1), llmbar_row(2, 2)])
    write_json(root / "pandalm_testset" / "testset-v1.json",
               [panda_row(i, (1, 1, 1)) for i in range(3)])
    (root / "autoj_pairwise_test").mkdir()
    write_rows(root / "autoj_pairwise_test" / "testdata_pairwise.jsonl", [autoj_row(0)] * 4)
    write_jsonl(root / "mt_bench_human_judgments" / "human.jsonl", MT_ROWS)
    return root


def test_a_data_root_reads_tldr_unless_a_task_is_named(tmp_path):
    root = data_root(tmp_path)
    pairs, _ = load_pairs(str(root))
    assert [p.task for p in pairs] == ["summarize"] and pairs[0].post_id == "t3_post1"
    counts = {t: len(load_pairs(str(root), task=t)[0]) for t in registry.LOADERS}
    assert counts == {"tldr": 1, "hh": 1, "llmbar": 2, "pandalm": 3, "autoj": 4, "mtbench": 4}
    # each dataset's own folder is detected
    for task, folder in [("hh", "hh_rlhf_test"), ("llmbar", "llmbar"),
                         ("pandalm", "pandalm_testset"), ("autoj", "autoj_pairwise_test"),
                         ("mtbench", "mt_bench_human_judgments")]:
        assert registry.detect(root / folder).NAME == task
    assert load_pairs(str(root / "autoj_pairwise_test"))[0][3].key.endswith("~4")  # repeats
    with pytest.raises(DataError) as err:
        load_pairs(str(root), task="mt-bench")
    assert str(err.value) == ("unknown dataset task 'mt-bench'; use one of tldr, hh, llmbar, "
                              "pandalm, autoj, mtbench")
    with pytest.raises(DataError, match="include_edits reads TL;DR edit_\\* files; hh has none"):
        load_pairs(str(root), task="hh", include_edits=True)


def test_named_task_where_its_files_are_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_pairs(str(tmp_path / "empty"), task="autoj")
    assert str(err.value) == (f"{tmp_path / 'empty'}: no testdata_pairwise.jsonl; pass --data "
                              "with a copy of github.com/GAIR-NLP/auto-j, "
                              "data/test/testdata_pairwise.jsonl")
    with pytest.raises(DataError) as err:
        load_pairs(str(tmp_path / "nope"), task="hh")
    assert str(err.value) == (f"{tmp_path / 'nope'}: no such file or folder; pass --data PATH "
                              "or set RLAIF_DATA_DIR (e.g. ../shared/data)")


def test_hub_fallback_ids_and_offline_messages(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RLAIF_DATA_DIR", raising=False)
    assert resolve_data_path(None) == "hub:openai/summarize_from_feedback"
    assert resolve_data_path(None, task="hh") == "hub:Anthropic/hh-rlhf"
    with pytest.raises(DataError) as err:
        resolve_data_path(None, task="llmbar")
    assert str(err.value) == ("llmbar: no hub copy known to the lab; pass --data PATH or set "
                              "RLAIF_DATA_DIR to a folder holding llmbar/")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the [hub] extra were missing
    with pytest.raises(DataError) as err:
        load_pairs("hub:Anthropic/hh-rlhf")
    assert str(err.value) == (
        "loading from the hub needs `datasets`: pip install 'rlaif-lab[hub]', or pass "
        "--data PATH / set RLAIF_DATA_DIR to a local copy (hh_rlhf_test/)")
    with pytest.raises(DataError, match="pandalm: no hub copy known"):
        load_pairs("hub:WeOpenML/PandaLM", task="pandalm")


# --------------------------------------------------------------------------- identity


def test_new_fields_stay_out_of_the_identity_until_set():
    p = Pair("k", "t3_x", "post", "title", "sub", "a", "b", 1.0, 2, "w")
    assert set(identity_fields(p)) == {"key", "post_id", "text", "title", "subreddit", "first",
                                       "second", "human", "confidence", "worker", "task"}
    q = Pair("k", "x", "post", "", "", "a", "b", 0.5, None, "", "instruction", "f:1",
             reference="ref", subset="Natural", votes=(0.5, 1.0, 0.0))
    assert {k: identity_fields(q)[k] for k in ("reference", "subset", "votes")} == {
        "reference": "ref", "subset": "Natural", "votes": (0.5, 1.0, 0.0)}


def real(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"no {path} (set RLAIF_DATA_DIR to the shared data folder)")
    return path


def test_tldr_content_keys_and_run_identities_are_unchanged():
    """Keys, post ids and run-identity data hashes computed before lab.datasets existed."""
    from lab.config import RunConfig
    from lab.experiment import run_identity

    root = real("summarize_from_feedback_comparisons")
    pairs, _ = load_pairs(str(root.parent))
    assert [p.key for p in pairs[:3]] == ["7bf64a0d1cc44112", "e65282010ef2cd81",
                                          "4649acc81ba7a565"]
    assert pairs[-1].key == "6442d9b46dfd8ae5"
    assert run_identity(RunConfig(), pairs[:5], [])["data"] == "07ce171aedccbabd"
    assert run_identity(RunConfig(), pairs, [])["data"] == "3b6eb4303d46c0a3"

    def digest(ps: list[Pair]) -> str:
        return hashlib.sha256("\n".join(p.key + " " + p.post_id for p in ps).encode()
                              ).hexdigest()[:16]

    with_edits, _ = load_pairs(str(root.parent), include_edits=True)
    cnndm, skipped = load_pairs(str(root / "batch0_cnndm.json"), skip_bad_rows=True)
    assert (len(with_edits), digest(with_edits)) == (1102, "9bf1f693a9f6be90")
    assert (len(cnndm), skipped, digest(cnndm)) == (425, 12, "96f7e4ab7ba0afb5")
    assert all(p.subset == "" and p.votes == () and p.reference is None for p in with_edits)


# --------------------------------------------------------------------------- real copies


def test_real_hh_rlhf_test_splits():
    pairs, skipped = load_pairs(str(real("hh_rlhf_test")))
    sizes = {s: sum(p.subset == s for p in pairs) for s in hh.SUBSETS}
    assert (len(pairs), skipped) == (8552, 0)  # README: the full published test set
    assert sizes == {"harmless-base": 2312, "helpful-base": 2354, "helpful-online": 1137,
                     "helpful-rejection-sampled": 2749}
    assert 0.45 < sum(p.human for p in pairs) / len(pairs) < 0.55
    parts: dict[str, set] = {}
    for p in pairs:
        parts.setdefault(p.post_id, set()).add(split_of(p.post_id))
    assert all(len(s) == 1 for s in parts.values())


def test_real_llmbar_sets():
    pairs, skipped = load_pairs(str(real("llmbar")))
    counts: dict[str, list[int]] = {}
    for p in pairs:
        c = counts.setdefault(p.subset, [0, 0])
        c[0 if p.human == 1.0 else 1] += 1
    assert skipped == 0 and counts == {  # README: label 1 / label 2 per set
        "MT-Bench": [101, 99], "FairEval": [41, 25], "LLMEval2": [92, 108],
        "Natural": [42, 58], "Adversarial/Neighbor": [75, 59], "Adversarial/GPTInst": [45, 47],
        "Adversarial/GPTOut": [22, 25], "Adversarial/Manual": [22, 24]}


def test_real_pandalm_testset():
    pairs, skipped = load_pairs(str(real("pandalm_testset")))
    assert (len(pairs), skipped) == (999, 0)
    assert len({p.text for p in pairs}) == 170 and len({p.subset for p in pairs}) == 10
    assert sum(len(set(p.votes)) == 1 for p in pairs) == 879  # all three agree
    first_votes = [p.votes[0] for p in pairs]  # annotator1: 2 -> 475, 1 -> 427, 0 -> 97
    assert [first_votes.count(v) for v in (0.0, 1.0, 0.5)] == [475, 427, 97]
    assert sum(p.human == 0.5 for p in pairs) == 85


def test_real_autoj_pairwise():
    pairs, skipped = load_pairs(str(real("autoj_pairwise_test")))
    assert (len(pairs), skipped) == (1392, 0)
    assert [sum(p.human == h for p in pairs) for h in (1.0, 0.0, 0.5)] == [520, 499, 373]
    scenarios = {p.subset for p in pairs}
    assert len(scenarios) == 58 and all(
        sum(p.subset == s for p in pairs) == 24 for s in scenarios)
    # README: 1,182 distinct prompts; two differ only in surrounding whitespace (stripped
    # here) and two more only in case or inner whitespace (one source id for splits)
    assert len({p.text for p in pairs}) == 1181 and len({p.post_id for p in pairs}) == 1179


# --------------------------------------------------------------------------- rlaif data


def test_subset_stats_by_hand():
    def pair(first: str, second: str, human: float, subset: str, post: str) -> Pair:
        return Pair("k", post, "t", "", "", first, second, human, None, "", "instruction",
                    subset=subset)

    pairs = [pair("a b c", "d", 1.0, "x", "p1"),      # longer (3 words) preferred
             pair("a", "b c", 1.0, "x", "p1"),        # shorter preferred
             pair("a b", "c d e f", 0.5, "x", "p2"),  # tie: not counted for length
             pair("a b", "c d", 0.0, "y", "p3")]      # equal length: not counted
    rows = stats.table(pairs)
    assert [(r.subset, r.rows, r.ids, r.ties, r.longer_won, r.decided, r.words) for r in rows] == [
        ("x", 3, 2, 1 / 3, 0.5, 2, 13 / 6),
        ("y", 1, 1, 0.0, None, 0, 2.0),
        ("all", 4, 3, 0.25, 0.5, 2, 17 / 8)]


def test_rlaif_data_prints_one_table(tmp_path, capsys):
    f = write_rows(tmp_path / "testdata_pairwise.jsonl",
                   [autoj_row(0), autoj_row(1, "math_reasoning", "2+2?"), autoj_row(2)])
    assert main(["data", str(tmp_path), "--task", "autoj"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path}: 3 pairs (instruction)",
        "subset            rows     ids   ties  longer won  (of n)  words/resp",
        "chitchat             2       1  0.500       1.000       1         2.0",
        "math_reasoning       1       1  0.000       0.000       1         2.0",
        "all                  3       2  0.333       0.500       2         2.0"]
    assert f.exists()
