"""The smallest packaged real model (SmolLM2-135M-Instruct GGUF) end to end. Marked slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lab import models
from lab.data import load_pairs, select
from lab.label import DecodeConfig, Labeler
from lab.prompts import PromptConfig
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def smol():
    if not models.is_installed(MODEL):
        if os.environ.get("CI"):
            pytest.fail(f"{MODEL} not installed; .ci/run must run `rlaif models install {MODEL}`")
        pytest.skip(f"{MODEL} not installed (rlaif models install {MODEL})")
    from lab.backends.hf import TransformersBackend

    return TransformersBackend(MODEL, dtype="fp32")


def test_weights_match_pinned_hash(smol):
    path = models.assembled_path(MODEL)
    assert models.sha256_of(path) == models.CATALOG[MODEL].sha256
    assert smol.identity == f"{MODEL}@{models.CATALOG[MODEL].sha256[:16]}"


def test_real_pairs_prefix_reuse_matches_plain(smol, real_data):
    pairs = select(load_pairs(str(real_data))[0], n=2, seed=5)
    lab = Labeler(smol, PromptConfig("detailed"), DecodeConfig(), [])
    from lab.backends.hf import TransformersBackend

    plain = TransformersBackend(MODEL, dtype="fp32", reuse_prefix=False)
    for pair in pairs:
        prompts = [lab.prompt_for(pair, s) for s in (False, True)]
        assert prompts[0].startswith("<|im_start|>")  # the model's chat template
        a, b = smol.score(prompts, ["1", "2"]), plain.score(prompts, ["1", "2"])
        for x, y in zip(a, b):
            assert max(abs(u - v) for u, v in zip(x.logprobs, y.logprobs)) < 1e-3
        r = lab.label(pair)
        assert 0 < r["p"] < 1 and 0 < r["p_fwd"] < 1
        assert r["p"] == pytest.approx((r["p_fwd"] + 1 - r["p_swapped"]) / 2)


def test_cot_rationale_is_decoded(smol, real_data):
    pair = select(load_pairs(str(real_data))[0], n=1, seed=1)[0]
    lab = Labeler(smol, PromptConfig("base", cot=True), DecodeConfig(max_rationale_tokens=12), [])
    r = lab.label(pair)
    assert r["generated_tokens"] > 0 and r["rationales"]["fwd"][0].strip()


def test_cli_label_with_real_model(real_data, tmp_path):
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "lab", "label", "--data", str(real_data), "--model", MODEL,
         "--n", "3", "--preamble", "base", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 3 and m["model"].startswith(MODEL + "@")
