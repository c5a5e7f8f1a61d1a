"""Sweeps on the fake backend: best setting, resume, cache, golden table, export round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from lab.cache import LabelCache
from lab.config import ConfigError, RunConfig
from lab.errors import RunError
from lab.experiment import Experiment, setting_slug
from lab.report import HEADERS, write_tables
from lab.run import read_records
from lab.sweep import Sweep, complete_trials, default_storage
from tests.conftest import ROOT, tldr_row, write_rows

GOLDEN = Path(__file__).parent / "golden"
# skill only counts when the prompt contains a sentence of the detailed preamble
FAKE = {"backend": "fake", "fake": {"skill": 6.0, "keyword": "Overall quality:",
                                     "position": 0.5, "noise": 0.3}}


def posts(n=40):
    words = "cat dog homework rent landlord job boss sister wedding car money trip".split()
    out = []
    for i in range(n):
        post = " ".join(words[(i + k) % len(words)] for k in range(12)) + f" story {i}"
        good = " ".join(words[(i + k) % len(words)] for k in range(4))
        bad = f"something unrelated entirely number {i} here"
        row = tldr_row(i, choice=i % 2, confidence=[1, 2, 8, 9][i % 4], post=post)
        row["summaries"][i % 2]["text"] = " " + good
        row["summaries"][1 - i % 2]["text"] = " " + bad
        out.append(row)
    return out


@pytest.fixture
def exp_file(tmp_path):
    data = write_rows(tmp_path / "c.json", posts())

    def make(axes, name="demo", **extra):
        spec = {"name": name, "data": {"path": str(data), "confidence": "high"},
                "dev_split": "eval", "test_split": "all",
                "base": {"backend": FAKE}, "axes": axes, **extra}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        return path

    return make


def sweep_of(path, tmp_path, cache=None, **kw):
    cache = cache if cache is not None else LabelCache()
    return Sweep(Experiment.load(path), root=tmp_path / "results", cache=cache,
                 progress=False, **kw)


def study_at(out, name):
    return optuna.load_study(study_name=name, storage=default_storage(out))


def score_calls(sweep):
    return sum(b.calls["score"] for b in sweep.backends.values())


def test_grid_finds_the_known_best_setting(exp_file, tmp_path):
    sweep = sweep_of(exp_file({"preamble": ["base", "detailed"], "shots": [0, 1]}), tmp_path)
    study = sweep.run()
    done = complete_trials(study)
    assert sorted(json.dumps(t.params) for t in done) == sorted(
        json.dumps(s) for s in sweep.exp.settings())
    best = max(done, key=lambda t: t.values[0])
    assert best.params["preamble"] == "detailed"
    by = {(t.params["preamble"], t.params["shots"]): t.user_attrs["alignment"] for t in done}
    assert by[("detailed", 0)] == 1.0 and by[("base", 0)] < 0.8
    assert set(done[0].user_attrs) >= {"alignment", "alignment_ci", "position_bias", "run_dir"}


def test_resume_after_kill_runs_nothing_finished_twice(exp_file, tmp_path):
    # the first restart after a SIGKILL works (issue 14): the killed trial stops sending
    # heartbeats, the restarted sweep fails it through Optuna's fail_stale_trials and runs its
    # setting again as a queued retry (no Study.tell outside optimize, no Study.stop error)
    slow = {"backend": {**FAKE, "fake": {**FAKE["fake"], "delay": 0.01}}}
    path = exp_file({"preamble": ["base", "detailed"], "shots": [0, 1]}, base=slow)
    exp = Experiment.load(path)
    out = tmp_path / "results" / exp.name
    third = out / "trials" / setting_slug(exp.settings()[2]) / "labels.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "sweep", str(path), "--results", str(tmp_path / "results"),
         "--no-progress", "--heartbeat", "1"], cwd=ROOT,
        env={**os.environ, "RLAIF_CACHE_DIR": str(tmp_path / "c")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (third.is_file() and len(third.read_text()) > 3000):
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no clean-up, the third trial stays RUNNING
    proc.wait()
    kept = len(read_records(third))
    n_pairs = json.loads((out / "trials" / setting_slug(exp.settings()[0]) / "metrics.json")
                         .read_text())["n"]
    assert 0 < kept < n_pairs
    study = study_at(out, exp.name)
    states = [t.state.name for t in study.get_trials()]
    assert states == ["COMPLETE", "COMPLETE", "RUNNING", "WAITING"]
    again = sweep_of(path, tmp_path, heartbeat=1)
    study = again.run()
    # the third setting resumes from its kept labels, the fourth runs whole
    assert score_calls(again) == 2 * ((n_pairs - kept) + n_pairs)
    assert again.evaluated == 2
    states = [t.state.name for t in study.get_trials()]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert len(read_records(third)) == n_pairs
    assert sorted(json.dumps(t.params) for t in complete_trials(study)) == sorted(
        json.dumps(s) for s in exp.settings())


def test_cache_makes_a_repeated_trial_free(exp_file, tmp_path):
    cache = LabelCache(tmp_path / "labels.sqlite")
    one = sweep_of(exp_file({"preamble": ["detailed"]}, name="one"), tmp_path, cache)
    one.run()
    assert score_calls(one) > 0
    # Another experiment with the same setting: every pair comes from the cache.
    two = sweep_of(exp_file({"preamble": ["detailed"]}, name="two"), tmp_path, cache)
    two.run()
    assert score_calls(two) == 0 and two.evaluated == 1
    # TPE proposing settings repeatedly: each distinct setting is computed once.
    tpe = sweep_of(exp_file({"preamble": ["base", "detailed"]}, name="tpe", sampler="tpe",
                            trials=6), tmp_path, LabelCache())
    study = tpe.run()
    seen = {t.params["preamble"] for t in study.get_trials()}
    pairs = json.loads((tpe.out / "trials" / "preamble=detailed" / "metrics.json")
                       .read_text())["n"] if "detailed" in seen else 0
    assert len(study.get_trials()) == 6
    assert score_calls(tpe) <= 2 * pairs * len(seen)


def test_one_engine_at_a_time_loaded_once_per_model(
        exp_file, tmp_path, monkeypatch):
    # vLLM engines reserve their GPU share at start: a sweep over models holds one at a time.
    from lab.backends.fake import FakeBackend

    events = []

    class Engine(FakeBackend):
        def __init__(self, model, **knobs):
            super().__init__(**knobs)
            self.model = model
            events.append(f"open {model}")

        def close(self):
            events.append(f"close {self.model}")

    monkeypatch.setattr("lab.sweep.make_backend",
                        lambda config: Engine(config.model, **config.fake))
    # model listed last: the grid's own order would switch model at every trial
    path = exp_file({})
    spec = yaml.safe_load(path.read_text())
    spec["axes"] = {"preamble": ["base", "detailed"], "shots": [0, 1], "model": ["a", "b"]}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    sweep = sweep_of(path, tmp_path)
    assert [s["model"] for s in sweep.exp.settings()] == ["a", "b"] * 4
    study = sweep.run()
    assert events == ["open a", "close a", "open b"]
    assert len(sweep.backends) == 1 and len(complete_trials(study)) == 8


def test_table_matches_golden(exp_file, tmp_path):
    sweep = sweep_of(exp_file({"preamble": ["base", "detailed"], "cot": [False, True]}),
                     tmp_path)
    sweep.run()
    paths = write_tables(sweep.out)
    # seconds per pair is a measurement, not a constant: mask that column
    import pandas as pd

    md = "\n".join(
        " | ".join(c if i != HEADERS.index("s/pair") else "S"
                   for i, c in enumerate(line.split(" | ")))
        if line.startswith("| ") and not line.startswith("| setting") else line
        for line in paths[0].read_text().splitlines()) + "\n"
    csv = pd.read_csv(paths[1]).drop(columns="seconds_per_pair").to_csv(index=False)
    for name, text in (("sweep_table.md", md), ("sweep_table.csv", csv)):
        golden = GOLDEN / name
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(text)
        assert text == golden.read_text()
    assert "\\begin{tabular}" in paths[2].read_text()


def test_export_round_trip(exp_file, tmp_path):
    sweep = sweep_of(exp_file({"preamble": ["base", "detailed"]}), tmp_path)
    sweep.run()
    env = {**os.environ, "RLAIF_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "lab", "export", str(sweep.out), "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    best = yaml.safe_load((sweep.out / "best.yaml").read_text())
    assert best["prompt"]["preamble"] == "detailed"
    assert best["export"]["model_identity"].startswith("fake:")
    assert set(best["export"]["templates"]) >= {"preamble/detailed.jinja", "labeler.jinja"}
    assert best["export"]["dev"]["alignment"] == 1.0
    assert best["export"]["judge"] == "pairwise"
    assert best["export"]["aggregation"].endswith("p = (p_fwd + 1 - p_swapped) / 2")
    assert RunConfig.load(sweep.out / "best.yaml").data.split == "all"
    out = tmp_path / "reloaded"
    r = subprocess.run([sys.executable, "-m", "lab", "label", "--config",
                        str(sweep.out / "best.yaml"), "--out", str(out), "--no-progress",
                        "--no-cache"], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    test_run = Path(best["export"]["test"]["run_dir"])
    original = {x["key"]: x["p"] for x in read_records(test_run / "labels.jsonl")}
    reloaded = {x["key"]: x["p"] for x in read_records(out / "labels.jsonl")}
    assert reloaded == original and len(reloaded) > 10


def test_export_of_a_rating_judge_records_its_aggregation_and_reloads_it(exp_file, tmp_path):
    from lab.export import export_best
    from lab.judges import JUDGES
    from lab.run import run_label

    sweep = sweep_of(exp_file({"judge": ["rating"]}), tmp_path)
    sweep.run()
    path = export_best(sweep.out, progress=False)
    best = yaml.safe_load(path.read_text())
    assert best["prompt"]["judge"] == best["export"]["judge"] == "rating"
    assert best["export"]["aggregation"] == JUDGES["rating"].aggregation == (
        "each response rated alone, s = expected rating over the scale tokens 1-9; "
        "p = 0.5 + (s_first - s_second) / 16; no presentation order")
    assert "debiasing" not in best["export"]
    config = RunConfig.load(path)
    assert config.prompt.judge == "rating"
    run_label(config, tmp_path / "reloaded", cache=LabelCache(), progress=False)
    test_run = Path(best["export"]["test"]["run_dir"])
    original = {x["key"]: x["p"] for x in read_records(test_run / "labels.jsonl")}
    reloaded = {x["key"]: x["p"] for x in read_records(tmp_path / "reloaded" / "labels.jsonl")}
    assert reloaded == original and len(reloaded) > 10


def test_every_judge_says_how_it_aggregates_and_old_exports_still_load():
    from lab.judges import JUDGES

    texts = {name: judge.aggregation for name, judge in JUDGES.items()}
    assert all(texts.values()) and len(set(texts.values())) == len(texts)
    assert "p = (p_fwd + 1 - p_swapped) / 2" in texts["pairwise"]
    for name, field in (("rlaif_labeler", "debiasing"),  # an export from before judges
                        ("quickstart", "aggregation")):   # one written since
        path = ROOT / "results" / name / "best.yaml"
        assert field in yaml.safe_load(path.read_text())["export"]
        assert RunConfig.load(path).prompt.judge == "pairwise"


def test_a_judge_that_shows_a_reference_gets_its_own_slice_in_a_sweep(tmp_path):
    rows = [tldr_row(i, confidence=1) for i in range(4)]
    ref = tldr_row(0, confidence=1)  # post 0's reference summary against its summary "a"
    ref["summaries"][1] = {"text": " the reference summary", "policy": "ref", "note": None}
    data = write_rows(tmp_path / "c.json", [*rows, ref])
    spec = {"name": "refs", "data": {"path": str(data)}, "dev_split": "all",
            "test_split": "all", "base": {"backend": FAKE},
            "axes": {"judge": ["pairwise", "reference"]}}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(spec))
    sweep = sweep_of(tmp_path / "e.yaml", tmp_path)
    sweep.identity({"judge": "pairwise"}, "all")  # memoises the 5 pairs without references
    sweep.identity({"judge": "reference"}, "all")
    assert sorted(len(pairs) for pairs, _ in sweep._slices.values()) == [1, 5]


def test_bad_experiment_files(tmp_path, exp_file):
    path = exp_file({"preamble": ["base"]})
    spec = yaml.safe_load(path.read_text())
    for bad, message in (({"samplr": "grid"}, "unknown key 'samplr'"),
                         ({"axes": {"colour": ["red"]}}, "unknown axis 'colour'"),
                         ({"sampler": "tpe"}, "needs a trial budget"),
                         ({"data": {"conf": "high"}}, "data: unknown key 'conf'")):
        path.write_text(yaml.safe_dump({**spec, **bad}))
        with pytest.raises(ConfigError) as err:
            Experiment.load(path)
        assert message in str(err.value) and str(path) in str(err.value)


def test_shipped_experiments_load():
    from lab.optimize import OptimizeExperiment

    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        if path.name.startswith("optimize_"):  # `rlaif optimize` files
            assert OptimizeExperiment.load(path).labeler_config("dev", 10).data.n == 10
            continue
        exp = Experiment.load(path)
        assert exp.settings()


def test_plots_written_for_the_axes_present(exp_file, tmp_path):
    from lab.plots import write_plots

    path = exp_file({"model": ["smollm2-135m", "qwen2.5-coder-0.5b"], "preamble": ["base",
                     "detailed"]}, cost_objective="seconds_per_pair")
    sweep = sweep_of(path, tmp_path)
    sweep.run()
    names = sorted(p.name for p in write_plots(sweep.out))
    assert names == ["alignment_by_setting.png", "alignment_vs_size.png", "cost.png",
                     "importance.png", "reliability.png"]
    for name in names:
        data = (sweep.out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_report_commands_on_a_folder_without_a_sweep(tmp_path):
    for command in ("table", "plot", "export"):
        r = subprocess.run([sys.executable, "-m", "lab", command, str(tmp_path)],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 2
        assert r.stderr.strip() == (f"error: {tmp_path}: no experiment.json; "
                                    "run `rlaif sweep` for it first")


def sweep_cli(path, results, tmp_path):
    env = {**os.environ, "RLAIF_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "lab", "sweep", str(path), "--results",
                           str(results), "--no-progress", "--no-report"], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


@pytest.mark.parametrize("change, difference", [
    ({"data": {"n": 8}}, "another experiment under this name (data.n: 12 -> 8)"),
    ({"base": {"backend": {**FAKE, "fake": {**FAKE["fake"], "noise": 0.9}}}},
     "another experiment under this name (base.backend.fake.noise: 0.3 -> 0.9)"),
    ({"axes": {"preamble": ["base", "detailed"], "shots": [0, 1]}},
     "another experiment under this name (axes.shots: (absent) -> [0, 1])"),
])
def test_reusing_a_results_folder_for_another_experiment_is_refused(
        exp_file, tmp_path, change, difference):
    # issue 14: B after A with the same name must never table A's numbers as B's
    first = exp_file({"preamble": ["base", "detailed"]})
    spec = yaml.safe_load(first.read_text())
    spec["data"]["n"] = 12
    first.write_text(yaml.safe_dump(spec))
    results = tmp_path / "results"
    assert sweep_cli(first, results, tmp_path).returncode == 0
    before = (results / "demo" / "experiment.json").read_text()
    second = tmp_path / "b" / "demo.yaml"
    second.parent.mkdir()
    data = {**spec["data"], **change.get("data", {})}
    second.write_text(yaml.safe_dump({**spec, **change, "data": data}))
    r = sweep_cli(second, results, tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    out = results / "demo"
    assert r.stderr == (f"error: {out}: the study 'demo' holds {difference}; use "
                        f"another --results folder (or experiment name), or move {out} "
                        "away\n")
    assert (out / "experiment.json").read_text() == before  # A's record is left as it was
    # the same experiment again is fine (nothing left to run)
    again = sweep_cli(first, results, tmp_path)
    assert again.returncode == 0 and "(0 evaluated now" in again.stdout


def test_changed_data_or_template_content_is_refused(exp_file, tmp_path, monkeypatch):
    path = exp_file({"preamble": ["base", "detailed"]})
    sweep_of(path, tmp_path).run()
    # the same experiment file, but the data file's content changed (one summary edited)
    data = Path(yaml.safe_load(path.read_text())["data"]["path"])
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[3]["summaries"][0]["text"] += " edited"
    write_rows(data, rows)
    with pytest.raises(RunError, match=r"trial 0 \(preamble=base\) labeled with another data "
                       r"slice \(the pairs' content differs\)"):
        sweep_of(path, tmp_path).run()
    rows[3]["summaries"][0]["text"] = rows[3]["summaries"][0]["text"][:-len(" edited")]
    write_rows(data, rows)
    sweep_of(path, tmp_path).run()  # restored: accepted again
    # a template's text changed since the trials were labeled
    import shutil

    import lab.prompts

    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    (prompts / "preamble" / "base.jinja").write_text("A different preamble.\n")
    monkeypatch.setattr(lab.prompts, "PROMPTS_DIR", prompts)
    with pytest.raises(RunError, match=r"trial 0 \(preamble=base\) labeled with other template "
                       r"text \(preamble/base.jinja changed since\)"):
        sweep_of(path, tmp_path).run()


def test_table_shows_the_exported_best_only_while_it_is_current(exp_file, tmp_path):
    from lab.export import export_best

    path = exp_file({"preamble": ["base", "detailed"]})
    sweep = sweep_of(path, tmp_path)
    sweep.run()
    export_best(sweep.out, progress=False)
    row = "exported best (preamble=detailed) on the all split"
    assert row in write_tables(sweep.out)[0].read_text()
    # the study starts over (another machine, a moved study.db): the export belongs to the
    # old study's best trial, so the table leaves it out until `rlaif export` runs again
    (sweep.out / "study.db").rename(tmp_path / "old-study.db")
    sweep_of(path, tmp_path).run()
    assert "exported best" not in write_tables(sweep.out)[0].read_text()
    export_best(sweep.out, progress=False)
    assert row in write_tables(sweep.out)[0].read_text()


def test_a_larger_tpe_budget_continues_the_search(exp_file, tmp_path):
    axes = {"preamble": ["base", "detailed"], "shots": [0, 1]}
    first = sweep_of(exp_file(axes, name="tpe", sampler="tpe", trials=3), tmp_path)
    assert len(first.run().get_trials()) == 3
    more = sweep_of(exp_file(axes, name="tpe", sampler="tpe", trials=5), tmp_path)
    study = more.run()
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 5
    assert more.evaluated == 2
    assert json.loads((more.out / "experiment.json").read_text())["trials"] == 5


def test_run_identity_is_the_data_content_not_where_it_was_read_from(tmp_path):
    """A second machine (or RLAIF_DATA_DIR) reads the same pairs from another path: same slice."""
    from lab.config import RunConfig
    from lab.data import load_pairs
    from lab.experiment import run_identity

    rows = [tldr_row(i, choice=i % 2) for i in range(6)]
    for sub in "abc":
        (tmp_path / sub).mkdir()
    here = load_pairs(str(write_rows(tmp_path / "a" / "c.json", rows)))[0]
    there = load_pairs(str(write_rows(tmp_path / "b" / "elsewhere.json", rows)))[0]
    assert [p.source for p in here] != [p.source for p in there]
    config = RunConfig()
    assert run_identity(config, here, [])["data"] == run_identity(config, there, [])["data"]
    rows[2]["summaries"][0]["text"] += " edited"
    changed = load_pairs(str(write_rows(tmp_path / "c" / "c.json", rows)))[0]
    assert run_identity(config, changed, [])["data"] != run_identity(config, here, [])["data"]


# --- judges and datasets as axes ---------------------------------------------------------


def test_prompt_axes_apply_only_to_the_judges_that_read_them(exp_file):
    exp = Experiment.load(exp_file({"judge": ["pairwise", "rating"], "preamble": ["base",
                                    "detailed"], "shots": [0, 1]}))
    assert exp.settings() == [
        {"judge": "pairwise", "preamble": "base", "shots": 0},
        {"judge": "pairwise", "preamble": "base", "shots": 1},
        {"judge": "pairwise", "preamble": "detailed", "shots": 0},
        {"judge": "pairwise", "preamble": "detailed", "shots": 1},
        {"judge": "rating"},  # reads neither: one setting, not four
    ]
    assert setting_slug({"judge": "rating"}) == "judge=rating"


def test_a_judge_search_asks_for_prompt_axes_only_where_they_apply(exp_file, tmp_path):
    axes = {"judge": ["pairwise", "rating", "self-reward"], "preamble": ["base", "detailed"],
            "shots": [0, 1]}
    study = sweep_of(exp_file(axes, name="judges", sampler="tpe", trials=6), tmp_path).run()
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    for t in trials:
        wanted = {"judge", "preamble", "shots"} if t.params["judge"] == "pairwise" else {"judge"}
        assert set(t.params) == wanted
    # a larger budget continues the search: the trials without the prompt axes are its own
    more = sweep_of(exp_file(axes, name="judges", sampler="tpe", trials=8), tmp_path)
    assert [t.state.name for t in more.run().get_trials()] == ["COMPLETE"] * 8


def test_a_table_with_a_data_axis_compares_settings_within_each_block(tmp_path):
    from tests.test_datasets import hh_row, write_gz

    root = tmp_path / "hh_rlhf_test"
    for split in ("helpful-base", "harmless-base"):
        write_gz(root / split / "test.jsonl.gz",
                 [hh_row(f"{split} q{i}?", "a fine answer " * (i % 3 + 1), "no")
                  for i in range(12)])
    spec = {"name": "hhdemo", "data": {"path": str(root), "task": "hh", "confidence": "all"},
            "dev_split": "all", "test_split": "all", "base": {"backend": FAKE},
            "axes": {"subset": ["helpful-base", "harmless-base"],
                     "judge": ["pairwise", "rating"]}}
    path = tmp_path / "hhdemo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    sweep_of(path, tmp_path).run()
    out = tmp_path / "results" / "hhdemo"
    write_tables(out)
    import pandas as pd

    table = pd.read_csv(out / "table.csv")
    assert table["setting"].tolist()[:8] == [
        "subset=helpful-base, judge=pairwise", "subset=helpful-base, judge=rating",
        "length-only baseline (same pairs; subset=helpful-base)",
        "always the first response (the data's first-position human rate; "
        "subset=helpful-base)",
        "subset=harmless-base, judge=pairwise", "subset=harmless-base, judge=rating",
        "length-only baseline (same pairs; subset=harmless-base)",
        "always the first response (the data's first-position human rate; "
        "subset=harmless-base)"]
    compared = table[table["p_vs_base"].notna()]["setting"].tolist()
    assert compared == ["subset=helpful-base, judge=rating", "subset=harmless-base, judge=rating"]
    assert (table["n"].iloc[[0, 1, 4, 5]] == 12).all()  # each block labels its own 12 pairs
    md = (out / "table.md").read_text()
    assert "12 HH-RLHF pairs" not in md and "HH-RLHF pairs (all split)" in md
    assert "Stiennon" not in md  # a TL;DR note
