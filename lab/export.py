"""Stage 7: export the winning labeler of a sweep.

``rlaif export results/NAME`` picks the best setting on the dev split, labels the test split
with it (so that overfitting to the dev pairs shows), and writes ``results/NAME/best.yaml``:
a complete run config (templates, model, decoding) plus an ``export`` section recording the
model's weights hash, the template files' hashes, the debiasing, and dev and test alignment.
``rlaif label --config results/NAME/best.yaml`` reloads it and reproduces the same labels;
the other commands (reward-model labeling, win rate) take the same file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from lab.prompts import PROMPTS_DIR, preamble_file
from lab.run import write_json_atomic
from lab.sweep import Sweep, best_trial, load_results


def template_hashes(config) -> dict[str, str]:
    """sha256 (first 16 hex digits) of every template file the config renders."""
    ending = "cot" if config.prompt.cot else "direct"
    names = ["labeler.jinja", "sample.jinja", "exemplar.jinja", f"ending/{ending}.jinja"]
    files = {n: PROMPTS_DIR / n for n in names}
    preamble = preamble_file(config.prompt.preamble)
    files[f"preamble/{config.prompt.preamble}.jinja" if preamble.is_relative_to(PROMPTS_DIR)
          else config.prompt.preamble] = preamble
    return {n: hashlib.sha256(f.read_bytes()).hexdigest()[:16] for n, f in files.items()}


def export_best(folder: str | Path, progress: bool = True) -> Path:
    """Write ``best.yaml`` for a sweep's results folder; returns its path."""
    folder = Path(folder)
    exp, study = load_results(folder)
    best = best_trial(exp, study)
    setting = best.params
    sweep = Sweep(exp, root=folder.parent, progress=progress)
    test_metrics, test_dir = sweep.evaluate(setting, exp.test_split)
    config = exp.run_config(setting, exp.test_split)
    dev = best.user_attrs
    record = {
        **config.to_dict(),
        "export": {
            "experiment": exp.name,
            "setting": setting,
            "model_identity": test_metrics["model"],
            "templates": template_hashes(config),
            "debiasing": "both presentation orders scored; p = (p_fwd + 1 - p_swapped) / 2",
            "objective": exp.objective,
            "dev": {"split": exp.dev_split, "n": dev["n"], "alignment": dev["alignment"],
                    "alignment_ci": dev["alignment_ci"]},
            "test": {"split": exp.test_split, "n": test_metrics["n"],
                     "alignment": test_metrics["alignment"],
                     "alignment_ci": test_metrics["alignment_ci"],
                     "run_dir": str(test_dir)},
        },
    }
    path = folder / "best.yaml"
    tmp = path.with_name(".best.yaml.tmp")
    tmp.write_text(
        f"# Best labeler of experiment '{exp.name}', chosen on the {exp.dev_split} split.\n"
        f"# Reload with: rlaif label --config {path} --out DIR\n"
        + yaml.safe_dump(record, sort_keys=False)
    )
    tmp.replace(path)
    write_json_atomic(folder / "best_test_metrics.json", test_metrics)
    return path
