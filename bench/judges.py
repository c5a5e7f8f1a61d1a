"""Benchmark: what each judge costs per pair, measured in one run on one machine.

    python bench/judges.py                              # qwen2.5-coder-0.5b, 20 pairs
    python bench/judges.py --model smollm2-135m --n 3    # a quick check
    python bench/judges.py --task hh --judges pairwise,rating --out bench.json

What it is for: choosing a judge is choosing a cost as well as an alignment. The judges read
different prompts (both orders of a pair, one response at a time, every principle in both
orders), so their seconds and tokens per pair differ by several times. This script labels the
*same* n pairs (``--task``, seeded, TL;DR high-confidence eval pairs by default) with each
judge (``--judges``, default every judge in :data:`lab.judges.JUDGES` that needs no reference
answer), one pair per backend call (batch 1, the transformers default), each judge with a fresh
in-memory label cache (nothing is read from an earlier run; a rating judge still rates a
response that two of these pairs share only once, as a real run would). The model is loaded
once and warmed on one pair before anything is timed, and its key/value prefix cache is
emptied before each judge, so no judge inherits another's prompts.

How to read it: one row per judge,

* ``s/pair``: wall seconds per pair of labeling (prompt rendering, tokenising, scoring);
* ``prompts/pair``: prompts scored by the backend per pair (2 for the both-orders judges,
  2 or fewer for the rating judges, 2 x principles for ``principles-all``);
* ``tokens/pair``: prompt tokens of those prompts per pair (what the model reads);
* ``computed/pair``: tokens the transformers backend actually ran through the model per pair,
  after its shared-prefix reuse (a pair's two orders share the post, consecutive prompts share
  the chat template and instructions); this, more than ``tokens/pair``, predicts the seconds;
* ``x pairwise``: ``s/pair`` over the pairwise judge's ``s/pair`` in this run (the first
  judge's when pairwise is not benchmarked). Only these ratios, measured in one run, compare
  judges; absolute seconds depend on the CPU, the number format and the machine's load.

The header names the model and its precision (e.g. ``torch.bfloat16+fp32-head``: bf16 body,
fp32 scoring head), the CPU, its cores, whether it has AVX512-BF16 / AMX-BF16 (bf16 is 3-4x
slower without them), torch's thread count, and the load average before and after: numbers
from a machine with other work on its cores are not the judges' cost. ``--out FILE`` writes
the same as JSON. Not a test: the tests check what the judges compute, never how fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from lab.backends import BackendConfig, make_backend
from lab.cache import LabelCache
from lab.config import RunConfig
from lab.data import DataConfig
from lab.errors import ConfigError
from lab.io import write_json_atomic
from lab.judges import JUDGES, judge_class
from lab.label import Labeler
from lab.machine import cpu_info
from lab.prompts import PromptConfig
from lab.run import prepare

BASE = "pairwise"
"""The judge the ratios are taken against (the first benchmarked judge where it is absent)."""


class Counting:
    """A backend that counts the prompts and prompt tokens it scores (all else delegated)."""

    def __init__(self, backend) -> None:
        self.inner = backend
        self.prompts = 0
        self.tokens = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score(self, prompts, candidates, **kwargs):
        scores = self.inner.score(prompts, candidates, **kwargs)
        self.prompts += len(prompts)
        self.tokens += sum(s.prompt_tokens for s in scores)
        return scores

    def reset(self) -> None:
        """Zero the counters and empty the transformers backend's key/value prefix cache."""
        self.prompts = self.tokens = 0
        if hasattr(self.inner, "_cached_ids"):
            self.inner._cache, self.inner._cached_ids = None, []
        if hasattr(self.inner, "computed_tokens"):
            self.inner.computed_tokens = 0


def config_for(args: argparse.Namespace, judge: str) -> RunConfig:
    """The run config of one judge: the same data slice and backend for every judge."""
    confidence = args.confidence or ("high" if args.task == "tldr" else "all")
    return RunConfig(
        data=DataConfig(path=args.data, task=args.task, confidence=confidence,
                        split=args.split, n=args.n, seed=args.seed),
        prompt=PromptConfig(judge=judge),
        backend=BackendConfig(model=args.model, dtype=args.dtype, score_dtype=args.score_dtype,
                              device=args.device))


def bench_judge(backend: Counting, config: RunConfig, pairs: list, exemplars: list) -> dict:
    """Label the pairs with one judge, one pair per call, and time it."""
    labeler = Labeler(backend, config.prompt, config.decode, exemplars, LabelCache())
    backend.reset()
    start = time.perf_counter()
    records = [record for pair in pairs for record in labeler.label_many([pair])]
    seconds = time.perf_counter() - start
    n = len(pairs)
    computed = getattr(backend.inner, "computed_tokens", None)
    return {
        "judge": config.prompt.judge,
        "pairs": n,
        "seconds": seconds,
        "seconds_per_pair": seconds / n,
        "prompts_per_pair": backend.prompts / n,
        "prompt_tokens_per_pair": backend.tokens / n,
        "recorded_prompt_tokens_per_pair": sum(r["prompt_tokens"] for r in records) / n,
        "computed_tokens_per_pair": computed / n if computed is not None else None,
        "mean_p": sum(r["p"] for r in records) / n,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b",
                    help="catalog name, hub id or folder (default qwen2.5-coder-0.5b)")
    ap.add_argument("--task", default="tldr", help="dataset loader: tldr, hh, llmbar, ...")
    ap.add_argument("--n", type=int, default=20, help="pairs labeled by every judge")
    ap.add_argument("--judges", default=None,
                    help="comma-separated judge names (default: every judge that needs no "
                         "reference answer)")
    ap.add_argument("--data", default=None, help="data file or folder (default $RLAIF_DATA_DIR)")
    ap.add_argument("--split", default="eval")
    ap.add_argument("--confidence", default=None, choices=["high", "all"],
                    help="default: high for tldr, all for the other datasets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    ap.add_argument("--score-dtype", default="fp32", choices=["fp32", "model"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be at least 1")
    names = ([j.strip() for j in args.judges.split(",") if j.strip()] if args.judges
             else [name for name, judge in JUDGES.items() if not judge.needs_reference])
    for name in names:
        try:
            judge_class(name)
        except ConfigError as err:  # one line listing the known judges
            ap.error(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    prepared = {name: prepare(config_for(args, name)) for name in names}
    first_keys = [p.key for p in prepared[names[0]][0]]
    for name, (pairs, _, _) in prepared.items():
        if [p.key for p in pairs] != first_keys:  # a judge that drops pairs without reference
            print(f"note: the {name} judge labels {len(pairs)} other pairs than "
                  f"{names[0]}", file=sys.stderr)

    start = time.perf_counter()
    backend = Counting(make_backend(config_for(args, names[0]).backend))
    load_seconds = time.perf_counter() - start
    pairs, _, exemplars = prepared[names[0]]
    start = time.perf_counter()  # warm-up: allocations, kernels, the tokenizer's caches
    warm = config_for(args, names[0])
    Labeler(backend, warm.prompt, warm.decode, exemplars, LabelCache()).label(pairs[0])
    warm_seconds = time.perf_counter() - start

    rows = [bench_judge(backend, config_for(args, name), prepared[name][0], prepared[name][2])
            for name in names]
    base = next((r for r in rows if r["judge"] == BASE), rows[0])
    for r in rows:
        r["ratio_to_base"] = r["seconds_per_pair"] / base["seconds_per_pair"]
    load_after = os.getloadavg()

    machine = cpu_info()
    flags = machine["cpu_flags"]
    result = {
        "model": backend.identity,
        "precision": str(getattr(backend.inner, "precision", "")),
        "dtype": str(getattr(backend.inner, "dtype", "")),
        "device": args.device,
        "task": args.task,
        "n": len(pairs),
        "batch_pairs": 1,
        "base": base["judge"],
        "cpu": machine["cpu"],
        "cores": machine["cores"],
        "cpu_flags": flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "torch_threads": torch.get_num_threads(),
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "model_load_seconds": load_seconds,
        "warmup_seconds": warm_seconds,
        "judges": rows,
    }
    print_table(result)
    if args.out:
        write_json_atomic(args.out, result)
        print(f"wrote {args.out}")
    return result


def print_table(result: dict) -> None:
    """The header (model, precision, machine) and one row per judge."""
    yes = {True: "yes", False: "no"}
    print(f"model {result['model']} on {result['device']}, {result['precision']} "
          f"(dtype {result['dtype']}); {result['n']} {result['task']} pairs, batch 1, "
          "in-memory label cache per judge, warmed once")
    print(f"machine: {result['cpu']}, {result['cores']} cores, avx512_bf16 "
          f"{yes[result['avx512_bf16']]}, amx_bf16 {yes[result['amx_bf16']]}, torch threads "
          f"{result['torch_threads']}; load average {result['load_average_before'][0]:.2f} "
          f"before, {result['load_average_after'][0]:.2f} after (1 min)")
    head = (f"{'judge':<16} {'s/pair':>8} {'prompts/pair':>13} {'tokens/pair':>12} "
            f"{'computed/pair':>14} {'x ' + result['base']:>12}")
    print(head)
    print("-" * len(head))
    for r in result["judges"]:
        computed = r["computed_tokens_per_pair"]
        print(f"{r['judge']:<16} {r['seconds_per_pair']:8.3f} {r['prompts_per_pair']:13.2f} "
              f"{r['prompt_tokens_per_pair']:12.0f} "
              f"{'-' if computed is None else format(computed, '.0f'):>14} "
              f"{r['ratio_to_base']:11.2f}x")


if __name__ == "__main__":
    main()
