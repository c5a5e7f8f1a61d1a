"""Stage 6 (definition): an experiment file, the grid or search a sweep runs.

``experiments/NAME.yaml``::

    name: prompt_ablation          # results go to results/NAME/ (default: the file's stem)
    data:                          # the data slice (lab.data.DataConfig keys but split)
      confidence: high
      n: 60
    dev_split: dev                 # where settings are compared
    test_split: test               # where the exported best setting is checked again
    base:                          # fixed settings, as in a run's config.json
      backend: {model: qwen2.5-coder-0.5b}
    axes:                          # values to sweep; keys are setting names (below)
      preamble: [base, detailed]
      cot: [false, true]
    objective: alignment           # metric to maximise on the dev split
    cost_objective: seconds_per_pair   # optional: also minimise this (Pareto front)
    sampler: grid                  # grid (every setting) or tpe (seeded search)
    trials: 20                     # tpe only: trial budget
    seed: 0

Every value is checked on load (types strictly, the choices and ranges in :data:`LIMITS`);
unknown keys are an error naming the key and the file. ``name`` is a plain folder name, so the
results stay inside ``--results``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from annotated_types import Ge

from lab.config import ConfigError, RunConfig, build, build_section, load_mapping
from lab.data import DataConfig
from lab.pair import identity_fields
from lab.prompts import template_digests

# axis name -> (config section, key)
AXES = {
    "preamble": ("prompt", "preamble"),
    "shots": ("prompt", "shots"),
    "cot": ("prompt", "cot"),
    "judge": ("prompt", "judge"),
    "samples": ("decode", "samples"),
    "temperature": ("decode", "temperature"),
    "max_rationale_tokens": ("decode", "max_rationale_tokens"),
    "model": ("backend", "model"),
    "dtype": ("backend", "dtype"),
    "task": ("data", "task"),
    "subset": ("data", "subset"),
}
DATA_AXES = ("task", "subset")
"""Axes that change the data slice: a table compares settings only within one value of
these (each has its own base row and baselines, :func:`lab.report.build_table`)."""
JUDGE_READS = {"preamble": "reads_preamble", "shots": "reads_exemplars",
               "cot": "decodes_rationales", "samples": "decodes_rationales",
               "temperature": "decodes_rationales", "max_rationale_tokens": "decodes_rationales"}
"""Prompt axes and the judge attribute that says whether a judge reads them
(:meth:`Experiment.applies`)."""
COST_METRICS = ("seconds_per_pair", "prompt_tokens_per_pair", "generated_tokens_per_pair")
OBJECTIVES = ("alignment", "alignment_high_confidence", "alignment_forward_only")
SPLIT = Literal["pool", "dev", "test", "eval", "train", "all"]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=,+-]*")
"""A results folder name: one path component, never ``..`` or absolute."""
LIMITS = {
    "dev_split": SPLIT,
    "test_split": SPLIT,
    "objective": Literal[OBJECTIVES],
    "cost_objective": Literal[COST_METRICS] | None,
    "sampler": Literal["grid", "tpe"],
    "trials": [Ge(1)],
}


def check_name(name: str, source: str) -> None:
    """Refuse a results name that would leave ``--results`` (``../x``, ``/tmp/x``, ``a/b``)."""
    if not NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"{source}: name {name!r} must be a plain folder name (letters, digits, _ . - = , +; "
            "no / or ..) so that results stay inside --results"
        )


@dataclass(frozen=True)
class Experiment:
    """A sweep over labeler settings on one data slice."""

    name: str
    """Results folder name under ``results/``."""
    data: DataConfig = field(default_factory=DataConfig)
    """The data slice; its ``split`` is replaced by ``dev_split`` / ``test_split``."""
    dev_split: str = "dev"
    """Split on which settings are compared and the best one chosen."""
    test_split: str = "test"
    """Split on which the best setting is reported again (overfitting to dev shows)."""
    base: dict = field(default_factory=dict)
    """Fixed settings (a partial run config: data/prompt/backend/decode sections)."""
    axes: dict = field(default_factory=dict)
    """Axis name -> list of values."""
    objective: str = "alignment"
    """Metric maximised on the dev split."""
    cost_objective: str | None = None
    """A cost metric to minimise as a second objective (Pareto front), or None."""
    sampler: str = "grid"
    """``grid`` (every combination, Optuna GridSampler) or ``tpe`` (seeded TPE search)."""
    trials: int | None = None
    """Trial budget for ``tpe``."""
    seed: int = 0
    """Seed of the sampler."""

    @classmethod
    def load(cls, path: str | Path) -> Experiment:
        """Read and check an experiment file."""
        path = Path(path)
        raw = load_mapping(path, "experiment")
        raw.setdefault("name", path.stem)
        raw["data"] = build_section(DataConfig, raw.get("data") or {}, str(path), "data")
        exp = build(cls, raw, str(path), LIMITS)
        exp.check(str(path))
        return exp

    def check(self, source: str) -> None:
        """Validate name, axes, objective and sampler; build every setting once."""
        check_name(self.name, source)
        for section, values in self.base.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: base.{section}: expected a mapping, found "
                                  f"{values!r}")
        for axis, values in self.axes.items():
            if axis not in AXES:
                raise ConfigError(
                    f"{source}: unknown axis '{axis}'; known: {', '.join(AXES)}"
                )
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{source}: axis '{axis}' needs a non-empty list of values")
        if self.sampler == "tpe" and not self.trials:
            raise ConfigError(f"{source}: sampler tpe needs a trial budget (trials: N)")
        for setting in self.settings():
            self.run_config(setting, self.dev_split, source)

    def settings(self) -> list[dict]:
        """Every combination of axis values, in file order; with a ``judge`` axis, an axis
        the setting's judge does not read (:meth:`applies`) is left out of it, and the
        settings that then coincide are one."""
        names = list(self.axes)
        out: list[dict] = []
        for combo in itertools.product(*self.axes.values()):
            full = dict(zip(names, combo))
            setting = {a: v for a, v in full.items() if self.applies(a, full)}
            if setting not in out:
                out.append(setting)
        return out

    def applies(self, axis: str, setting: dict) -> bool:
        """Whether an axis means anything for a setting: with a ``judge`` axis, the prompt
        axes only for a judge that reads them on TL;DR (preamble, shots, chain-of-thought
        and its decoding: the pairwise judge); every other axis always. A search (``tpe``)
        then asks for an axis only where it applies."""
        if "judge" not in self.axes or axis not in JUDGE_READS:
            return True
        from lab.judges import judge_class

        judge = setting.get("judge") or self.base.get("prompt", {}).get("judge", "pairwise")
        task = setting.get("task") or self.data.task or "tldr"
        return task == "tldr" and getattr(judge_class(judge), JUDGE_READS[axis])

    def run_config(self, setting: dict, split: str, source: str = "experiment") -> RunConfig:
        """The full run config of one setting on one split."""
        raw = RunConfig().to_dict()
        for section, values in self.base.items():
            if section not in raw:
                raise ConfigError(f"{source}: base: unknown section '{section}'")
            if section == "data":
                raise ConfigError(f"{source}: base: put the data slice under 'data:'")
            raw[section].update(values)
        raw["data"] = {**dataclasses.asdict(self.data), "split": split}
        for axis, value in setting.items():
            section, key = AXES[axis]
            raw[section][key] = value
        return RunConfig.from_dict(raw, source)


def setting_slug(setting: dict) -> str:
    """A folder name for a setting, e.g. ``preamble=base,cot=False,shots=0``."""
    # a preamble named by its path (results/NAME/opt.jinja) stays one folder
    return ",".join(f"{k}={v}" for k, v in setting.items()).replace("/", "_") or "default"


# --- run identity: what a finished setting's numbers depend on ---------------------------------


def content_hash(obj) -> str:
    """sha256 (first 16 hex digits) of an object's canonical JSON."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def template_hashes(prompt, task: str = "summarize") -> dict[str, str]:
    """sha256 (first 16 hex digits) of every template file a prompt config renders
    (:func:`lab.prompts.template_digests`, which follows every fixed-name include).

    Args:
        prompt: a :class:`lab.prompts.PromptConfig`.
        task: the pairs' task family (each has its own templates).
    """
    return {name: digest[:16] for name, digest in template_digests(prompt, task).items()}


def run_identity(config: RunConfig, pairs: list, exemplars: list) -> dict:
    """What a run's labels depend on: resolved config, data slice content, template files.

    ``data.path`` is left out of the config (the same pairs read from another place, e.g. on
    another machine, are the same slice); the slice itself enters as a content hash of every
    selected pair and every few-shot exemplar.

    Returns:
        ``{"config": ..., "data": hash, "templates": {file: hash}, "hash": hash of all}``.
    """
    cfg = config.identity_dict()
    cfg["data"] = {k: v for k, v in cfg["data"].items() if k != "path"}
    ident = {
        "config": cfg,
        # the pairs' content, not where they were read from (Pair.source names the file)
        "data": content_hash([[identity_fields(p) for p in pairs],
                              [dataclasses.asdict(e) for e in exemplars]]),
        "templates": template_hashes(config.prompt, pairs[0].task if pairs else "summarize"),
    }
    ident["hash"] = content_hash(ident)
    return ident


def first_difference(old, new, prefix: str = "") -> str | None:
    """The first key path where two nested dicts differ, as ``key: old -> new``; None if equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                return f"{path}: (absent) -> {new[key]!r}"
            if key not in new:
                return f"{path}: {old[key]!r} -> (absent)"
            diff = first_difference(old[key], new[key], path)
            if diff:
                return diff
        return None
    return None if old == new else f"{prefix}: {old!r} -> {new!r}"
