"""The README's set-up commands: exactly two near the top, and .ci/run runs the test one."""

from __future__ import annotations

from tests.conftest import ROOT


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
