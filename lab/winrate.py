"""Stage 12 of the pipeline: win rate of the trained policy against the starting policy.

RLAIF section 4.4 / Table 1: both policies summarise the same held-out posts (the test split,
which neither the reward model nor the policy saw), and the exported labeler judges each pair
of summaries in both orders (``p`` = probability that the trained policy's summary is better).
A win is ``p > 0.5``, a tie (``p == 0.5``, e.g. identical summaries) counts half. The win rate
is reported with a bootstrap 95% CI, and split by whether the trained summary is longer,
shorter or as long, so a policy that only learned to write longer is visible.

Writes ``winrate.json``, ``winrate.md`` and ``summaries.jsonl`` into the A2C folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lab.a2c import decode_summaries, generate, load_trained, policy_prompt, training_posts
from lab.backends import make_backend
from lab.config import RunConfig
from lab.data import Pair
from lab.label import Labeler, word_count
from lab.metrics import bootstrap_ci
from lab.run import write_json_atomic


def summarise(lm, tokenizer, posts: list[str], max_new_tokens: int, temperature: float,
              batch: int = 8, progress: bool = False, desc: str = "summaries") -> list[str]:
    """Summaries of posts by a policy (greedy at temperature 0)."""
    out = []
    for i in tqdm(range(0, len(posts), batch), desc=desc, disable=not progress,
                  file=sys.stderr):
        prompts = [policy_prompt(tokenizer, p) for p in posts[i:i + batch]]
        ids, mask, start = generate(lm, tokenizer, prompts, max_new_tokens, temperature)
        out += decode_summaries(tokenizer, ids, mask, start)
    return out


def _rate(wins: np.ndarray) -> dict:
    if len(wins) == 0:
        return {"n": 0, "win_rate": float("nan"), "ci": [float("nan"), float("nan")]}
    lo, hi = bootstrap_ci(wins)
    return {"n": int(len(wins)), "win_rate": float(wins.mean()), "ci": [lo, hi]}


def win_rate(folder: str | Path, labeler_config: str | Path, n: int = 64,
             temperature: float = 0.0, seed: int = 0, progress: bool = True) -> dict:
    """Judge the trained policy of an A2C folder against its starting policy.

    Args:
        folder: the folder ``rlaif rl train`` wrote.
        labeler_config: the exported labeler (``best.yaml``) that judges.
        n: held-out posts (seeded sample of the test split).
        temperature: decoding of both policies (0: greedy).
        seed: seed of the post sample and of sampled decoding.
        progress: show progress bars.
    """
    folder = Path(folder)
    policy, ref, tokenizer, config = load_trained(folder)
    posts = training_posts(config.data, tokenizer, config.max_post_tokens, split="test")
    rng = np.random.default_rng(seed)
    chosen = [posts[i] for i in sorted(rng.choice(len(posts), min(n, len(posts)), False))]
    texts = [t for _, t in chosen]
    torch.manual_seed(seed)
    trained = summarise(policy.lm, tokenizer, texts, config.max_new_tokens, temperature,
                        progress=progress, desc="trained policy")
    torch.manual_seed(seed)
    start = summarise(ref, tokenizer, texts, config.max_new_tokens, temperature,
                      progress=progress, desc="starting policy")
    judge_config = RunConfig.load(labeler_config)
    labeler = Labeler(make_backend(judge_config.backend), judge_config.prompt,
                      judge_config.decode, exemplars=[])
    rows = []
    for (post_id, text), a, b in tqdm(list(zip(chosen, trained, start)), desc="judging",
                                      disable=not progress, file=sys.stderr):
        pair = Pair(key=post_id, post_id=post_id, text=text, title="", subreddit="",
                    first=a, second=b, human=float("nan"), confidence=None, worker="")
        record = labeler.label(pair)
        rows.append({"post_id": post_id, "trained": a, "start": b, "p": record["p"],
                     "p_fwd": record["p_fwd"], "p_swapped": record["p_swapped"],
                     "len_trained": word_count(a), "len_start": word_count(b)})
    p = np.array([r["p"] for r in rows])
    wins = np.where(p == 0.5, 0.5, (p > 0.5).astype(float))
    la = np.array([r["len_trained"] for r in rows])
    lb = np.array([r["len_start"] for r in rows])
    result = {
        "policy": config.policy, "reward": config.reward, "judge": judge_config.backend.model,
        "judge_identity": labeler.backend.identity, "temperature": temperature,
        "overall": _rate(wins),
        "trained_longer": _rate(wins[la > lb]),
        "trained_shorter": _rate(wins[la < lb]),
        "same_length": _rate(wins[la == lb]),
        "identical_summaries": int(sum(r["trained"] == r["start"] for r in rows)),
        "mean_words": {"trained": float(la.mean()), "start": float(lb.mean())},
    }
    with open(folder / "summaries.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    write_json_atomic(folder / "winrate.json", result)
    (folder / "winrate.md").write_text(to_markdown(result))
    return result


def to_markdown(r: dict) -> str:
    """The win-rate table (what ``rlaif winrate`` prints)."""
    def cell(x: dict) -> str:
        if not x["n"]:
            return "- | 0"
        return f"{x['win_rate']:.3f} [{x['ci'][0]:.3f}, {x['ci'][1]:.3f}] | {x['n']}"

    lines = [
        f"**Win rate of the A2C policy over the starting {r['policy']} (reward: {r['reward']}), "
        f"judged by {r['judge']} in both orders**",
        "",
        "| posts | win rate [95% CI] | n |",
        "|---|---|---|",
        f"| all held-out posts | {cell(r['overall'])} |",
        f"| trained summary longer | {cell(r['trained_longer'])} |",
        f"| trained summary shorter | {cell(r['trained_shorter'])} |",
        f"| same length | {cell(r['same_length'])} |",
        "",
        f"Mean words: trained {r['mean_words']['trained']:.1f}, starting "
        f"{r['mean_words']['start']:.1f}; identical summaries: {r['identical_summaries']}.",
    ]
    return "\n".join(lines) + "\n"
