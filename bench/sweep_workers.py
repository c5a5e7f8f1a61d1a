"""Benchmark: labeling pairs per second of a sweep with 1 and with 2 workers on one study.

    python bench/sweep_workers.py --storage postgresql://postgres@127.0.0.1:55432/rlaif_test

Runs the same grid (preamble x shots, 6 settings) twice, each time as a fresh study in the
given PostgreSQL database and with an empty label cache: ``rlaif sweep EXP --storage URL
--workers K`` for K = 1 and K = 2. The labeler is the fake backend with a fixed delay per
scored prompt (``--delay``, default 0.05 s), which stands in for a model: the bench measures
what the sweep machinery (claiming settings, heartbeats, writing trials to PostgreSQL) leaves
of the ideal K-fold speed-up, not a model's speed. Prints pairs per second of each and their
ratio (line ``2 workers / 1 worker: N.NNx``), counted two ways: over the command's wall time
(process start-up, study checks and report-free exit included) and over the span from the
first trial's start to the last trial's end as the study records them (the labeling phase).
Not a test: timings depend on the machine and its load.

The part of ``bench/throughput.py`` (issue 15) that measures sweep workers lives here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORDS = "cat dog homework rent landlord job boss sister wedding car money trip".split()


def write_data(path: Path, n: int) -> Path:
    """n synthetic TL;DR comparisons (high confidence) in OpenAI's format."""
    with open(path, "w") as fh:
        for i in range(n):
            post = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(12)) + f" story {i}"
            good = " " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(4))
            bad = f" something unrelated entirely number {i} here"
            summaries = [good, bad] if i % 2 == 0 else [bad, good]
            fh.write(json.dumps({
                "info": {"id": f"t3_post{i}", "post": post, "title": f"title {i}",
                         "subreddit": "r/pets"},
                "split": "valid2",
                "summaries": [{"text": t, "policy": "a", "note": None} for t in summaries],
                "choice": i % 2, "worker": "w1", "batch": "bench",
                "extra": {"confidence": [1, 2, 8, 9][i % 4]},
            }) + "\n")
    return path


def sweep_workers(storage: str, workers: int, tmp: Path, rows: int,
                  delay: float) -> tuple[float, float]:
    """Pairs labeled per second by one sweep run with ``workers`` workers: over the command's
    wall time, and over the study's first-trial-start to last-trial-end span."""
    name = f"bench_sweep_{uuid.uuid4().hex[:8]}_w{workers}"
    spec = {"name": name,
            "data": {"path": str(write_data(tmp / "data.json", rows)), "confidence": "high"},
            "dev_split": "eval", "test_split": "all",
            "base": {"backend": {"backend": "fake", "fake": {"skill": 6.0, "delay": delay}}},
            "axes": {"preamble": ["base", "detailed"], "shots": [0, 1, 2]}}
    exp = tmp / f"{name}.yaml"
    exp.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                       os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lab", "sweep", str(exp), "--results",
                    str(tmp / "results"), "--storage", storage, "--workers", str(workers),
                    "--cache", str(tmp / f"cache_{name}.sqlite"), "--no-progress",
                    "--no-report"], check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    pairs = sum(json.loads(m.read_text())["n"]
                for m in (tmp / "results" / name / "trials").glob("*/metrics.json"))
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(
        states=(optuna.trial.TrialState.COMPLETE,))
    span = (max(t.datetime_complete for t in trials)
            - min(t.datetime_start for t in trials)).total_seconds()
    return pairs / seconds, pairs / span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storage", default=os.environ.get("RLAIF_TEST_POSTGRES_URL"),
                        help="PostgreSQL URL (default: $RLAIF_TEST_POSTGRES_URL)")
    parser.add_argument("--rows", type=int, default=60, help="synthetic comparisons")
    parser.add_argument("--delay", type=float, default=0.05,
                        help="fake backend: seconds per scored prompt (stands in for a model)")
    args = parser.parse_args()
    if not args.storage:
        sys.exit("error: pass --storage postgresql://... (or set RLAIF_TEST_POSTGRES_URL)")
    with tempfile.TemporaryDirectory() as tmp:
        rates = {k: sweep_workers(args.storage, k, Path(tmp), args.rows, args.delay)
                 for k in (1, 2)}
    for k, (wall, span) in rates.items():
        print(f"{k} sweep worker{'s' if k > 1 else ''} on one PostgreSQL study: {wall:.1f} "
              f"pairs/s over the command's wall time, {span:.1f} pairs/s while labeling")
    print(f"2 workers / 1 worker: {rates[2][0] / rates[1][0]:.2f}x (wall time), "
          f"{rates[2][1] / rates[1][1]:.2f}x (labeling)")


if __name__ == "__main__":
    main()
