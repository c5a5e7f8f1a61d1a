"""A labeling run: files written, resume after a kill, config guard."""

from __future__ import annotations

import json

import pytest

from lab.backends import BackendConfig
from lab.backends.fake import FakeBackend
from lab.config import ConfigError, RunConfig
from lab.data import DataConfig
from lab.run import RunError, read_records, run_label
from tests.conftest import tldr_row, write_rows


def make_config(path, n=None, **fake) -> RunConfig:
    return RunConfig(
        data=DataConfig(path=str(path), confidence="all", split="all", n=n),
        backend=BackendConfig(backend="fake", fake=fake or {"length": 1.0}),
    )


@pytest.fixture
def data_file(tmp_path):
    rows = [tldr_row(i, choice=i % 2, confidence=[1, 3, 7, 9][i % 4]) for i in range(12)]
    return write_rows(tmp_path / "c.json", rows)


def test_run_writes_config_labels_metrics(tmp_path, data_file):
    out = tmp_path / "run"
    run_label(make_config(data_file), out, progress=False)
    assert json.loads((out / "config.json").read_text()) == make_config(data_file).to_dict()
    assert RunConfig.load(out / "config.json") == make_config(data_file)
    assert len(read_records(out / "labels.jsonl")) == 12
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("alignment", "alignment_ci", "n", "position_bias", "length_bias",
                "length_baseline", "seconds_per_pair"):
        assert key in saved
    # the fake prefers the longer summary (the second); humans chose the first on even rows
    assert saved["alignment"] == pytest.approx(0.5) and saved["length_bias"] == 1.0


def test_resume_after_kill_labels_only_missing_pairs(tmp_path, data_file):
    out = tmp_path / "run"
    config = make_config(data_file)
    run_label(config, out, progress=False)
    full = (out / "labels.jsonl").read_text().splitlines(keepends=True)
    # Simulate a kill: 5 finished lines and half of the sixth written.
    (out / "labels.jsonl").write_text("".join(full[:5]) + full[5][:20])
    backend = FakeBackend(length=1.0)
    m = run_label(config, out, backend=backend, progress=False)
    assert backend.calls["score"] == 2 * 7  # both orders of the 7 missing pairs only
    again = read_records(out / "labels.jsonl")
    assert [r["key"] for r in again[:5]] == [json.loads(x)["key"] for x in full[:5]]
    assert sorted(r["key"] for r in again) == sorted(json.loads(x)["key"] for x in full)
    assert m["n"] == 12
    backend = FakeBackend(length=1.0)
    run_label(config, out, backend=backend, progress=False)
    assert backend.calls["score"] == 0  # nothing left to do


def test_duplicate_judgments_are_labeled_once(tmp_path):
    rows = [tldr_row(1, choice=0), tldr_row(1, choice=1), tldr_row(2)]
    f = write_rows(tmp_path / "c.json", rows)
    backend = FakeBackend(length=1.0)
    m = run_label(make_config(f), tmp_path / "run", backend=backend, progress=False)
    assert backend.calls["score"] == 4 and m["n"] == 3
    records = read_records(tmp_path / "run" / "labels.jsonl")
    assert [r["human"] for r in records] == [1.0, 0.0, 1.0]
    assert records[1]["cache_hit"] and records[1]["p"] == records[0]["p"]
    assert not records[0]["cache_hit"] and records[1]["seconds"] == records[0]["seconds"]


def test_other_config_in_same_folder_is_refused(tmp_path, data_file):
    run_label(make_config(data_file), tmp_path / "run", progress=False)
    with pytest.raises(RunError, match=r"holds a run with another config \(backend.fake.length "
                       r"is 1.0 there, None now\); pass a new --out"):
        run_label(make_config(data_file, position=1.0), tmp_path / "run", progress=False)


def test_unknown_config_key_names_key_and_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("prompt:\n  preambel: base\n")
    with pytest.raises(ConfigError) as err:
        RunConfig.load(f)
    assert str(err.value).startswith(f"{f}: prompt: unknown key 'preambel'")
    f.write_text("sampler: grid\n")
    with pytest.raises(ConfigError, match="unknown section 'sampler'"):
        RunConfig.load(f)


def test_self_consistency_needs_temperature():
    with pytest.raises(ConfigError, match="needs decode.temperature > 0"):
        RunConfig.from_dict({"prompt": {"cot": True}, "decode": {"samples": 4}})


class _Precise(FakeBackend):
    """The fake backend claiming a number format, as the transformers backend reports it."""

    def __init__(self, precision: str, **knobs) -> None:
        super().__init__(**knobs)
        self.precision = precision


def test_labels_of_another_precision_are_not_mixed_in(tmp_path, data_file):
    out = tmp_path / "run"
    half = make_config(data_file, n=6)
    run_label(half, out, backend=_Precise("torch.bfloat16", length=1.0), progress=False)
    records = read_records(out / "labels.jsonl")
    assert {r["precision"] for r in records} == {"torch.bfloat16"}
    # the same run resumed with an fp32 head: refused, and nothing was appended
    with pytest.raises(RunError, match="was labeled with logits in torch.bfloat16, this run "
                                       "computes them in torch.bfloat16\\+fp32-head"):
        run_label(half, out, backend=_Precise("torch.bfloat16+fp32-head", length=1.0),
                  progress=False)
    assert read_records(out / "labels.jsonl") == records
    # records from before the field existed: fine for fp32, refused for any 16-bit format
    legacy = [{k: v for k, v in r.items() if k != "precision"} for r in records]
    (out / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in legacy))
    run_label(half, out, backend=_Precise("torch.float32", length=1.0), progress=False)
    with pytest.raises(RunError, match="the model dtype \\(before fp32 scoring heads\\)"):
        run_label(half, out, backend=_Precise("torch.bfloat16+fp32-head", length=1.0),
                  progress=False)
