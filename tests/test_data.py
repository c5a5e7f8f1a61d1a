"""Stage 1: loading, validating and slicing human comparisons."""

from __future__ import annotations

import gzip
import json

import pytest

from lab.data import (
    DataError,
    content_key,
    exemplar_pool,
    load_pairs,
    post_key,
    select,
    split_of,
)
from tests.conftest import tldr_row, write_rows


def test_loads_openai_format(tmp_path):
    f = write_rows(tmp_path / "c.json", [tldr_row(1, choice=0, confidence=2),
                                         tldr_row(2, choice=1, confidence=8)])
    pairs, skipped = load_pairs(str(f))
    assert skipped == 0
    assert [p.human for p in pairs] == [1.0, 0.0]
    assert [p.confidence for p in pairs] == [2, 8]
    p = pairs[0]
    assert p.source == f"{f}:1" and p.post_id == "t3_post1" and p.subreddit == "pets"
    # the key is the judgment's content, not its place in the file
    assert p.key == content_key("title 1", p.text, "cat 1 ate homework",
                                "a very long and winding summary about animal number 1",
                                1.0, 2, "w1")
    assert p.first == "cat 1 ate homework"  # leading space of the TL;DR continuation dropped
    assert p.worker == "w1" and p.task == "summarize"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: "{not json", "c.json:2: bad JSON"),
        (lambda r: {**r, "info": {**r["info"], "post": None}},
         "c.json:2: missing field 'info.post'"),
        (lambda r: {**r, "summaries": r["summaries"][:1]}, "exactly two summaries, found 1"),
        (lambda r: {**r, "choice": 2}, "field 'choice' must be 0 or 1, found 2"),
        (lambda r: {k: v for k, v in r.items() if k != "extra"},
         "missing field 'extra.confidence'"),
        (lambda r: {k: v for k, v in r.items() if k != "worker"}, "missing field 'worker'"),
        (lambda r: {**r, "summaries": [{"txt": "a"}, {"text": "b"}]}, "'summaries[0].text'"),
    ],
)
def test_malformed_row_names_file_line_and_field(tmp_path, mutate, message):
    f = write_rows(tmp_path / "c.json", [tldr_row(1), mutate(tldr_row(2)), tldr_row(3)])
    with pytest.raises(DataError) as err:
        load_pairs(str(f))
    assert message in str(err.value)
    assert str(f) in str(err.value) and "--skip-bad-rows" in str(err.value)
    assert "\n" not in str(err.value)
    pairs, skipped = load_pairs(str(f), skip_bad_rows=True)
    assert ([p.source for p in pairs], skipped) == ([f"{f}:1", f"{f}:3"], 1)


def test_repeated_judgment_gets_a_distinct_key_and_moving_rows_keeps_keys(tmp_path):
    a = write_rows(tmp_path / "a.json", [tldr_row(1), tldr_row(2), tldr_row(1)])
    b = write_rows(tmp_path / "b.json", [tldr_row(2), tldr_row(1)])
    ka = [p.key for p in load_pairs(str(a))[0]]
    kb = [p.key for p in load_pairs(str(b))[0]]
    assert ka[2] == ka[0] + "~2" and len(set(ka)) == 3
    assert kb == [ka[1], ka[0]]


def test_missing_path_says_how_to_point_at_data(tmp_path):
    with pytest.raises(DataError, match="RLAIF_DATA_DIR"):
        load_pairs(str(tmp_path / "nope"))


def test_hh_rlhf_rows(tmp_path):
    rows = [
        {"chosen": f"\n\nHuman: hi?\n\nAssistant: hello, how can I help? ({i})",
         "rejected": "\n\nHuman: hi?\n\nAssistant: go away"}
        for i in range(20)
    ]
    f = tmp_path / "test.jsonl.gz"
    with gzip.open(f, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    pairs, _ = load_pairs(str(f))
    assert len(pairs) == 20 and all(p.task == "dialogue" for p in pairs)
    assert all(p.text == "Human: hi?" for p in pairs)
    for p in pairs:  # the chosen reply is wherever the label says it is
        better = p.first if p.human == 1.0 else p.second
        assert better.startswith("hello, how can I help?")
    # both positions occur (a coin flip by content, so the same row always lands the same way)
    assert 0 < sum(p.human for p in pairs) < 20


def test_select_confidence_sample_and_split(tmp_path):
    rows = [tldr_row(i, confidence=c) for i, c in enumerate([1, 2, 3, 4, 6, 7, 8, 9] * 25)]
    pairs, _ = load_pairs(str(write_rows(tmp_path / "c.json", rows)))
    high = select(pairs, "high", "all")
    assert len(high) == 100 and {p.confidence for p in high} == {1, 2, 8, 9}
    assert len(select(pairs, "all", "all")) == 200
    a, b = select(pairs, "all", "all", n=30, seed=1), select(pairs, "all", "all", n=30, seed=1)
    assert [p.key for p in a] == [p.key for p in b] and len(a) == 30
    assert [p.key for p in a] != [p.key for p in select(pairs, "all", "all", n=30, seed=2)]
    parts = {s: {p.post_id for p in select(pairs, "all", s)} for s in ("pool", "dev", "test")}
    assert not (parts["pool"] & parts["dev"] or parts["pool"] & parts["test"]
                or parts["dev"] & parts["test"])
    assert sum(len(v) for v in parts.values()) == 200
    assert {p.post_id for p in select(pairs, "all", "eval")} == parts["dev"] | parts["test"]


def test_split_is_by_post_and_stable():
    assert split_of("t3_4ne9lx") == split_of("t3_4ne9lx")
    counts = {s: 0 for s in ("pool", "dev", "test")}
    for i in range(5000):
        counts[split_of(f"t3_{i}")] += 1
    assert 400 < counts["pool"] < 600 and 2000 < counts["dev"] < 2500


def test_real_tldr_folder(real_data):
    pairs, skipped = load_pairs(str(real_data))
    assert skipped == 0
    # batch13 (1097); CNN/DM and the edit file are left out of a folder load by default
    assert len(pairs) == 1097 and not any(p.key.startswith("edit_") for p in pairs)
    assert len(select(pairs, "high", "all")) == 549
    assert len(exemplar_pool(pairs)) > 20
    with_edits, _ = load_pairs(str(real_data), include_edits=True)
    assert len(with_edits) == 1102 and with_edits[:1097] == pairs
    by_post = {}
    for p in pairs:
        by_post.setdefault(p.post_id, set()).add(split_of(p.post_id))
    assert all(len(s) == 1 for s in by_post.values())


def test_real_hh_rlhf_split(real_data):
    path = real_data / "hh_rlhf_test" / "helpful-base" / "test.jsonl.gz"
    pairs, skipped = load_pairs(str(path))
    assert (len(pairs), skipped) == (2354, 0)  # the published test size
    assert 0.45 < sum(p.human for p in pairs) / len(pairs) < 0.55
    assert all(p.text.startswith("Human:") and p.task == "dialogue" for p in pairs)


def test_data_dir_variable_stands_in_for_a_missing_shipped_path(tmp_path, monkeypatch):
    from lab.data import resolve_data_path

    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    monkeypatch.delenv("RLAIF_DATA_DIR", raising=False)
    assert resolve_data_path("../shared/data") == "../shared/data"  # error names it later
    monkeypatch.setenv("RLAIF_DATA_DIR", str(tmp_path))
    assert resolve_data_path("../shared/data") == str(tmp_path)
    # any other missing path (a typo in --data) is kept: the error names it
    assert resolve_data_path("../no/such/data") == "../no/such/data"
    assert resolve_data_path(str(tmp_path / "..")) == str(tmp_path / "..")  # exists: kept
    assert resolve_data_path(None) == str(tmp_path)
    # a file under the shipped path: the same file under the variable's folder
    assert resolve_data_path("../shared/data/x/batch0.json") == str(tmp_path / "x" / "batch0.json")
    monkeypatch.delenv("RLAIF_DATA_DIR")
    assert resolve_data_path("../shared/data/x/batch0.json") == "../shared/data/x/batch0.json"


def test_row_without_id_takes_the_id_of_the_same_post(tmp_path):
    row = tldr_row(1, post="My  Cat ate\nthe homework.")
    edit = tldr_row(2, post="my cat ate the   homework.")
    del edit["info"]["id"]
    other = tldr_row(3, post="A different post.")
    del other["info"]["id"]
    write_rows(tmp_path / "batch.json", [row])
    write_rows(tmp_path / "edit_x.json", [edit, other])
    pairs, _ = load_pairs(str(tmp_path), include_edits=True)
    hashed = "h" + post_key("A different post.")
    assert [p.post_id for p in pairs] == ["t3_post1", "t3_post1", hashed]
    # the default folder load leaves the edit_* file out; naming the file reads it
    assert [p.source for p in load_pairs(str(tmp_path))[0]] == [f"{tmp_path / 'batch.json'}:1"]
    assert len(load_pairs(str(tmp_path / "edit_x.json"))[0]) == 2


def test_no_post_text_in_two_splits_of_the_shipped_data(real_data):
    tldr = real_data / "summarize_from_feedback_comparisons"
    sources = {
        "tldr with edits": load_pairs(str(real_data), include_edits=True)[0],
        "cnndm": load_pairs(str(tldr / "batch0_cnndm.json"), skip_bad_rows=True)[0],
        "hh helpful-base": load_pairs(
            str(real_data / "hh_rlhf_test" / "helpful-base" / "test.jsonl.gz"))[0],
    }
    for name, pairs in sources.items():
        splits: dict[str, set] = {}
        for p in pairs:
            splits.setdefault(post_key(p.text), set()).add(split_of(p.post_id))
        leaked = [k for k, s in splits.items() if len(s) > 1]
        assert leaked == [], f"{name}: {len(leaked)} post texts in two splits"
