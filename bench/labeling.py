"""Benchmark: plain labeling passes against the optimised path, in one run on one machine.

    python bench/labeling.py --model qwen2.5-coder-0.5b --pairs 12

* plain: two full forward passes per pair (one per order), one pair at a time, written as a
  first implementation would: ``model(ids).logits[0, -1]``, logits at every position;
* plain, last logits: the same passes computing only the last position's logits (the
  backend's ``reuse_prefix: false`` path), to show what prefix reuse alone gains;
* optimised: the same pairs with shared-prefix key/value reuse (preamble across pairs, post
  across both orders), both orders' summaries in one packed pass, only the two last
  positions' logits computed;
* result cache: one labeling run (a sweep trial) of the optimised setting, then the same run
  again into a new folder, which reads every label from the per-pair label cache.

Prints pairs per second of each path and their ratios, tokens computed per pair against the
minimum (post plus both summary suffixes), and the largest log-prob difference between the
paths. In a 16-bit dtype the scored positions go through the fp32 head (``--score-dtype
fp32``, the default) on the last-logits and optimised paths, which are compared with each
other and with an fp32 copy of the model; the plain path keeps the model dtype's head, as a
first implementation would. The CPU and its bf16 support are printed with the timings. Not a
test: timings depend on the machine and its load.

On a machine without the model's weights (a GPU machine that cannot install the package),
the same architecture with random weights gives the same timings:

    python bench/labeling.py --save-architecture arch/         # where the model is installed
    python bench/labeling.py --architecture arch/ --device cuda   # config + tokenizer only
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import torch

from lab.backends.hf import TransformersBackend, _common_prefix, pretrained_folder
from lab.cache import LabelCache
from lab.config import RunConfig
from lab.data import load_pairs, resolve_data_path, select
from lab.label import DecodeConfig, Labeler
from lab.machine import cpu_info
from lab.prompts import PromptConfig
from lab.run import run_label


def save_architecture(model: str, target: Path) -> None:
    """Copy a model's config and tokenizer, not its weights (about 11 MB for Qwen2.5)."""
    folder = Path(pretrained_folder(model)[0])
    target.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.is_file() and ".safetensors" not in f.name:  # weights and their shard index
            shutil.copy2(f, target / f.name)
    print(f"wrote {target}: {', '.join(sorted(x.name for x in target.iterdir()))}")


def random_weights(architecture: Path, target: Path) -> str:
    """A model folder with ``architecture``'s config and tokenizer and seeded random weights."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(architecture)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(target)
    for f in architecture.iterdir():
        if not (target / f.name).exists():
            shutil.copy2(f, target / f.name)
    return str(target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--preamble", default="detailed")
    ap.add_argument("--data", default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--score-dtype", default="fp32", choices=["fp32", "model"],
                    help="precision of the scored logits (see rlaif label --help)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--save-architecture", type=Path, metavar="DIR",
                    help="write --model's config and tokenizer (no weights) to DIR and stop")
    ap.add_argument("--architecture", type=Path, metavar="DIR",
                    help="benchmark DIR's architecture with random weights instead of --model")
    args = ap.parse_args()
    if args.save_architecture:
        save_architecture(args.model, args.save_architecture)
        return

    with tempfile.TemporaryDirectory() as tmp:
        if args.architecture:
            args.model = random_weights(args.architecture, Path(tmp) / "random")
        run(args)


def run(args: argparse.Namespace) -> None:
    """Time the three paths and the label cache, and print the report."""
    pairs = select(load_pairs(resolve_data_path(args.data))[0], "high", "eval", args.pairs, 0)
    backend = TransformersBackend(args.model, dtype=args.dtype, device=args.device,
                                  score_dtype=args.score_dtype)
    prompt = PromptConfig(args.preamble)
    labeler = Labeler(backend, prompt, DecodeConfig(), [], LabelCache())
    prompts = [[labeler.prompt_for(p, s) for s in (False, True)] for p in pairs]
    toks = [[backend._encode(x)[0].tolist() for x in pp] for pp in prompts]
    across = _common_prefix([t[0] for t in toks])  # shared by every pair (preamble)
    minimum = sum(len(f) - across + len(s) - _common_prefix([f, s]) for f, s in toks)

    backend.score(prompts[0], ["1", "2"])  # warm-up (allocations, kernels)
    ids = [backend.token_id("1"), backend.token_id("2")]

    def naive(pair_toks: list[list[int]]) -> list[list[float]]:
        out = []
        for t in pair_toks:
            logits = backend.model(input_ids=torch.tensor([t], device=args.device)).logits
            out.append(torch.log_softmax(logits[0, -1].float(), dim=-1)[ids].tolist())
        return out

    def scored(i: int) -> list[list[float]]:
        return [list(s.logprobs) for s in backend.score(prompts[i], ["1", "2"])]

    paths = {"plain": lambda i: naive(toks[i]), "plain, last logits": scored, "optimised": scored}
    results = {}
    for name, score_pair in paths.items():
        backend.reuse_prefix = name == "optimised"
        backend._cache, backend._cached_ids = None, []
        backend.computed_tokens = sum(len(t) for tt in toks for t in tt) if name == "plain" else 0
        start = time.perf_counter()
        with torch.inference_mode():
            scores = [score_pair(i) for i in range(len(pairs))]
        seconds = time.perf_counter() - start
        results[name] = (seconds, backend.computed_tokens, scores)

    # a sweep trial run twice: the second run (a new folder) reads every label from the cache
    config = RunConfig.from_dict({
        "data": {"path": args.data, "confidence": "high", "split": "eval", "n": args.pairs},
        "prompt": {"preamble": args.preamble},
        "backend": {"model": args.model, "dtype": args.dtype, "device": args.device,
                    "score_dtype": args.score_dtype}})
    with tempfile.TemporaryDirectory() as tmp:
        cache = LabelCache(Path(tmp) / "labels.sqlite")
        trials = []
        for name in ("first", "repeat"):
            start = time.perf_counter()
            run_label(config, Path(tmp) / name, backend=backend, cache=cache, progress=False)
            trials.append(time.perf_counter() - start)
    first, repeat = trials

    n = len(pairs)

    def gap(a: list, b: list) -> float:
        return max(abs(u - v) for sa, sb in zip(a, b) for x, y in zip(sa, sb)
                   for u, v in zip(x, y))

    exact = backend.dtype == torch.float32
    # fp32: every path computes the same numbers; 16-bit: the paths that share the fp32 head
    diff = (max(gap(results["plain"][2], results[name][2])
                for name in ("plain, last logits", "optimised")) if exact
            else gap(results["plain, last logits"][2], results["optimised"][2]))
    reference = None
    if not exact:  # the same pairs through an fp32 copy of the model (optimised path, timed)
        ref = TransformersBackend(args.model, dtype="fp32", device=args.device)
        ref.score(prompts[0], ["1", "2"])  # warm-up
        ref._cache, ref._cached_ids = None, []
        start = time.perf_counter()
        ref_scores = [[list(s.logprobs) for s in ref.score(pp, ["1", "2"])] for pp in prompts]
        ref_seconds = time.perf_counter() - start
        p_fwd = [[math.exp(a) / (math.exp(a) + math.exp(b)) for a, b in pair] for pair in
                 ref_scores]
        fast = [[math.exp(a) / (math.exp(a) + math.exp(b)) for a, b in pair] for pair in
                results["optimised"][2]]
        reference = (gap(results["optimised"][2], ref_scores),
                     gap([[p] for p in fast], [[p] for p in p_fwd]),
                     gap(results["plain"][2], ref_scores), ref_seconds)
    weights = f"random weights, architecture {args.architecture}" if args.architecture else ""
    machine = cpu_info()
    print(f"model {weights or backend.identity} on {args.device}, {backend.precision}, "
          f"{n} pairs, preamble {args.preamble}, both orders, no CoT")
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, "
          f"flags {' '.join(machine['cpu_flags']) or 'none'}")
    for name, (seconds, tokens, _) in results.items():
        print(f"  {name:<18} {n / seconds:7.3f} pairs/s   {tokens / n:7.0f} tokens computed/pair")
    print(f"  {'minimum':<18} {'':7}          {minimum / n:7.0f} tokens/pair "
          "(post + both suffixes)")
    seconds = {name: r[0] for name, r in results.items()}
    print(f"  speed-up optimised / plain: {seconds['plain'] / seconds['optimised']:.2f}x "
          "(target >= 3x)")
    print(f"  speed-up optimised / plain, last logits: "
          f"{seconds['plain, last logits'] / seconds['optimised']:.2f}x (prefix reuse alone)")
    print(f"  sweep trial through the label cache: first run {first:.2f} s, repeated "
          f"{repeat:.4f} s -> {first / max(repeat, 1e-9):.0f}x (target >= 100x)")
    which = "the paths" if exact else "the last-logits and optimised paths (same fp32 head)"
    print(f"  largest log-prob difference between {which}: {diff:.2e}")
    if reference is not None:
        lp, pf, plain, ref_seconds = reference
        print(f"  against an fp32 copy of the model: largest log-prob difference {lp:.2e}, "
              f"largest p_fwd difference {pf:.2e} (optimised path); plain path with the "
              f"{backend.dtype} head: {plain:.2e}")
        print(f"  optimised path, fp32 copy: {n / ref_seconds:7.3f} pairs/s -> "
              f"{backend.dtype} with fp32 head / fp32: "
              f"{ref_seconds / seconds['optimised']:.2f}x")


if __name__ == "__main__":
    main()
