"""The README's set-up commands (exactly two near the top, .ci/run runs the test one), and the
commands the README and docs/*.md show: every `rlaif` command line in a bash block parses with
the CLI's own parser, every `rlaif SUBCOMMAND` named anywhere exists, and the Python API
example runs as it stands."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys

import pytest

from lab.cli import build_parser
from tests.conftest import ROOT, write_rows
from tests.test_sweep import posts

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_two_setup_commands_and_ci_runs_the_test_one():
    main, tests = setup_commands()
    assert "rlaif sweep experiments/quickstart.yaml" in main
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of one language."""
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def rlaif_command_lines(text: str) -> list[list[str]]:
    """`rlaif ...` commands of the bash blocks, split into words (continuations joined)."""
    out = []
    for block in blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("#"):
                continue
            for part in re.split(r"&&|;|\|", line):
                words = shlex.split(part)
                if words and words[0].endswith("rlaif"):  # rlaif, .venv/bin/rlaif
                    out.append(words[1:])
    return out


def inline_rlaif_commands(text: str) -> list[list[str]]:
    """Inline `rlaif ... --flag ...` code spans (full command lines, e.g. in tables)."""
    spans = re.findall(r"`(?:\.venv/bin/)?rlaif ([^`]+)`", text)
    return [shlex.split(s) for s in spans if "--" in s]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_rlaif_command_in_a_bash_block_parses():
    parser = build_parser()
    checked = 0
    for doc in DOCS:
        text = doc.read_text()
        for words in rlaif_command_lines(text) + inline_rlaif_commands(text):
            if "..." in words:  # an elided command line, e.g. `--backend vllm ...`
                continue
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    parser.parse_args(words)
            except SystemExit as stop:  # --version and --help exit 0 after printing
                if stop.code != 0:
                    pytest.fail(f"{doc.name}: `rlaif {' '.join(words)}` does not parse")
            checked += 1
    assert checked >= 20  # the README's set-up lines and the docs' examples (26 today)


def test_every_rlaif_subcommand_named_exists():
    top = subcommands(build_parser())
    named = set()
    for doc in DOCS:
        for m in re.finditer(r"`(?:\.venv/bin/)?rlaif ([a-z]+)(?: ([a-z]+))?", doc.read_text()):
            named.add((doc.name, m.group(1), m.group(2)))
    assert named
    for doc, command, action in sorted(named, key=str):
        assert command in top, f"{doc}: `rlaif {command}` is not a subcommand"
        nested = top[command]._subparsers
        if nested is not None and action is not None:
            assert action in subcommands(top[command]), f"{doc}: `rlaif {command} {action}`"


def test_python_api_example_runs(tmp_path):
    """docs/python_api.md's example, run as it stands on synthetic pairs."""
    (code,) = blocks((ROOT / "docs" / "python_api.md").read_text(), "python")
    data = write_rows(tmp_path / "c.json", posts())
    work = tmp_path / "notebook"  # ../shared/data does not exist from here
    work.mkdir()
    env = {**os.environ, "RLAIF_DATA_DIR": str(data),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import json

    metrics = json.loads((work / "runs" / "notebook" / "metrics.json").read_text())
    labels = [json.loads(x) for x in
              (work / "runs" / "notebook" / "labels.jsonl").read_text().splitlines()]
    disagree = sum((x["p"] > 0.5) != (x["human"] > 0.5) for x in labels)
    assert metrics["n"] == 20
    assert r.stdout.splitlines() == [
        f"alignment {metrics['alignment']:.3f} on 20 pairs, "
        f"position bias {metrics['position_bias']:.3f}",
        f"{disagree} pairs where the labeler and the human disagree",
        "report: runs/notebook/report.html",
    ]
