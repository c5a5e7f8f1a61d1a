"""Batched labeling: ``Labeler.label_many`` gives the records one-at-a-time labeling gives,
with one backend call per stage for a chunk, and a run that dies mid-chunk loses at most that
chunk (fault injected with the fake backend's ``fail_at_call``)."""

from __future__ import annotations

import json

import pytest

from lab.backends import BackendConfig, batch_pairs
from lab.backends.fake import FakeBackend, FakeFault
from lab.cache import LabelCache
from lab.config import RunConfig
from lab.data import DataConfig, Pair
from lab.errors import ConfigError
from lab.label import DecodeConfig, Labeler
from lab.prompts import PromptConfig
from lab.run import read_records, run_label
from tests.conftest import tldr_row, write_rows

KNOBS = dict(length=0.7, skill=2.0, noise=0.5, rationale=1.5)
SETTINGS = {
    "direct": (PromptConfig("base"), DecodeConfig()),
    "cot": (PromptConfig("base", cot=True), DecodeConfig()),
    "self-consistency": (PromptConfig("base", cot=True),
                         DecodeConfig(samples=3, temperature=1.0, seed=5)),
}


def pairs(n: int) -> list[Pair]:
    return [Pair(f"k{i}", f"t3_{i}", f"My cat number {i} ate my homework and the dog food.",
                 "", "", f"cat {i} ate homework", f"a long summary about cat {i} and a dog",
                 float(i % 2), 2, "w") for i in range(n)]


def strip(record: dict) -> str:
    """A record as saved, without its timing."""
    return json.dumps({k: v for k, v in record.items() if k != "seconds"})


def cache_rows(cache: LabelCache) -> list[tuple[str, str]]:
    rows = cache._db.execute("SELECT key, value FROM labels ORDER BY key").fetchall()
    return [(k, strip(json.loads(v))) for k, v in rows]


@pytest.mark.parametrize("setting", SETTINGS)
def test_label_many_records_equal_one_at_a_time(setting):
    prompt, decode = SETTINGS[setting]
    chunk = pairs(6)
    chunk.insert(3, chunk[1])  # a repeat within the chunk: alone, a cache hit
    ones, many = LabelCache(), LabelCache()
    for cache in (ones, many):  # one pair already cached before the chunk
        Labeler(FakeBackend(**KNOBS), prompt, decode, [], cache).label(chunk[4])
    alone = Labeler(FakeBackend(**KNOBS), prompt, decode, [], ones)
    together = Labeler(FakeBackend(**KNOBS), prompt, decode, [], many)
    expected = [alone.label(p) for p in chunk]
    got = list(together.label_many(chunk))
    assert [strip(r) for r in got] == [strip(r) for r in expected]
    assert [r["cache_hit"] for r in got] == [False, False, False, True, True, False, False]
    assert cache_rows(many) == cache_rows(ones) and len(cache_rows(many)) == 6
    assert (many.hits, many.misses) == (ones.hits, ones.misses) == (2, 6)
    # 5 pairs computed: 5 score calls one at a time (and 5 generate calls with CoT), 1 batched
    stages = 2 if prompt.cot else 1
    assert alone.backend.backend_calls == 5 * stages
    assert together.backend.backend_calls == stages
    assert together.backend.calls == alone.backend.calls


def test_one_call_per_stage_carries_every_prompt_of_the_chunk():
    lab = Labeler(FakeBackend(**KNOBS), *SETTINGS["self-consistency"], [])
    records = list(lab.label_many(pairs(4)))
    # 4 pairs x 2 orders decoded in one call, 3 rationales each scored in one call
    assert lab.backend.backend_calls == 2
    assert lab.backend.calls == {"score": 4 * 2 * 3, "generate": 4 * 2 * 3}
    assert [len(r["rationales"]["fwd"]) for r in records] == [3] * 4


class OneSeedBackend(FakeBackend):
    """A backend whose ``generate`` takes one seed per call (as the transformers one)."""

    per_prompt_seeds = False

    def generate(self, prompts, n, max_tokens, temperature, seed):
        assert isinstance(seed, int) and len(prompts) == 2
        return super().generate(prompts, n, max_tokens, temperature, seed)


def test_backend_with_one_seed_per_call_decodes_pair_by_pair():
    prompt, decode = SETTINGS["self-consistency"]
    alone = Labeler(OneSeedBackend(**KNOBS), prompt, decode, [])
    lab = Labeler(OneSeedBackend(**KNOBS), prompt, decode, [])
    got = list(lab.label_many(pairs(3)))
    assert [strip(r) for r in got] == [strip(alone.label(p)) for p in pairs(3)]
    assert lab.backend.backend_calls == 3 + 1  # a generate call per pair, one score call


def test_batch_pairs_defaults_per_backend():
    assert batch_pairs(BackendConfig("transformers")) == 1
    assert batch_pairs(BackendConfig("vllm")) == 64
    assert batch_pairs(BackendConfig("openai")) == 16
    assert batch_pairs(BackendConfig("openai", concurrency=3)) == 6
    assert batch_pairs(BackendConfig("fake")) == 1
    assert batch_pairs(BackendConfig("transformers", batch_pairs=5)) == 5
    with pytest.raises(ConfigError, match=r"backend.batch_pairs must be >= 1, not 0"):
        batch_pairs(BackendConfig("fake", batch_pairs=0))


def run_config(path, cot: bool, batch: int) -> RunConfig:
    return RunConfig(data=DataConfig(path=str(path), confidence="all", split="all"),
                     prompt=PromptConfig("base", cot=cot),
                     backend=BackendConfig(backend="fake", fake=KNOBS, batch_pairs=batch))


@pytest.mark.parametrize("cot, fail_at, kept", [
    (False, 1, 0), (False, 3, 8), (True, 2, 0), (True, 4, 4), (True, 5, 8)])
def test_a_run_killed_mid_chunk_loses_only_that_chunk(tmp_path, cot, fail_at, kept):
    data = write_rows(tmp_path / "c.json", [tldr_row(i, choice=i % 2) for i in range(12)])
    config = run_config(data, cot, batch=4)  # 3 chunks; with CoT 2 calls per chunk
    run_label(config, tmp_path / "clean", backend=FakeBackend(**KNOBS), progress=False)
    clean = [strip(r) for r in read_records(tmp_path / "clean" / "labels.jsonl")]
    out = tmp_path / "run"
    with pytest.raises(FakeFault, match=f"injected fault at call {fail_at}"):
        run_label(config, out, backend=FakeBackend(**KNOBS, fail_at_call=fail_at),
                  progress=False)
    assert [strip(r) for r in read_records(out / "labels.jsonl")] == clean[:kept]
    again = FakeBackend(**KNOBS)
    run_label(config, out, backend=again, progress=False)  # resume: only the missing pairs
    assert again.calls["score"] == (12 - kept) * 2
    assert again.backend_calls == (12 - kept) // 4 * (2 if cot else 1)
    assert [strip(r) for r in read_records(out / "labels.jsonl")] == clean


def test_batched_run_equals_one_pair_run(tmp_path):
    data = write_rows(tmp_path / "c.json", [tldr_row(i, choice=i % 2) for i in range(10)])
    files = {}
    for batch in (1, 3, 64):
        out = tmp_path / f"b{batch}"
        backend = FakeBackend(**KNOBS)
        run_label(run_config(data, True, batch), out, backend=backend, progress=False)
        files[batch] = [strip(r) for r in read_records(out / "labels.jsonl")]
        assert backend.backend_calls == 2 * -(-10 // batch)  # generate + score per chunk
    assert files[1] == files[3] == files[64] and len(files[1]) == 10


def test_label_flags_reach_the_backend_config():
    from lab.cli import build_parser, resolve_label_config

    args = build_parser().parse_args([
        "label", "--out", "x", "--backend", "openai", "--batch-pairs", "32",
        "--concurrency", "12", "--timeout", "7.5", "--max-retries", "1", "--retry-budget", "30",
        "--top-logprobs", "5"])
    b = resolve_label_config(args).backend
    assert (b.batch_pairs, b.concurrency, b.timeout, b.max_retries, b.retry_budget,
            b.top_logprobs) == (32, 12, 7.5, 1, 30.0, 5)
    defaults = resolve_label_config(build_parser().parse_args(["label", "--out", "x"])).backend
    assert (defaults.batch_pairs, defaults.timeout, defaults.max_retries,
            defaults.retry_budget, defaults.top_logprobs) == (None, 60.0, 3, 300.0, 20)


def test_a_run_resumes_with_other_execution_settings(tmp_path):
    data = write_rows(tmp_path / "c.json", [tldr_row(i, choice=i % 2) for i in range(8)])
    out = tmp_path / "run"
    with pytest.raises(FakeFault):
        run_label(run_config(data, False, batch=4), out,
                  backend=FakeBackend(**KNOBS, fail_at_call=2), progress=False)
    assert len(read_records(out / "labels.jsonl")) == 4
    slower = RunConfig(data=DataConfig(path=str(data), confidence="all", split="all"),
                       prompt=PromptConfig("base"),
                       backend=BackendConfig(backend="fake", fake=KNOBS, batch_pairs=1,
                                             concurrency=2, timeout=600.0, max_retries=9,
                                             retry_budget=3600.0, top_logprobs=5))
    backend = FakeBackend(**KNOBS)
    run_label(slower, out, backend=backend, progress=False)  # not "a different config"
    assert backend.backend_calls == 4 and len(read_records(out / "labels.jsonl")) == 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny")))


@pytest.mark.parametrize("cot", [False, True])
def test_transformers_chunk_matches_one_pair_calls_on_a_tiny_model(tiny, cot):
    from lab.backends.hf import TransformersBackend
    from tests.test_hf_backend import PAIRS, TOL

    prompt, decode = PromptConfig("detailed", cot=cot), DecodeConfig(max_rationale_tokens=4)
    alone = Labeler(TransformersBackend(tiny, dtype="fp32"), prompt, decode, [])
    together = Labeler(TransformersBackend(tiny, dtype="fp32"), prompt, decode, [])
    expected = [alone.label(p) for p in PAIRS]
    got = list(together.label_many(PAIRS))  # 3 pairs' prompts in one tree-masked pass
    for a, b in zip(got, expected):
        assert abs(a["p_fwd"] - b["p_fwd"]) < TOL and abs(a["p_swapped"] - b["p_swapped"]) < TOL
        assert (a["rationales"], a["prompt_tokens"], a["generated_tokens"]) == (
            b["rationales"], b["prompt_tokens"], b["generated_tokens"])


def test_sigkill_mid_chunk_keeps_every_written_record(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    data = write_rows(tmp_path / "c.json", [tldr_row(i, choice=i % 2) for i in range(12)])
    config = RunConfig(data=DataConfig(path=str(data), confidence="all", split="all"),
                       prompt=PromptConfig("base"),
                       backend=BackendConfig(backend="fake", fake={**KNOBS, "delay": 0.1},
                                             batch_pairs=4))
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    run_label(config, tmp_path / "clean", progress=False)
    clean = [strip(r) for r in read_records(tmp_path / "clean" / "labels.jsonl")]
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-m", "lab", "label", "--config",
                             str(tmp_path / "config.json"), "--out", str(out), "--no-cache",
                             "--no-progress"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    labels = out / "labels.jsonl"
    deadline = time.monotonic() + 120
    while not (labels.is_file() and labels.read_text().count("\n") >= 4):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    seen = labels.read_text().count("\n")
    proc.kill()  # SIGKILL while the second chunk (0.8 s of scoring) is in flight
    proc.wait()
    kept = [strip(r) for r in read_records(labels)]
    assert seen <= len(kept) < 12 and kept == clean[:len(kept)]
    run_label(config, out, progress=False)  # resume
    assert [strip(r) for r in read_records(labels)] == clean
