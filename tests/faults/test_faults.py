"""The fault corpus (issue 14): what a hostile tester tries, and the exact outcome of each.

One table, :data:`CASES`: a case is one line (an id, what to break, the command, the exit code
and the exact one-line ``error:`` message, or a check of the recovered state). Commands run
in-process through :func:`lab.cli.main` on the fake backend; kills (a real SIGKILL of a
``python -m lab label`` subprocess) and two concurrent writers are the subprocess tests at the
end. In messages, ``{tmp}`` is the case's folder and ``<*>`` stands for text that varies
(a hash, a pid).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import prompts
from lab.cli import main
from lab.prompts import PROMPTS_DIR
from tests.conftest import tldr_row

N = 8
LABEL = ("label --backend fake --data {tmp}/c.json --confidence all --split all --no-progress "
         "--out {tmp}/run")
KNOBS = "backend: {backend: fake, fake: {length: 1.0, noise: 0.5}}\n"
LABEL_K = LABEL + " --config {tmp}/k.yaml"  # a fake whose labels differ from pair to pair
SWEEP = "sweep {tmp}/e.yaml --results {tmp}/results --no-progress --no-report"
FIX_ROW = " (fix the row or pass --skip-bad-rows)"
NEW_OUT = "pass a new --out (or delete that folder to start it again)"
RESTORE = "restore the file or pass a new --out"
CACHE_FIX = ("run `rlaif cache verify` to list bad entries and `rlaif cache clear` to empty "
             "the cache, or pass --no-cache")


# ---- what to break ---------------------------------------------------------------------------

def rows(tmp: Path, replace: dict | None = None, drop: int | None = None) -> None:
    """Write the N-row data file, with row i (1-based) replaced by a dict or raw bytes/str."""
    lines = [tldr_row(i, choice=i % 2, confidence=[1, 3, 7, 9][i % 4]) for i in range(N)]
    out = []
    for lineno, row in enumerate(lines, 1):
        row = (replace or {}).get(lineno, row)
        if lineno == drop:
            continue
        out.append(row if isinstance(row, bytes) else
                   (row if isinstance(row, str) else json.dumps(row)).encode())
    (tmp / "c.json").write_bytes(b"\n".join(out) + b"\n")
    (tmp / "k.yaml").write_text(KNOBS)


def row(i: int = 1, **changes) -> dict:
    """Row i with nested changes, e.g. row(choice=2) or row(**{"info.post": ""})."""
    r = tldr_row(i, choice=i % 2, confidence=[1, 3, 7, 9][i % 4])
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = r
        for part in path:
            target = target[part]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return r


DELETE = object()


def data(**kw):
    return lambda tmp, mp: rows(tmp, **kw)


def text(name: str, content: str, then=None):
    """Write a file (after the default data), e.g. a config or an experiment."""
    def prep(tmp, mp):
        rows(tmp)
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(content.replace("{tmp}", str(tmp)))
        if then:
            then(tmp, mp)
    return prep


def experiment(body: str):
    return text("e.yaml", "data: {path: {tmp}/c.json, confidence: all}\n"
                          "base: {backend: {backend: fake}}\n" + body)


def run_first(then=None, args: str = ""):
    """Label the data once (the folder the case then breaks)."""
    def prep(tmp, mp):
        rows(tmp)
        assert main(shlex.split(LABEL_K.format(tmp=tmp) + args)) == 0
        if then:
            then(tmp, mp)
    return prep


def template(name: str, content: str):
    """A copy of prompts/ with one template replaced (the lab reads it for this case)."""
    def prep(tmp, mp):
        rows(tmp)
        copy = tmp / "prompts"
        shutil.copytree(PROMPTS_DIR, copy)
        (copy / name).write_text(content)
        mp.setattr(prompts, "PROMPTS_DIR", copy)
        mp.setattr(prompts, "_ENV", None)
    return prep


def edit_labels(fn: Callable[[list[str]], list[str]], raw: bool = False):
    def then(tmp, mp):
        path = tmp / "run" / "labels.jsonl"
        if raw:
            path.write_bytes(fn(path.read_bytes()))
        else:
            path.write_text("".join(fn(path.read_text().splitlines(keepends=True))))
    return then


def flip_p(line: str) -> str:
    r = json.loads(line)
    r["p"] = 1 - r["p"]
    return json.dumps(r) + "\n"


def drop_key(line: str) -> str:
    r = json.loads(line)
    del r["key"]
    return json.dumps(r) + "\n"


def edit_cache(fn: Callable[[dict], dict], checksum: str = "keep"):
    """Change the first cached label; its checksum kept, recomputed, or removed (NULL)."""
    def then(tmp, mp):
        import hashlib

        db = sqlite3.connect(tmp / "cache" / "labels.sqlite")
        key, value = db.execute("SELECT key, value FROM labels ORDER BY key LIMIT 1").fetchone()
        new = json.dumps(fn(json.loads(value)))
        sums = {"keep": None, "recompute": hashlib.sha256(new.encode()).hexdigest()}
        if checksum == "keep":
            db.execute("UPDATE labels SET value = ? WHERE key = ?", (new, key))
        else:
            db.execute("UPDATE labels SET value = ?, checksum = ? WHERE key = ?",
                       (new, sums.get(checksum), key))
        db.commit()
        db.close()
    return then


def flipped(v: dict) -> dict:
    return {**v, "p": 1 - v["p"]}


def garbage_cache(content: bytes):
    def prep(tmp, mp):
        rows(tmp)
        (tmp / "cache").mkdir()
        (tmp / "cache" / "labels.sqlite").write_bytes(content)
    return prep


def lock_held(tmp, mp):
    """Another holder of the folder's lock (a second open file description, as another
    process would have)."""
    import fcntl

    rows(tmp)
    (tmp / "run").mkdir()
    fd = os.open(tmp / "run" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, b"4242\n", 0)
    mp.setattr(sys.modules[__name__], "_held", fd, raising=False)


# ---- what must hold afterwards ---------------------------------------------------------------

def records(tmp: Path, folder: str = "run") -> list[dict]:
    return [json.loads(x) for x in (tmp / folder / "labels.jsonl").read_text().splitlines()]


def labeled(n: int, skipped: int = 0):
    def check(tmp, out):
        recs = records(tmp)
        assert len(recs) == n and len({r["key"] for r in recs}) == n
        assert (f"skipped {skipped} malformed rows" in out) == bool(skipped)
    return check


def same_as_reference(tmp, out):
    """All N labels present once, each equal to an uninterrupted run's."""
    assert main(shlex.split(LABEL_K.format(tmp=tmp).replace("/run", "/ref") + " --no-cache")) == 0
    got = {r["key"]: r["p"] for r in records(tmp)}
    want = {r["key"]: r["p"] for r in records(tmp, "ref")}
    assert len(records(tmp)) == N and got == want


def untouched(name: str, content: str):
    def check(tmp, out):
        assert (tmp / "run" / name).read_text() == content
    return check


def unchanged_labels(tmp, out):
    assert len(records(tmp)) == N  # nothing cut, nothing appended


# ---- the corpus ------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    id: str
    prep: Callable | None
    argv: str
    code: int
    error: str | None = None
    check: Callable | None = None


LONG = "word " * 200_000  # a 1 MB post: 200000 fake tokens, + 229 of prompt, + 1 answer
LONG_ROW = data(replace={6: row(6, info__post=LONG)})
FAKE_CTX = "backend: {backend: fake, fake: {max_context: 2048}}\n"
NO_TURN = json.dumps({"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: hi"})

CASES = [
    # data: every bad row is one line naming file:line, or a counted skip
    Case("data-bad-json", data(replace={2: "{not json"}), LABEL, 2,
         "{tmp}/c.json:2: bad JSON (Expecting property name enclosed in double quotes at column 2)"
         + FIX_ROW),
    Case("data-non-utf8", data(replace={2: b'{"info": "\xff\xfe"}'}), LABEL, 2,
         "{tmp}/c.json:2: not UTF-8 (byte 0xff at byte 11 of the line); save the file as UTF-8"
         + FIX_ROW),
    Case("data-non-utf8-skipped", data(replace={2: b"\xff\xfe\n"}), LABEL + " --skip-bad-rows",
         0, check=labeled(N - 1, skipped=1)),
    Case("data-empty-summary", data(replace={3: row(3, summaries=[{"text": "a"}, {"text": " "}])}),
         LABEL, 2, "{tmp}/c.json:3: field 'summaries[1].text' is empty" + FIX_ROW),
    Case("data-empty-summary-skipped", data(replace={3: row(3, summaries=[{"text": ""},
                                                                        {"text": "b"}])}),
         LABEL + " --skip-bad-rows", 0, check=labeled(N - 1, skipped=1)),
    Case("data-missing-choice", data(replace={2: row(2, choice=DELETE)}), LABEL, 2,
         "{tmp}/c.json:2: missing field 'choice'" + FIX_ROW),
    Case("data-choice-2", data(replace={2: row(2, choice=2)}), LABEL, 2,
         "{tmp}/c.json:2: field 'choice' must be 0 or 1, found 2" + FIX_ROW),
    Case("data-confidence-0", data(replace={2: row(2, extra__confidence=0)}), LABEL, 2,
         "{tmp}/c.json:2: field 'extra.confidence' must be 1..9, found 0" + FIX_ROW),
    Case("data-three-summaries", data(replace={2: row(2, summaries=[{"text": "a"}] * 3)}), LABEL,
         2, "{tmp}/c.json:2: field 'summaries' must hold exactly two summaries, found 3" + FIX_ROW),
    Case("data-row-not-object", data(replace={5: "[1, 2]"}), LABEL, 2,
         "{tmp}/c.json:5: row is not a JSON object" + FIX_ROW),
    Case("data-missing-post", data(replace={4: row(4, info__post=DELETE)}), LABEL, 2,
         "{tmp}/c.json:4: missing field 'info.post'" + FIX_ROW),
    Case("data-1mb-post", text("f.yaml", FAKE_CTX, LONG_ROW),
         LABEL + " --config {tmp}/f.yaml", 2,
         "{tmp}/c.json:6: the prompt needs 200230 tokens (post of 999999 characters), more than "
         "the 2048-token context of fake:<*>; shorten or remove that row, or pass --skip-bad-rows"),
    Case("data-1mb-post-skipped", text("f.yaml", FAKE_CTX, LONG_ROW),
         LABEL + " --config {tmp}/f.yaml --skip-bad-rows", 0, check=labeled(N - 1, skipped=1)),
    Case("data-no-such-file", data(), LABEL.replace("c.json", "nope.json"), 2,
         "{tmp}/nope.json: no such file or folder; pass --data PATH or set RLAIF_DATA_DIR "
         "(e.g. ../shared/data)"),
    Case("data-empty-file", text("c.json", ""), LABEL, 2,
         "{tmp}/c.json: no comparison rows found; point --data at a TL;DR .json file"),
    Case("data-hh-no-assistant-turn", text("h.jsonl", NO_TURN + "\n"),
         LABEL.replace("c.json", "h.jsonl"), 2,
         "{tmp}/h.jsonl:1: field 'chosen' has no '\\n\\nAssistant:' turn" + FIX_ROW),
    # configs: type and range of every value, one line naming file, key, expected type
    Case("cfg-cot-no", text("c.yaml", "prompt: {cot: 'no'}\n"), LABEL + " --config {tmp}/c.yaml",
         2, "{tmp}/c.yaml: prompt.cot: expected true or false, found 'no'"),
    Case("cfg-temperature-hot", text("c.yaml", "decode: {temperature: hot}\n"),
         LABEL + " --config {tmp}/c.yaml", 2,
         "{tmp}/c.yaml: decode.temperature: expected a number, found 'hot'"),
    Case("cfg-shots-two", text("c.yaml", "prompt: {shots: two}\n"),
         LABEL + " --config {tmp}/c.yaml", 2,
         "{tmp}/c.yaml: prompt.shots: expected an integer, found 'two'"),
    Case("cfg-n-ten", text("c.yaml", "data: {n: ten}\n"), LABEL + " --config {tmp}/c.yaml", 2,
         "{tmp}/c.yaml: data.n: expected an integer, found 'ten'"),
    Case("cfg-shots-true", text("c.yaml", "prompt: {shots: true}\n"),
         LABEL + " --config {tmp}/c.yaml", 2,
         "{tmp}/c.yaml: prompt.shots: expected an integer, found True"),
    Case("cfg-n-negative-flag", data(), LABEL + " --n -3", 2,
         "command line: data.n: expected a value >= 1, found -3"),
    Case("cfg-n-negative-flag-over-config", data(), LABEL_K + " --n -3", 2,
         "command line: data.n: expected a value >= 1, found -3"),
    Case("cfg-shots-negative-flag", data(), LABEL + " --shots -1", 2,
         "command line: prompt.shots: expected a value >= 0, found -1"),
    Case("cfg-samples-zero-flag", data(), LABEL + " --samples 0", 2,
         "command line: decode.samples: expected a value >= 1, found 0"),
    Case("cfg-malformed-yaml", text("c.yaml", "prompt: [1,\n"), LABEL + " --config {tmp}/c.yaml",
         2, "{tmp}/c.yaml: not valid YAML (expected the node content, but found '<stream end>' at "
            "line 2)"
            "; fix the config file"),
    Case("cfg-not-a-mapping", text("c.yaml", "- 1\n"), LABEL + " --config {tmp}/c.yaml", 2,
         "{tmp}/c.yaml: a config file is a mapping of keys, found list"),
    Case("cfg-bad-json", text("c.json.cfg/config.json", "{"),
         LABEL + " --config {tmp}/c.json.cfg/config.json", 2,
         "{tmp}/c.json.cfg/config.json: not valid JSON (Expecting property name enclosed in "
         "double quotes at line 1); fix the config file"),
    Case("cfg-unknown-section", text("c.yaml", "promt: {}\n"), LABEL + " --config {tmp}/c.yaml",
         2, "{tmp}/c.yaml: unknown section 'promt'; known: data, prompt, backend, decode"),
    Case("cfg-unknown-key", text("c.yaml", "prompt: {preambel: base}\n"),
         LABEL + " --config {tmp}/c.yaml", 2, "{tmp}/c.yaml: prompt: unknown key 'preambel'; "
         "known: cot, judge, max_exemplar_chars, preamble, shots, shuffle_order"),
    Case("cfg-confidence-choice", text("c.yaml", "data: {confidence: medium}\n"),
         LABEL.replace(" --confidence all", "") + " --config {tmp}/c.yaml", 2,
         "{tmp}/c.yaml: data.confidence: expected 'high' or 'all', found 'medium'"),
    Case("cfg-unknown-judge", None, LABEL + " --judge nope", 2,
         "command line: prompt.judge: expected 'pairwise', 'rating', 'pairwise-tie', "
         "'self-reward', 'principles', 'principles-all' or 'reference', found 'nope'"),
    Case("cfg-judge-without-cot", None, LABEL + " --judge rating --cot", 2,
         "command line: the rating judge has no chain-of-thought ending; drop prompt.cot "
         "(--no-cot) or use --judge pairwise"),
    Case("cfg-fake-not-mapping", text("c.yaml", "backend: {fake: 3}\n"),
         LABEL + " --config {tmp}/c.yaml", 2,
         "{tmp}/c.yaml: backend.fake: expected a mapping, found 3"),
    Case("cfg-self-consistency-needs-cot", data(), LABEL + " --samples 2 --temperature 0.7", 2,
         "command line: self-consistency (decode.samples > 1) needs prompt.cot"),
    # experiments (sweep, optimize) and the other configs
    Case("exp-unknown-objective", experiment("objective: speed\n"), SWEEP, 2,
         "{tmp}/e.yaml: objective: expected 'alignment', 'alignment_high_confidence' or "
         "'alignment_forward_only', found 'speed'"),
    Case("exp-name-escapes-results", experiment("name: ../../x\n"), SWEEP, 2,
         "{tmp}/e.yaml: name '../../x' must be a plain folder name (letters, digits, _ . - = , +; "
         "no / or ..) so that results stay inside --results"),
    Case("exp-name-absolute", experiment("name: /tmp/x\n"), SWEEP, 2,
         "{tmp}/e.yaml: name '/tmp/x' must be a plain folder name (letters, digits, _ . - = , +; "
         "no / or ..) so that results stay inside --results"),
    Case("exp-axis-value-type", experiment("axes: {shots: [0, two]}\n"), SWEEP, 2,
         "{tmp}/e.yaml: prompt.shots: expected an integer, found 'two'"),
    Case("exp-cot-string", experiment("axes: {cot: ['no']}\n"), SWEEP, 2,
         "{tmp}/e.yaml: prompt.cot: expected true or false, found 'no'"),
    Case("exp-malformed-yaml", text("e.yaml", "axes: {cot: [true}\n"), SWEEP, 2,
         "{tmp}/e.yaml: not valid YAML (expected ',' or ']', but got '}' at line 1); fix the "
         "experiment file"),
    Case("exp-sampler", experiment("sampler: random\n"), SWEEP, 2,
         "{tmp}/e.yaml: sampler: expected 'grid' or 'tpe', found 'random'"),
    Case("exp-trials-zero", experiment("sampler: tpe\ntrials: 0\n"), SWEEP, 2,
         "{tmp}/e.yaml: trials: expected a value >= 1, found 0"),
    Case("exp-base-not-mapping", text("e.yaml", "base: {prompt: 3}\n"), SWEEP, 2,
         "{tmp}/e.yaml: base.prompt: expected a mapping, found 3"),
    Case("exp-data-n-string", text("e.yaml", "data: {n: ten}\n"), SWEEP, 2,
         "{tmp}/e.yaml: data.n: expected an integer, found 'ten'"),
    Case("opt-breadth", text("o.yaml", "breadth: 1\n"), "optimize {tmp}/o.yaml", 2,
         "{tmp}/o.yaml: breadth: expected a value >= 2, found 1"),
    Case("opt-n-train-string", text("o.yaml", "n_train: many\n"), "optimize {tmp}/o.yaml", 2,
         "{tmp}/o.yaml: n_train: expected an integer, found 'many'"),
    Case("rl-updates-zero", None, "rl train --out {tmp}/rl --updates 0", 2,
         "command line: updates: expected a value >= 1, found 0"),
    Case("rl-temperature-negative", None, "rl train --out {tmp}/rl --temperature -1", 2,
         "command line: temperature: expected a value > 0.0, found -1.0"),
    # templates: one line naming the template, before anything is written
    Case("tpl-sandbox", template("preamble/bad.jinja", "{{ ''.__class__.__mro__ }}"),
         LABEL + " --preamble bad", 2, "template 'preamble/bad.jinja': SecurityError: access to "
         "attribute '__class__' of 'str' object is unsafe; fix the template"),
    Case("tpl-huge-range", template("preamble/bad.jinja", "{{ range(10**9)|list|length }}"),
         LABEL + " --preamble bad", 2, "template 'preamble/bad.jinja': OverflowError: Range too "
         "big. The sandbox blocks ranges larger than MAX_RANGE (100000); fix the template"),
    Case("tpl-undefined", template("preamble/bad.jinja", "{{ nothing }}"),
         LABEL + " --preamble bad", 2, "template 'preamble/bad.jinja': 'nothing' is undefined; "
         "pass that variable or remove it from the template"),
    Case("tpl-syntax", template("preamble/bad.jinja", "{% if %}"), LABEL + " --preamble bad", 2,
         "template 'preamble/bad.jinja' line 1: Expected an expression, got 'end of statement "
         "block'"),
    Case("tpl-division", template("preamble/bad.jinja", "{{ 1 / 0 }}"), LABEL + " --preamble bad",
         2, "template 'preamble/bad.jinja': ZeroDivisionError: division by zero; fix the "
         "template"),
    Case("tpl-changed-after-run",
         run_first(lambda tmp, mp: template("sample.jinja", "{{ text }} {{ summary_1 }}")(tmp, mp)),
         LABEL_K, 2, "{tmp}/run: template 'sample.jinja' changed since this folder was labeled; "
         + NEW_OUT),
    # run folders: identity, foreign files, torn and corrupt lines, one writer
    Case("out-is-a-file", text("run", "my notes\n"), LABEL, 2,
         "--out {tmp}/run is a file, not a folder; pass a folder path",
         lambda tmp, out: (tmp / "run").read_text() == "my notes\n"),
    Case("out-parent-is-a-file", text("f", "x"), LABEL.replace("/run", "/f/run"), 2,
         "{tmp}/f/run: a parent is a file, not a folder; pass a folder path"),
    Case("out-read-only", lambda tmp, mp: (rows(tmp), (tmp / "run").mkdir(),
                                           mp.setattr("lab.io.os.access", lambda *a: False)),
         LABEL, 2, "{tmp}/run is read-only; pass a folder you can write to"),
    Case("out-users-labels-jsonl", text("run/labels.jsonl", "my own notes\n"), LABEL, 2,
         "{tmp}/run/labels.jsonl was not written by this lab (no run.json beside it: another "
         "program's file, or a run folder of an older version); move it away or pass another "
         "--out", untouched("labels.jsonl", "my own notes\n")),
    Case("out-users-config-json", text("run/config.json", "{}"), LABEL, 2,
         "{tmp}/run/config.json was not written by this lab (no run.json beside it: another "
         "program's file, or a run folder of an older version); move it away or pass another "
         "--out", untouched("config.json", "{}")),
    Case("out-foreign-run-json", text("run/run.json", '{"hello": 1}'), LABEL, 2,
         "{tmp}/run/run.json is not a run record this lab wrote; move it away or pass another "
         "--out"),
    Case("out-corrupt-middle-line", run_first(edit_labels(lambda ls: ls[:3] + ["{oops\n"] +
                                                          ls[3:])), LABEL_K, 2,
         "{tmp}/run/labels.jsonl:4: not a record the lab wrote (Expecting property name enclosed "
         "in double quotes); the lab never writes such a line: restore that line or move the "
         "file away, then rerun",
         lambda tmp, out: len((tmp / "run/labels.jsonl").read_text().splitlines()) == N + 1),
    Case("out-torn-last-line", run_first(edit_labels(lambda b: b[: b.rindex(b"\n", 0, -1) + 40],
                                                     raw=True)),
         LABEL_K, 0, check=same_as_reference),
    Case("out-record-without-key", run_first(edit_labels(lambda ls: ls[:2] + [drop_key(ls[2])] +
                                                         ls[3:])), LABEL_K, 2,
         "{tmp}/run/labels.jsonl:3: record has no 'key'; " + RESTORE),
    Case("out-record-p-flipped", run_first(edit_labels(lambda ls: [flip_p(ls[0])] + ls[1:])),
         LABEL_K, 2, "{tmp}/run/labels.jsonl:1: p = <*> is not (p_fwd + 1 - p_swapped) / 2 = <*>; "
         + RESTORE),
    Case("out-record-duplicated", run_first(edit_labels(lambda ls: ls + ls[:1])), LABEL_K, 2,
         "{tmp}/run/labels.jsonl:9: a second record of pair <*>; " + RESTORE),
    Case("out-other-config", run_first(), LABEL_K + " --preamble base", 2,
         "{tmp}/run holds a run with another config (prompt.preamble is 'detailed' there, "
         "'base' now); " + NEW_OUT),
    Case("out-row-deleted-after-run", run_first(lambda tmp, mp: rows(tmp, drop=3)), LABEL_K, 2,
         "{tmp}/run was labeled on another data slice (8 pairs then, 7 now, different content: "
         "the data file changed); " + NEW_OUT),
    Case("out-rows-reordered", run_first(lambda tmp, mp: (tmp / "c.json").write_text(
        "".join(reversed((tmp / "c.json").read_text().splitlines(keepends=True))))), LABEL_K, 0,
         check=unchanged_labels),
    Case("out-second-writer", lock_held, LABEL, 2,
         "{tmp}/run is in use by another run (pid 4242); wait for it to finish or pass another "
         "folder"),
    # the label cache: checksums, validation, damaged files
    Case("cache-p-flipped", run_first(edit_cache(flipped)), LABEL_K.replace("/run", "/run2"), 2,
         "label cache {tmp}/cache/labels.sqlite: entry <*> does not match its checksum (edited or "
         "damaged); " + CACHE_FIX),
    Case("cache-p-flipped-checksum-forged", run_first(edit_cache(flipped, "recompute")),
         LABEL_K.replace("/run", "/run2"), 2, "label cache {tmp}/cache/labels.sqlite: entry <*>: "
         "p = <*> is not (p_fwd + 1 - p_swapped) / 2 = <*>; " + CACHE_FIX),
    Case("cache-string-p-fwd", run_first(edit_cache(lambda v: {**v, "p_fwd": "0.5"}, "recompute")),
         LABEL_K.replace("/run", "/run2"), 2, "label cache {tmp}/cache/labels.sqlite: entry <*>: "
         "p_fwd = '0.5' is not a probability in [0, 1]; " + CACHE_FIX),
    Case("cache-nan-p", run_first(edit_cache(lambda v: {**v, "p": float("nan")}, "recompute")),
         LABEL_K.replace("/run", "/run2"), 2, "label cache {tmp}/cache/labels.sqlite: entry <*>: "
         "p = nan is not a probability in [0, 1]; " + CACHE_FIX),
    Case("cache-older-entry-recomputed", run_first(edit_cache(flipped, "null")),
         LABEL_K.replace("/run", "/run2"), 0, check=lambda tmp, out: records(tmp, "run2") and
         [r["p"] for r in records(tmp, "run2")] == [r["p"] for r in records(tmp)]),
    Case("cache-garbage-file", garbage_cache(b"\x00garbage" * 500), LABEL, 2,
         "label cache {tmp}/cache/labels.sqlite is damaged (file is not a database); pass "
         "--no-cache, or run `rlaif cache clear` to start a new one"),
    Case("cache-garbage-no-cache", garbage_cache(b"\x00garbage" * 500), LABEL + " --no-cache", 0,
         check=labeled(N)),
    Case("cache-verify-tampered", run_first(edit_cache(flipped)), "cache verify", 2,
         "1 bad entries in {tmp}/cache/labels.sqlite; run `rlaif cache clear` (or pass "
         "--no-cache)", lambda tmp, out: _matches(
             "bad entry <*>: does not match its checksum (edited or damaged)\n"
             f"{tmp}/cache/labels.sqlite: {N} labels, {N - 1} verified, 1 bad, 0 without a "
             "checksum (written by an older lab; computed anew when used)\n", out)),
    Case("cache-verify-forged", run_first(edit_cache(flipped, "recompute")), "cache verify", 2,
         "1 bad entries in {tmp}/cache/labels.sqlite; run `rlaif cache clear` (or pass "
         "--no-cache)", lambda tmp, out: _matches(
             "bad entry <*>: p = <*> is not (p_fwd + 1 - p_swapped) / 2 = <*>\n<*>", out)),
    Case("cache-verify-clean", run_first(), "cache verify", 0,
         check=lambda tmp, out: f"{N} labels, {N} verified, 0 bad" in out),
    Case("cache-clear-refuses-other-file", text("notes.txt", "mine"),
         "cache clear --path {tmp}/notes.txt", 2,
         "{tmp}/notes.txt is not a label cache; the lab deletes only its own files",
         lambda tmp, out: (tmp / "notes.txt").read_text() == "mine"),
    Case("cache-clear-path", run_first(), "cache clear --path {tmp}/cache/labels.sqlite", 0,
         check=lambda tmp, out: out == f"removed {tmp}/cache/labels.sqlite\n"),
    Case("cache-info", run_first(), "cache info", 0,
         check=lambda tmp, out: out.startswith(f"{tmp}/cache/labels.sqlite: {N} labels, ")),
    Case("cache-clear-then-label", garbage_cache(b"junk"), "cache clear", 0,
         check=lambda tmp, out: not (tmp / "cache/labels.sqlite").exists() and
         main(shlex.split(LABEL.format(tmp=tmp))) == 0),
]


def _matches(pattern: str, text: str) -> bool:
    regex = ".+?".join(re.escape(part) for part in pattern.split("<*>"))
    return re.fullmatch(regex, text, re.DOTALL) is not None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLAIF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RLAIF_DATA_DIR", raising=False)
    if case.prep:
        case.prep(tmp_path, monkeypatch)
    capsys.readouterr()
    code = main(shlex.split(case.argv.format(tmp=tmp_path)))
    out, err = capsys.readouterr()
    assert code == case.code, err
    if case.error is not None:
        expected = "error: " + case.error.replace("{tmp}", str(tmp_path))
        assert err.count("\n") == 1 and _matches(expected, err.strip()), err
    else:
        assert "error" not in err
    if case.check:
        assert case.check(tmp_path, out) is not False


# ---- kills and concurrent writers (real subprocesses) -----------------------------------------

def _label_cmd(tmp: Path, delay: float = 0.05) -> list[str]:
    cfg = tmp / "slow.yaml"
    cfg.write_text(KNOBS.replace("length:", f"delay: {delay}, length:"))
    return [sys.executable, "-m", "lab", *shlex.split(LABEL.format(tmp=tmp)), "--config",
            str(cfg)]


def _env(tmp: Path) -> dict:
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "RLAIF_CACHE_DIR": str(tmp / "cache"),
            "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended first ({proc.returncode})"
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("after_records,extra", [(0, 0.0), (2, 0.03), (5, 0.011)],
                         ids=["before-first-label", "mid-run", "late"])
def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path, after_records, extra):
    """SIGKILL at a point of the run, then the same command: every pair once, as computed by an
    uninterrupted run."""
    rows(tmp_path)
    labels = tmp_path / "run" / "labels.jsonl"
    proc = subprocess.Popen(_label_cmd(tmp_path), env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: (tmp_path / "run" / "run.json").exists() and labels.exists()
              and labels.read_bytes().count(b"\n") >= after_records, proc)
    time.sleep(extra)  # the kill lands mid-pair (possibly mid-write)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert labels.read_bytes().count(b"\n") < N  # it was killed before the end
    done = subprocess.run(_label_cmd(tmp_path), env=_env(tmp_path), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    same_as_reference(tmp_path, "")


def test_two_concurrent_writers_one_is_refused(tmp_path):
    rows(tmp_path)
    # slow enough (16 prompts x 0.3 s) to still hold the folder when the second one starts
    first = subprocess.Popen(_label_cmd(tmp_path, 0.3), env=_env(tmp_path),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (tmp_path / "run" / "run.json").exists(), first)
    second = subprocess.run(_label_cmd(tmp_path, 0.3), env=_env(tmp_path),
                            capture_output=True, text=True)
    assert second.returncode == 2
    assert second.stderr == (f"error: {tmp_path}/run is in use by another run (pid {first.pid}); "
                             "wait for it to finish or pass another folder\n")
    assert first.wait() == 0, first.stderr.read()
    recs = records(tmp_path)
    assert len(recs) == N and len({r["key"] for r in recs}) == N


# ---- a backend's answer and the proposer's text (in-process, one line each) -------------------

class StubBackend:
    """A backend that answers every prompt with the same log-probabilities."""

    identity = "stub:0"

    def __init__(self, logprobs):
        self.logprobs = logprobs

    def format(self, user: str, assistant: str) -> str:
        return f"{user}\n\n{assistant}"

    def score(self, prompts, candidates):
        from lab.backends import Score

        return [Score(self.logprobs, 1) for _ in prompts]


WHERE = "the pair at {src}"
BACKEND_CASES = [
    ((float("nan"), -1.0), "stub:0 gave no usable log-probabilities of both candidates "
     "['1', '2'] for " + WHERE + " (fwd order): (nan, -1.0)"),
    ((-1.0,), "stub:0 gave no usable log-probabilities of both candidates ['1', '2'] for "
     + WHERE + " (fwd order): (-1.0,)"),
    ((float("-inf"), float("-inf")), "stub:0 gave no usable log-probabilities of both "
     "candidates ['1', '2'] for " + WHERE + " (fwd order): (-inf, -inf)"),
    ((None, -1.0), "stub:0 gave no usable log-probabilities of both candidates ['1', '2'] for "
     + WHERE + " (fwd order): (None, -1.0)"),
]


@pytest.mark.parametrize("logprobs,message", BACKEND_CASES, ids=["nan", "one-candidate",
                                                                 "both-missing", "none"])
def test_bad_backend_answer_is_an_error_and_nothing_is_cached(tmp_path, logprobs, message):
    from lab.backends import BackendError
    from lab.cache import LabelCache
    from lab.data import load_pairs
    from lab.label import DecodeConfig, Labeler
    from lab.prompts import PromptConfig

    rows(tmp_path)
    pair = load_pairs(str(tmp_path / "c.json"))[0][0]
    cache = LabelCache(tmp_path / "cache.sqlite")
    labeler = Labeler(StubBackend(logprobs), PromptConfig(), DecodeConfig(), [], cache)
    with pytest.raises(BackendError) as err:
        labeler.label(pair)
    assert str(err.value) == message.format(src=pair.source)
    assert cache.count() == 0


@pytest.mark.parametrize("text", ["{{ 7*7 }}", "a {% raw %} b {% endraw %} c", "{%- endraw -%}",
                                  "{# not a comment #}", "{%%}{%{% endraw %}", "plain text"])
def test_proposer_text_is_written_verbatim(tmp_path, monkeypatch, text):
    from lab.optimize import jinja_literal

    copy = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, copy)
    monkeypatch.setattr(prompts, "PROMPTS_DIR", copy)
    monkeypatch.setattr(prompts, "_ENV", None)
    (copy / "preamble" / "opt_x.jinja").write_text("{#- header -#}\n" + jinja_literal(text) + "\n")
    assert prompts.render_template("preamble/opt_x.jinja") == text.strip()


def test_transformers_backend_knows_its_context_and_counts_like_score(tmp_path):
    """The length check reads the model's context and counts tokens as ``score`` reads them."""
    from lab.backends.hf import TransformersBackend
    from lab.data import load_pairs
    from lab.label import DecodeConfig, Labeler
    from lab.prompts import PromptConfig
    from tests.tiny_model import build_tiny_model

    backend = TransformersBackend(str(build_tiny_model(tmp_path / "tiny")), dtype="fp32")
    assert backend.max_context == 4096  # the tiny model's max_position_embeddings
    rows(tmp_path, replace={1: row(1, info__post="word " * 5000)})
    pairs = load_pairs(str(tmp_path / "c.json"))[0]
    labeler = Labeler(backend, PromptConfig(), DecodeConfig(), [])
    prompt = labeler.prompt_for(pairs[1])
    assert backend.count_tokens(prompt) == backend.score([prompt], ["1", "2"])[0].prompt_tokens
    assert labeler.too_long(pairs[1]) is None
    why = labeler.too_long(pairs[0])
    assert why.startswith("the prompt needs ") and why.endswith(
        f"tokens (post of 24999 characters), more than the 4096-token context of "
        f"{backend.identity}")
