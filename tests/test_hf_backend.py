"""The transformers backend on a tiny random model built at test time."""

from __future__ import annotations

import pytest

from lab.backends.hf import TransformersBackend, _common_prefix
from lab.data import Pair
from lab.label import DecodeConfig, Labeler
from lab.prompts import PromptConfig
from tests.tiny_model import build_tiny_model

PAIRS = [
    Pair(f"k{i}", f"p{i}", f"post number {i} about a cat and a dog " * (i + 1), "", "",
         f"summary one of {i}", f"the second summary {i} is a bit longer", 1.0, 1, "w")
    for i in range(3)
]

# fp32 on the same machine: the issue allows 1e-3, the paths agree to ~5e-7; a mask that lets
# a token see one position too many moves this random model's log-probs by only ~7e-4
TOL = 1e-5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def prompts_of(backend):
    lab = Labeler(backend, PromptConfig("detailed"), DecodeConfig(), [])
    return [[lab.prompt_for(p, swapped) for swapped in (False, True)] for p in PAIRS]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # boolean and additive tree masks
def test_prefix_reuse_matches_plain_passes(tiny, attention):
    shared = TransformersBackend(str(tiny), dtype="fp32", chat="on")
    shared.model.set_attn_implementation(attention)
    assert shared.model.config._attn_implementation == attention
    plain = TransformersBackend(str(tiny), dtype="fp32", chat="on", reuse_prefix=False)
    for pair_prompts in prompts_of(shared) * 2:  # second round: cache cut back and regrown
        a = shared.score(pair_prompts, ["1", "2"])
        b = plain.score(pair_prompts, ["1", "2"])
        for x, y in zip(a, b):
            assert x.prompt_tokens == y.prompt_tokens
            assert max(abs(u - v) for u, v in zip(x.logprobs, y.logprobs)) < TOL
    # the cache holds the last pair's shared prefix, which includes the whole preamble
    assert len(shared._cached_ids) > 200
    # suffixes of different lengths (and prompts sharing only the preamble) in one pass
    uneven = [prompts_of(shared)[0][0], prompts_of(shared)[0][1] + " and a longer tail",
              prompts_of(shared)[1][0]]
    batched = shared.score(uneven, ["1", "2"])
    for x, prompt in zip(batched, uneven):
        y = plain.score([prompt], ["1", "2"])[0]
        assert max(abs(u - v) for u, v in zip(x.logprobs, y.logprobs)) < TOL


def test_chat_template_and_digits(tiny):
    b = TransformersBackend(str(tiny), dtype="fp32")
    assert b.chat  # auto: the tokenizer has a chat template
    text = b.format("Rate these.", "Preferred Summary=")
    assert text == (
        "<|im_start|>user\nRate these.<|im_end|>\n<|im_start|>assistant\nPreferred Summary="
    )
    assert b.token_id("1") != b.token_id("2")
    off = TransformersBackend(str(tiny), dtype="fp32", chat="off")
    assert off.format("Rate these.", "Preferred Summary=") == "Rate these.\n\nPreferred Summary="


def test_generate_is_seeded(tiny):
    b = TransformersBackend(str(tiny), dtype="fp32")
    prompt = b.format("Explain.", "Rationale:")
    longer = b.format("Explain this in some more words, please.", "Rationale:")
    g1 = b.generate([prompt, longer], n=3, max_tokens=5, temperature=1.0, seed=7)
    g2 = b.generate([prompt, longer], n=3, max_tokens=5, temperature=1.0, seed=7)
    assert [[g.text for g in gs] for gs in g1] == [[g.text for g in gs] for gs in g2]
    assert [len(gs) for gs in g1] == [3, 3]
    assert all(0 <= g.tokens <= 5 for gs in g1 for g in gs)
    # greedy decoding from the reused key/value cache equals plain generate()
    import torch

    both = b.generate([prompt, longer], n=1, max_tokens=5, temperature=0.0, seed=0)
    for p, gs in zip((prompt, longer), both):
        ids = b._encode(p)
        plain = b.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=5, do_sample=False,
                                 pad_token_id=b.tokenizer.pad_token_id)
        text = b.tokenizer.decode(plain[0, ids.shape[1]:], skip_special_tokens=True)
        assert gs[0].text == text


def test_labels_a_pair_with_cot(tiny):
    b = TransformersBackend(str(tiny), dtype="fp32")
    lab = Labeler(b, PromptConfig("base", cot=True), DecodeConfig(samples=2, temperature=0.7,
                                                                   max_rationale_tokens=4), [])
    r = lab.label(PAIRS[0])
    assert 0 < r["p"] < 1 and len(r["rationales"]["swapped"]) == 2
    assert r["p"] == pytest.approx((r["p_fwd"] + 1 - r["p_swapped"]) / 2)


def test_common_prefix():
    assert _common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert _common_prefix([[5], [6]]) == 0


def random_pairs(n: int, seed: int = 0) -> list[Pair]:
    """Distinct pairs of random words (no two share a post or a summary)."""
    import random

    rng = random.Random(seed)
    words = "cat dog house tree river mountain car road city night day sun moon".split()

    def text(k: int) -> str:
        return " ".join(rng.choice(words) for _ in range(k))

    return [Pair(f"r{i}", f"q{i}", text(30), "", "", text(8), text(12), 1.0, 1, "w")
            for i in range(n)]


def test_bf16_with_fp32_head_keeps_soft_labels_continuous(tiny):
    """bf16 body + fp32 final norm and LM head: log-probs near fp32, no collapsed labels.

    The same bf16 model with its head in bf16 (the old way) is the control: its logits are
    rounded to bf16 steps, so distinct pairs share p_fwd values and tie at p = 0.5 exactly.
    """
    pairs = random_pairs(20)
    runs = {}
    for name, kwargs in {"fp32": {"dtype": "fp32"},
                         "bf16 head": {"dtype": "bf16", "score_dtype": "model"},
                         "fp32 head": {"dtype": "bf16", "score_dtype": "fp32"}}.items():
        backend = TransformersBackend(str(tiny), chat="on", **kwargs)
        lab = Labeler(backend, PromptConfig("detailed"), DecodeConfig(), [])
        prompts = [lab.prompt_for(p, s) for p in pairs for s in (False, True)]
        runs[name] = (backend, [lab.label(p) for p in pairs],
                      [s.logprobs for s in backend.score(prompts, ["1", "2"])])
    fp32, head16, head32 = runs["fp32"], runs["bf16 head"], runs["fp32 head"]
    assert [b.precision for b in (fp32[0], head16[0], head32[0])] == [
        "torch.float32", "torch.bfloat16", "torch.bfloat16+fp32-head"]
    gap = max(abs(a - b) for x, y in zip(head32[2], fp32[2]) for a, b in zip(x, y))
    assert gap < 1e-2
    assert len({r["p_fwd"] for r in head32[1]}) == len(pairs)  # continuous
    assert not any(r["p"] == 0.5 for r in head32[1])
    assert all(r["precision"] == "torch.bfloat16+fp32-head" for r in head32[1])
    # the control collapses: fewer distinct values than pairs, some exact ties
    assert len({r["p_fwd"] for r in head16[1]}) < len(pairs)
    assert any(r["p"] == 0.5 for r in head16[1])


def test_fp32_head_is_a_different_cache_entry(tiny):
    """Labels from a bf16 head and an fp32 head never answer for each other from the cache."""
    from lab.cache import LabelCache

    cache = LabelCache()
    pair = random_pairs(1, seed=3)[0]
    for score_dtype in ("model", "fp32", "model", "fp32"):
        backend = TransformersBackend(str(tiny), dtype="bf16", chat="on", score_dtype=score_dtype)
        Labeler(backend, PromptConfig("base"), DecodeConfig(), [], cache).label(pair)
    assert (cache.hits, cache.misses) == (2, 2)


def test_fp32_model_ignores_the_head_option(tiny):
    """An fp32 model's head is already fp32: both settings give identical log-probs."""
    a = TransformersBackend(str(tiny), dtype="fp32", chat="on", score_dtype="fp32")
    b = TransformersBackend(str(tiny), dtype="fp32", chat="on", score_dtype="model")
    lab = Labeler(a, PromptConfig("base"), DecodeConfig(), [])
    prompt = lab.prompt_for(random_pairs(1)[0])
    assert a.score([prompt], ["1", "2"]) == b.score([prompt], ["1", "2"])
    assert a.precision == b.precision == "torch.float32"
