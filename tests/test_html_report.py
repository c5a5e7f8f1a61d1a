"""`rlaif report`: the self-contained report.html, checked as text and in headless Chromium.

The fake labeler here prefers the longer summary (``length: 1``) with a pull towards the first
position (``position: 1``), on 10 pairs whose second summary is always the longer one:

* pairs 0-4: 4 vs 10 words: log(4/10) = -0.92 is weaker than the position pull, so the first
  *position* wins in both orders (a position flip), yet p < 0.5 (the longer one);
* pairs 5-9: 2 vs 10 words: log(2/10) = -1.61, the longer summary wins in both orders;
* the human chose the first (shorter) summary in pairs 0, 1 and 5, the second in the rest:
  the labeler disagrees in exactly those 3;
* human confidence 1 (high) in pairs 0-5, 5 (low) in pairs 6-9.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import yaml

from lab.html_report import build_report, embed_json, human_length_choice
from lab.run import read_records
from tests.chromium import chromium_path
from tests.conftest import tldr_row, write_rows
from tests.test_cli import rlaif

SCRIPT_POST = "</script><script>document.title = 'pwned'</script> <!-- my cat ate it"
FAKE = {"backend": "fake", "fake": {"length": 1.0, "position": 1.0}}


def rows() -> list[dict]:
    out = []
    for i in range(10):
        row = tldr_row(i, choice=0 if i in (0, 1, 5) else 1, confidence=1 if i < 6 else 5,
                       post=SCRIPT_POST if i == 0 else None)
        row["summaries"][0]["text"] = " " + " ".join(["cat"] * (4 if i < 5 else 2))
        row["summaries"][1]["text"] = " " + " ".join(["dog"] * 10)
        out.append(row)
    return out


@pytest.fixture
def run_dir(tmp_path):
    data = write_rows(tmp_path / "c.json", rows())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(data), "confidence": "all", "split": "all"},
        "prompt": {"preamble": "base"}, "backend": FAKE}))
    out = tmp_path / "run"
    r = rlaif("label", "--config", str(config), "--out", str(out), "--no-progress",
              "--no-cache")
    assert r.returncode == 0, r.stderr
    assert f"report: {out}/report.html" in r.stdout  # `rlaif label` says where the report is
    return out


def test_expected_labels_of_the_fake_run(run_dir):
    """The hand computation in the module docstring, on the labels the report shows."""
    records = [json.loads(line) for line in (run_dir / "labels.jsonl").read_text().splitlines()]
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    for i, r in enumerate(records):
        short = 4 if i < 5 else 2
        assert r["p_fwd"] == pytest.approx(sig(1 + math.log(short / 10)))
        assert r["p_swapped"] == pytest.approx(sig(1 + math.log(10 / short)))
        assert r["p"] < 0.5
        assert human_length_choice(r) == ("shorter" if i in (0, 1, 5) else "longer")


def test_report_is_self_contained_and_escapes_script(run_dir):
    html = (run_dir / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # nothing to fetch
    assert html.count("<script") == 2  # the JSON data and the page's own script
    assert "</script><script>document.title" not in html
    assert "\\u003c/script\\u003e\\u003cscript\\u003edocument.title" in html
    assert 'src="data:image/png;base64,' in html  # the reliability plot, inline
    assert "alignment_when_human_prefers_shorter" in html  # every metric is in the table


def test_embed_json_escapes_what_could_end_a_script():
    assert embed_json({"a": "</script>&\u2028"}) == '{"a": "\\u003c/script\\u003e\\u0026\\u2028"}'
    assert json.loads(embed_json({"a": "</script>&"})) == {"a": "</script>&"}


def test_report_of_a_folder_that_is_none_of_the_three(tmp_path):
    r = rlaif("report", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"error: {tmp_path}: not a run folder (config.json, labels.jsonl, metrics.json), a "
        "sweep (experiment.json, study.db) or an RLAIF run folder (label/); pass one of those")


def test_report_names_missing_data(run_dir, tmp_path):
    (tmp_path / "moved").mkdir()
    (tmp_path / "c.json").rename(tmp_path / "moved" / "c.json")
    r = rlaif("report", str(run_dir))
    assert r.returncode == 2 and "pass --data PATH" in r.stderr, r.stderr
    # pairs are keyed by content: other data is refused, not shown
    other = rows()
    for row in other:
        row["info"]["post"] += " (edited)"
    write_rows(tmp_path / "other.json", other)
    r = rlaif("report", str(run_dir), "--data", str(tmp_path / "other.json"))
    first = read_records(run_dir / "labels.jsonl")[0]["key"]
    assert r.stderr.strip() == (
        f"error: 10 labeled pairs (first: {first}) are not in the data the run names; pass "
        "--data PATH with the data that was labeled")
    r = rlaif("report", str(run_dir), "--data", str(tmp_path / "moved" / "c.json"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wrote {run_dir}/report.html"


needs_chromium = pytest.mark.skipif(
    chromium_path() is None,
    reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")


@needs_chromium
def test_pair_browser_in_headless_chromium(run_dir):
    from tests.chromium import Browser

    count = "document.querySelectorAll('#pairs .pair').length"

    def choose(b, control, value):
        b.eval(f"(() => {{ const s = document.getElementById('{control}'); s.value = '{value}';"
               " s.dispatchEvent(new Event('change')); })()")
        return b.eval(count)

    with Browser() as b:
        b.open((run_dir / "report.html").as_uri())
        assert b.eval(count) == 10  # one row per labeled pair (metrics n)
        assert choose(b, "f-agree", "disagree") == 3
        assert choose(b, "f-flip", "flip") == 2  # pairs 0 and 1
        assert choose(b, "f-agree", "all") == 5
        assert choose(b, "f-flip", "all") == 10
        assert choose(b, "f-length", "shorter") == 3
        assert choose(b, "f-length", "all") == 10
        assert choose(b, "f-confidence", "high") == 6
        assert choose(b, "f-confidence", "all") == 10
        assert b.eval("document.getElementById('count').textContent").startswith(
            "10 of 10 pairs shown")
        # the </script> post is text on the page, not a script that ran
        assert b.eval("document.title") != "pwned"
        b.eval("document.querySelector('#pairs .pair').open = true")
        b.eval("new Promise(r => setTimeout(r, 50))")
        assert b.eval("document.querySelector('#pairs .pair .post').textContent") == SCRIPT_POST
        # sorting by p puts the smallest p first (pairs 5-9 share the smallest p)
        choose(b, "f-sort", "p")
        first = b.eval("document.querySelector('#pairs .pair').dataset.key")
        records = read_records(run_dir / "labels.jsonl")
        smallest = min(r["p"] for r in records)
        assert first in {r["key"] for r in records if r["p"] == smallest}
        assert b.errors == []


@needs_chromium
def test_sweep_report_shows_settings_side_by_side(tmp_path):
    from tests.chromium import Browser

    data = write_rows(tmp_path / "c.json", rows())
    exp = tmp_path / "two.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "two", "data": {"path": str(data), "confidence": "all"},
        "dev_split": "all", "test_split": "all", "base": {"backend": FAKE},
        "axes": {"preamble": ["base", "detailed"]}}))
    r = rlaif("sweep", str(exp), "--results", str(tmp_path / "results"), "--no-progress",
              env={"RLAIF_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    report = tmp_path / "results" / "two" / "report.html"
    assert f"report: {report}" in r.stdout
    html = report.read_text()
    for column in ("setting", "alignment", "ci_low", "position_bias", "tokens_per_pair"):
        assert f"<th>{column}</th>" in html  # the table's columns, whatever they are
    with Browser() as b:
        b.open(report.as_uri())
        assert b.eval("document.querySelectorAll('#f-setting option').length") == 2
        assert b.eval("document.querySelectorAll('#pairs .pair').length") == 10
        b.eval("document.querySelector('#pairs .pair').open = true")
        b.eval("new Promise(r => setTimeout(r, 50))")
        names = b.eval("[...document.querySelectorAll('#pairs .pair table.labels tbody tr')]"
                       ".map(tr => tr.cells[0].textContent)")
        assert names == ["preamble=base", "preamble=detailed"]
        assert b.errors == []


def test_build_report_on_committed_sweep_without_data_names_the_fix(tmp_path, monkeypatch):
    """A report needs the labeled posts; without them the error says how to give them."""
    from lab.errors import DataError
    from tests.conftest import ROOT

    monkeypatch.delenv("RLAIF_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # ../shared/data does not exist from here
    with pytest.raises(DataError, match="pass --data PATH"):
        build_report(ROOT / "results" / "label_smollm2-135m")
    assert not os.path.exists(ROOT / "results" / "label_smollm2-135m" / ".report.html.tmp")


def test_rlaif_folder_report_shows_what_was_run(run_dir, tmp_path):
    import shutil

    rl = tmp_path / "rl"
    shutil.copytree(run_dir, rl / "label")
    html = build_report(rl).read_text()
    assert "no rm_eval.json in" in html and f"run `rlaif rm eval {rl}`" in html
    assert f"no win rate in {rl / 'winrate'}" in html and f"no A2C run in {rl}" in html
    (rl / "rm_eval.json").write_text(json.dumps({"test_split": "test", "rows": [
        {"name": "RM on human labels", "seed": 1, "n_train": 20, "best_epoch": 3, "n": 7,
         "accuracy": 0.25, "ci": [0.1, 0.4], "length_balanced": 0.5,
         "length_balanced_ci": [0.25, 0.75], "prefers_longer": 0.8}]}))
    (rl / "winrate").mkdir()
    (rl / "winrate" / "winrate.json").write_text(json.dumps({"n_posts": 4, "rows": [
        {"a": "rlaif", "b": "start", "judge": "rm", "win_rate": 0.75, "ci": [0.5, 1.0],
         "length_controlled": {"win_rate": 0.625, "ci": [0.2, 0.9]}}],
        "policies": {"start": {"mean_words": 20.5, "kl_ci": [0, 0]}}}))
    (rl / "a2c").mkdir()
    (rl / "a2c" / "log.csv").write_text("update,score\n1,0.5\n")
    (rl / "a2c" / "trend.json").write_text(json.dumps({"updates": 1}))
    html = build_report(rl).read_text()
    assert "no rm_eval.json" not in html and "no win rate" not in html
    assert "no A2C run" not in html and "a2c/trend.json: did the score rise?" in html
    assert ("<tr><td>RM on human labels</td><td>1</td><td>20</td><td>3</td><td>7</td>"
            "<td>0.250 [0.100, 0.400]</td><td></td><td>0.500 [0.250, 0.750]</td>"
            "<td>0.800</td></tr>") in html
    assert ("<tr><td>rlaif</td><td>start</td><td>rm</td><td>0.750</td><td>[0.500, 1.000]</td>"
            "<td>0.625</td></tr>") in html
    assert "<tr><td>start</td><td>20.500</td></tr>" in html
