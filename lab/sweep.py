"""Stage 6: sweeps, an experiment run through Optuna.

``rlaif sweep experiments/NAME.yaml`` runs one trial per setting into ``results/NAME/``:
``study.db`` (Optuna SQLite storage, readable by optuna-dashboard), ``experiment.json`` (the
resolved experiment) and ``trials/<setting>/`` (each trial is an ordinary labeling run folder
with its config, labels and metrics). Each trial's metrics are stored as user attributes.

Resumable at any point: settings with a complete trial are skipped; a trial left RUNNING by a
killed process is marked failed and its setting run again, and that run resumes from the
labels already in its folder. The per-pair label cache makes a repeated or overlapping setting
cost a lookup (TPE may propose a setting twice; two experiments may share one).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import optuna

from lab import models
from lab.backends import Backend, make_backend
from lab.cache import LabelCache
from lab.config import ConfigError, build
from lab.data import DataConfig
from lab.experiment import AXES, Experiment, setting_slug
from lab.run import run_label, write_json_atomic

RESULTS = Path("results")


def results_dir(exp: Experiment, root: Path = RESULTS) -> Path:
    """Where an experiment's results live."""
    return Path(root) / exp.name


def open_study(exp: Experiment, out: Path) -> optuna.Study:
    """Create or load the experiment's study (SQLite under ``out``)."""
    directions = ["maximize"] + (["minimize"] if exp.cost_objective else [])
    if exp.sampler == "grid":
        sampler = optuna.samplers.GridSampler(exp.axes, seed=exp.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=exp.seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=exp.name,
        storage=f"sqlite:///{out / 'study.db'}",
        sampler=sampler,
        directions=directions,
        load_if_exists=True,
    )


def fail_stale_trials(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a killed process as failed; returns how many."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
    for t in stale:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return len(stale)


class Sweep:
    """Runs an experiment's trials, sharing loaded models and the label cache."""

    def __init__(
        self,
        exp: Experiment,
        root: Path = RESULTS,
        cache: LabelCache | None = None,
        progress: bool = True,
    ) -> None:
        self.exp = exp
        self.out = results_dir(exp, root)
        self.out.mkdir(parents=True, exist_ok=True)
        if cache is None:
            cache = LabelCache(models.cache_dir() / "labels.sqlite")
        self.cache = cache
        self.progress = progress
        self.backends: dict[str, Backend] = {}
        self.evaluated = 0  # settings labeled in this process (cache hits included)

    def backend_for(self, config) -> Backend:
        """One loaded backend per distinct backend config.

        Backends with a ``close`` method (vLLM engines, which reserve their share of GPU
        memory when they start) are shut down before another one loads: one at a time.
        """
        key = json.dumps(dataclasses.asdict(config.backend), sort_keys=True)
        if key not in self.backends:
            for old in [k for k, b in self.backends.items() if hasattr(b, "close")]:
                self.backends.pop(old).close()
            self.backends[key] = make_backend(config.backend)
        return self.backends[key]

    def evaluate(self, setting: dict, split: str) -> tuple[dict, Path]:
        """Label one setting on one split; returns its metrics and run folder."""
        config = self.exp.run_config(setting, split)
        folder = self.out / ("trials" if split == self.exp.dev_split else split)
        run_dir = folder / setting_slug(setting)
        metrics = run_label(config, run_dir, self.backend_for(config), self.cache, self.progress)
        self.evaluated += 1
        return metrics, run_dir

    def values(self, metrics: dict) -> list[float]:
        vals = [metrics[self.exp.objective]]
        if self.exp.cost_objective:
            vals.append(metrics[self.exp.cost_objective])
        return [v if not math.isnan(v) else 0.0 for v in vals]

    def _objective(self, trial: optuna.Trial) -> list[float]:
        setting = {a: trial.suggest_categorical(a, v) for a, v in self.exp.axes.items()}
        if isinstance(trial.study.sampler, optuna.samplers.GridSampler):
            tag_grid_point(trial, setting)
        metrics, run_dir = self.evaluate(setting, self.exp.dev_split)
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("run_dir", str(run_dir))
        return self.values(metrics)

    def run(self) -> optuna.Study:
        """Run every missing setting (grid) or the remaining trial budget (tpe)."""
        write_json_atomic(self.out / "experiment.json", experiment_dict(self.exp))
        study = open_study(self.exp, self.out)
        fail_stale_trials(study)
        if self.exp.sampler == "tpe":
            todo = self.exp.trials - len(completed_settings(study))
            if todo > 0:
                study.optimize(self._objective, n_trials=todo, catch=())
            return study
        waiting = [t.system_attrs.get("fixed_params") for t in study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.WAITING,))]
        missing = [s for s in self.exp.settings() if s not in completed_settings(study)]
        # settings that share a model run together: loading one (vLLM: starting an engine)
        # is paid once per model, not once per switch (the sort is stable)
        backend_axes = [a for a in self.exp.axes if AXES[a][0] == "backend"]
        missing.sort(key=lambda s: [self.exp.axes[a].index(s[a]) for a in backend_axes])
        for setting in missing:
            if setting not in waiting:
                study.enqueue_trial(setting)
        while missing:
            # GridSampler stops a study once every grid point was visited, and it counts a
            # failed (killed) point as visited: go round until each setting is complete.
            study.optimize(self._objective, n_trials=len(missing), catch=())
            left = [s for s in self.exp.settings() if s not in completed_settings(study)]
            if len(left) == len(missing):
                raise RuntimeError(f"{self.out}: sweep made no progress on {left}")
            missing = left
        return study


def tag_grid_point(trial: optuna.Trial, setting: dict) -> None:
    """Record an enqueued setting's grid id, as GridSampler does for the points it picks.

    Settings are enqueued (so that a resumed sweep runs exactly the missing ones, including a
    setting whose trial was killed); GridSampler counts visited points by this attribute.
    """
    sampler = trial.study.sampler
    point = tuple(setting[name] for name in sorted(setting))
    storage = trial.study._storage
    storage.set_trial_system_attr(trial._trial_id, "search_space", sampler._search_space)
    storage.set_trial_system_attr(trial._trial_id, "grid_id", sampler._all_grids.index(point))


def completed_settings(study: optuna.Study) -> list[dict]:
    """Params of the complete trials."""
    return [t.params for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]


def experiment_dict(exp: Experiment) -> dict:
    """The resolved experiment as plain data (written to experiment.json)."""
    return dataclasses.asdict(exp)


def load_results(folder: str | Path) -> tuple[Experiment, optuna.Study]:
    """Read an experiment's resolved definition and study back from its results folder."""
    folder = Path(folder)
    exp_file = folder / "experiment.json"
    if not exp_file.is_file():
        raise ConfigError(f"{folder}: no experiment.json; run `rlaif sweep` for it first")
    raw = json.loads(exp_file.read_text())
    raw["data"] = build(DataConfig, raw["data"], str(exp_file))
    exp = build(Experiment, raw, str(exp_file))
    study = optuna.load_study(study_name=exp.name, storage=f"sqlite:///{folder / 'study.db'}")
    return exp, study


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Complete trials, one per setting (the first), in trial order."""
    seen, out = [], []
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "COMPLETE" and t.params not in seen:
            seen.append(t.params)
            out.append(t)
    return out


def ordered_trials(exp: Experiment, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Complete trials in the order of the experiment's settings (the first is the base)."""
    order = {json.dumps(s, sort_keys=True): i for i, s in enumerate(exp.settings())}
    return sorted(complete_trials(study),
                  key=lambda t: order.get(json.dumps(t.params, sort_keys=True), len(order)))


def best_trial(exp: Experiment, study: optuna.Study) -> optuna.trial.FrozenTrial:
    """Highest dev objective; ties go to the cheaper setting (fewer seconds per pair)."""
    trials = complete_trials(study)
    if not trials:
        raise RuntimeError(f"results/{exp.name}: no complete trial yet")
    return max(trials, key=lambda t: (t.user_attrs[exp.objective],
                                      -t.user_attrs["seconds_per_pair"]))
