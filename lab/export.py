"""Stage 7: export the winning labeler of a sweep.

``rlaif export results/NAME`` picks the best setting on the dev split, labels the test split
with it (so that overfitting to the dev pairs shows), and writes ``results/NAME/best.yaml``:
a complete run config (judge, templates, model, decoding) plus an ``export`` section recording
the model's weights hash, the template files' hashes, how the judge aggregates its presentation
orders or responses into p (its :attr:`lab.judges.base.Judge.aggregation`), and dev and test
alignment. ``rlaif label --config results/NAME/best.yaml`` reloads it and reproduces the same
labels; the other commands (reward-model labeling, direct RLAIF, win rate) take the same file
and label with exactly that judge. The ``export`` section is provenance, not a setting:
:meth:`lab.config.RunConfig.load` drops it (files written before it said ``aggregation`` said
``debiasing``; they load alike).

``best_test_metrics.json`` (the test-split metrics the sweep table shows) records which trial
and run identity it belongs to; :func:`exported_test_metrics` returns it only while that is
still the sweep's best, so a table never shows an older export's numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import yaml

from lab.errors import RunError
from lab.experiment import Experiment
from lab.io import write_json_atomic, write_text_atomic
from lab.judges import judge_class
from lab.sweep import Sweep, best_trial, load_results


def provenance(exp: Experiment, best: optuna.trial.FrozenTrial) -> dict:
    """What an export belongs to: the experiment, the best trial and its run identity."""
    return {"experiment": exp.name, "trial": best.number, "setting": best.params,
            "dev_identity": (best.user_attrs.get("identity") or {}).get("hash"),
            "completed": best.datetime_complete.isoformat() if best.datetime_complete else None}


def exported_test_metrics(folder: str | Path, exp: Experiment,
                          study: optuna.Study) -> dict | None:
    """The exported best's test-split metrics, or None when there is no export or it belongs
    to another best (an older sweep, another study, other data or templates)."""
    path = Path(folder) / "best_test_metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    if metrics.get("export") != provenance(exp, best_trial(exp, study)):
        return None
    return metrics


def export_best(folder: str | Path, progress: bool = True) -> Path:
    """Write ``best.yaml`` for a sweep's results folder; returns its path."""
    folder = Path(folder)
    exp, study = load_results(folder)
    best = best_trial(exp, study)
    setting = best.params
    sweep = Sweep(exp, root=folder.parent, progress=progress)
    had = (best.user_attrs.get("identity") or {}).get("hash")
    if had is not None and had != sweep.identity(setting, exp.dev_split)["hash"]:
        slug = ", ".join(f"{k}={v}" for k, v in setting.items())
        raise RunError(f"{folder}: the best trial ({slug}) was labeled on other data, "
                       "templates or config than the current ones; run `rlaif sweep` into a "
                       "new --results folder first")
    test_metrics, test_dir = sweep.evaluate(setting, exp.test_split)
    config = exp.run_config(setting, exp.test_split)
    path = folder / "best.yaml"
    dev = best.user_attrs
    record = {
        **config.to_dict(),
        "export": {
            "experiment": exp.name,
            "setting": setting,
            "model_identity": test_metrics["model"],
            # the run identity's, for the pairs' task family (the slice is already loaded)
            "templates": sweep.identity(setting, exp.test_split)["templates"],
            "judge": config.prompt.judge,
            "aggregation": judge_class(config.prompt.judge).aggregation,
            "objective": exp.objective,
            "dev": {"split": exp.dev_split, "n": dev["n"], "alignment": dev["alignment"],
                    "alignment_ci": dev["alignment_ci"]},
            "test": {"split": exp.test_split, "n": test_metrics["n"],
                     "alignment": test_metrics["alignment"],
                     "alignment_ci": test_metrics["alignment_ci"],
                     "run_dir": str(test_dir)},
        },
    }
    write_text_atomic(path, (
        f"# Best labeler of experiment '{exp.name}', chosen on the {exp.dev_split} split.\n"
        f"# Reload with: rlaif label --config {path} --out DIR\n"
        + yaml.safe_dump(record, sort_keys=False)))
    write_json_atomic(folder / "best_test_metrics.json",
                      {**test_metrics, "export": provenance(exp, best)})
    return path
