"""Stage 6b: optimise the labeler's preamble with DSPy against human labels.

Automatic prompt optimisation in the spirit of ProTeGi / APO, through DSPy's COPRO: a proposer
model writes new instructions from the current one (and, at later depths, from the scored
attempts so far); each candidate is scored by the metric and the best ones seed the next round.

Here the DSPy program is the lab's own labeler: its one predictor's *instruction* is the
preamble (the ``_candidate`` preamble template renders it), and the program does not generate
text; it scores the pair with the lab's log-prob labeling in both orders (through the label
cache). The metric is agreement with the human label. Candidates are scored on a training
slice of the exemplar-pool posts; the winner is written to ``results/NAME/opt_NAME.jinja``
(header naming the run) and scored on the dev and the test split beside the starting preamble,
with CIs and a paired bootstrap. A sweep names it by that path (``preamble:
[detailed, results/NAME/opt_NAME.jinja]``); it is not offered as a preamble of its own.

The proposer is a packaged local model through a custom DSPy engine (no network), any
OpenAI-compatible endpoint, or a deterministic fake (tests). DSPy's disk cache lives in the
run folder, so a rerun replays the same proposals and (through the label cache) the same scores.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from annotated_types import Ge

from lab.backends.dspy_engine import ProposerConfig, proposer_lm
from lab.config import ConfigError, RunConfig, build, build_section, load_mapping
from lab.data import DataConfig
from lab.io import write_text_atomic
from lab.prompts import render_template

LIMITS = {"n_train": [Ge(1)], "n_eval": [Ge(1)], "breadth": [Ge(2)], "depth": [Ge(1)],
          "init_temperature": [Ge(0)]}
PROPOSER_LIMITS = {"backend": Literal["transformers", "openai", "fake"], "max_tokens": [Ge(1)]}


@dataclass(frozen=True)
class OptimizeExperiment:
    """``experiments/NAME.yaml`` for ``rlaif optimize`` (unknown keys are an error)."""

    name: str
    """Results folder under ``results/`` and the new template's name (``opt_NAME``)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Path, confidence and seed of the human data (``split`` and ``n`` are set below)."""
    n_train: int = 40
    """Pairs of the exemplar-pool split on which candidates are scored."""
    n_eval: int | None = 100
    """Pairs of the dev and of the test split on which the winner is reported."""
    labeler: dict = field(default_factory=dict)
    """The labeler whose preamble is optimised (prompt/backend/decode sections)."""
    start_preamble: str = "detailed"
    """The preamble template the search starts from (and is compared with)."""
    breadth: int = 4
    """COPRO: candidates proposed per round (the current best is kept as well)."""
    depth: int = 2
    """COPRO: rounds."""
    init_temperature: float = 1.0
    """COPRO: sampling temperature of the proposals."""
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    """Who proposes the candidates."""

    @classmethod
    def load(cls, path: str | Path) -> OptimizeExperiment:
        path = Path(path)
        raw = load_mapping(path, "experiment")
        raw.setdefault("name", path.stem)
        raw["data"] = build_section(DataConfig, raw.get("data") or {}, str(path), "data")
        raw["proposer"] = build(ProposerConfig, raw.get("proposer") or {}, str(path),
                                PROPOSER_LIMITS, "proposer")
        exp = build(cls, raw, str(path), LIMITS)
        if not re.fullmatch(r"[A-Za-z0-9_]+", exp.name):
            raise ConfigError(f"{path}: name must be letters, digits and _ (a template name)")
        exp.labeler_config("pool", None, source=str(path))  # bad labeler keys fail here
        return exp

    def labeler_config(self, split: str, n: int | None, preamble: str | None = None,
                       source: str | None = None):
        """The labeler's run config on a data slice."""
        source = source or f"experiment {self.name}"
        raw = RunConfig().to_dict()
        for section, values in self.labeler.items():
            if section not in raw or section == "data":
                raise ConfigError(f"{source}: labeler: unknown or fixed section {section!r}")
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: labeler.{section}: expected a mapping, found "
                                  f"{values!r}")
            raw[section].update(values)
        raw["data"].update(dataclasses.asdict(self.data), split=split, n=n)
        raw["prompt"]["preamble"] = preamble or self.start_preamble
        return RunConfig.from_dict(raw, f"{source}: labeler")


def offline_environment(cache: Path) -> None:
    """What DSPy and litellm need so that nothing reaches the network."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ["DSPY_CACHEDIR"] = str(cache)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DSPY_TELEMETRY_DISABLED", "1")


def jinja_literal(text: str) -> str:
    """Jinja source that renders ``text`` verbatim (``{{ 7*7 }}`` stays ``{{ 7*7 }}``).

    The text goes into a raw block; each ``{%`` in it is written by an expression between
    raw blocks, so no ``{% endraw %}`` in the text can end the block early.
    """
    return "{% raw %}" + '{% endraw %}{{ "{%" }}{% raw %}'.join(text.split("{%")) + \
        "{% endraw %}"


def template_text(exp: OptimizeExperiment, text: str, train: float, out: Path) -> str:
    """The new preamble template: a header naming the run, then the text (escaped)."""
    b = exp.labeler_config("pool", None).backend
    labeler = b.model if b.backend == "transformers" else f"{b.backend} backend"
    p = exp.proposer
    proposer = p.model if p.backend != "fake" else "the fake proposer"
    header = (f"{{#- Optimised by `rlaif optimize` (experiment '{exp.name}', "
              f"{datetime.date.today().isoformat()}): DSPy COPRO from preamble "
              f"'{exp.start_preamble}', labeler {labeler}, proposer {proposer}. Training "
              f"alignment {train:.3f} on {exp.n_train} pool pairs; dev and test results in "
              f"{out}/optimize.md.").replace("#}", "# }") + " -#}\n"
    return header + jinja_literal(text.strip()) + "\n"


def write_template(path: Path, content: str) -> Path:
    """Write the optimised preamble (``results/NAME/opt_NAME.jinja``) atomically."""
    write_text_atomic(path, content)
    return path


def start_text(exp: OptimizeExperiment) -> str:
    """The starting preamble's text (the first instruction the search sees)."""
    return render_template(f"preamble/{exp.start_preamble}.jinja")


def optimize(exp: OptimizeExperiment, root: str | Path = "results", progress: bool = True) -> dict:
    """Run the search, write the new template and score it on dev and test; returns the record."""
    import numpy as np

    out = Path(root) / exp.name
    out.mkdir(parents=True, exist_ok=True)
    offline_environment(out / "dspy_cache")
    import dspy

    from lab import models
    from lab.backends import make_backend
    from lab.cache import LabelCache
    from lab.label import Labeler
    from lab.metrics import agreement
    from lab.run import prepare, write_json_atomic

    train_cfg = exp.labeler_config("pool", exp.n_train, "_candidate")
    pairs, _, exemplars = prepare(train_cfg)
    by_key = {p.key: p for p in pairs}
    backend = make_backend(train_cfg.backend)
    cache = LabelCache(models.cache_dir() / "labels.sqlite")
    seen: dict[str, dict[str, float]] = {}  # candidate text -> {pair key: agreement}

    class JudgeSummaries(dspy.Signature):
        """(replaced by the starting preamble)"""

        text: str = dspy.InputField()
        summary_1: str = dspy.InputField()
        summary_2: str = dspy.InputField()
        preferred_summary: str = dspy.OutputField(desc="1 or 2")

    class PreambleLabeler(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.judge = dspy.Predict(JudgeSummaries.with_instructions(start_text(exp)))

        def forward(self, key: str):
            text = self.judge.signature.instructions
            labeler = Labeler(backend, train_cfg.prompt, train_cfg.decode, exemplars, cache,
                              preamble_text=text)
            p = labeler.label(by_key[key])["p"]
            agree = float(agreement(np.array([p]), np.array([by_key[key].human]))[0])
            seen.setdefault(text, {})[key] = agree
            return dspy.Prediction(p=p)

    def metric(example, prediction, trace=None) -> float:
        return float(agreement(np.array([prediction.p]), np.array([example.human]))[0])

    trainset = [dspy.Example(key=p.key, human=p.human).with_inputs("key") for p in pairs]
    copro = dspy.COPRO(prompt_model=proposer_lm(exp.proposer, exp.init_temperature),
                       metric=metric, breadth=exp.breadth, depth=exp.depth,
                       init_temperature=exp.init_temperature)
    best = copro.compile(PreambleLabeler(), trainset=trainset,
                         eval_kwargs={"num_threads": 1, "display_progress": progress})
    best_text = best.judge.signature.instructions
    candidates = sorted(
        ({"text": t, "train_alignment": sum(a.values()) / len(a), "n": len(a)}
         for t, a in seen.items() if len(a) == len(pairs)),
        key=lambda c: -c["train_alignment"])
    train_score = next(c["train_alignment"] for c in candidates if c["text"] == best_text)
    name = f"opt_{exp.name}"
    path = write_template(out / f"{name}.jinja", template_text(exp, best_text, train_score, out))
    record = {"experiment": exp.name, "template": str(path),
              "preamble": best_text, "train": {"split": "pool", "n": len(pairs),
                                               "alignment": train_score},
              "candidates": candidates, "proposer_calls": _calls(copro),
              "evaluation": evaluate_against_start(exp, path, out, backend, cache, progress)}
    write_json_atomic(out / "optimize.json", record)
    write_json_atomic(out / "experiment.json", dataclasses.asdict(exp))
    (out / "optimize.md").write_text(to_markdown(record, exp))
    return record


def _calls(copro) -> int | None:
    engine = getattr(copro.prompt_model, "engine", None)
    return getattr(engine, "calls", None)


def evaluate_against_start(exp: OptimizeExperiment, template: Path, out: Path, backend, cache,
                           progress: bool) -> list[dict]:
    """Alignment of the starting and the optimised preamble on dev and test, paired."""
    from lab.report import agreement_by_key, paired_bootstrap
    from lab.run import run_label

    rows = []
    name = template.stem
    for split in ("dev", "test"):
        dirs = {}
        for preamble, given in ((exp.start_preamble, exp.start_preamble), (name, str(template))):
            config = exp.labeler_config(split, exp.n_eval, given)
            dirs[preamble] = out / "eval" / f"{split}-{preamble}"
            m = run_label(config, dirs[preamble], backend=backend, cache=cache,
                          progress=progress)
            rows.append({"split": split, "preamble": preamble, "n": m["n"],
                         "alignment": m["alignment"], "alignment_ci": m["alignment_ci"],
                         "position_bias": m["position_bias"]})
        diff, p = paired_bootstrap(agreement_by_key(dirs[name]),
                                   agreement_by_key(dirs[exp.start_preamble]))
        rows[-1].update(diff_vs_start=diff, p_value=p)
    return rows


def to_markdown(record: dict, exp: OptimizeExperiment) -> str:
    """The optimisation report (what ``rlaif optimize`` prints)."""
    lines = [f"**Preamble optimisation '{exp.name}': {exp.start_preamble} -> "
             f"{record['template']}**", "",
             "| split | preamble | n | alignment [95% CI] | vs start (paired p) | "
             "position bias |", "|---|---|---|---|---|---|"]
    for r in record["evaluation"]:
        ci = r["alignment_ci"]
        vs = (f"{r['diff_vs_start']:+.3f} (p={r['p_value']:.3f})" if "diff_vs_start" in r
              else "-")
        lines.append(f"| {r['split']} | {r['preamble']} | {r['n']} | {r['alignment']:.3f} "
                     f"[{ci[0]:.3f}, {ci[1]:.3f}] | {vs} | {r['position_bias']:.3f} |")
    lines += ["", f"Candidates scored on {record['train']['n']} pool pairs (best first):", ""]
    for c in record["candidates"]:
        short = " ".join(c["text"].split())
        short = short if len(short) <= 160 else short[:157] + "..."
        lines.append(f"- {c['train_alignment']:.3f}: {short}")
    return "\n".join(lines) + "\n"
