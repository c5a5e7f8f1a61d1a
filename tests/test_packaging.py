"""The wheel carries the prompt templates and the report page, and an unpacked wheel renders
prompts and reports from another folder (no repository beside it).

A full `pip install .` into a fresh venv labeling real pairs is described in
docs/experiments.md ("Installing the package"); this is its fast, offline part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    if shutil.which("pip", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("no pip beside this interpreter")
    try:
        import setuptools  # noqa: F401
    except ImportError:
        pytest.skip("setuptools is not installed (needed to build without isolation)")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("lab", "prompts"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", str(src), "-w", str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    (path,) = out.glob("rlaif_lab-*.whl")
    return path


def test_wheel_holds_templates_and_page(wheel):
    import lab

    assert wheel.name.startswith(f"rlaif_lab-{lab.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    prompts = sorted(p.relative_to(ROOT / "prompts").as_posix()
                     for p in (ROOT / "prompts").rglob("*.jinja"))
    assert prompts and {f"lab/prompts_data/{p}" for p in prompts} <= names
    assert {"lab/report_page/report.html.jinja", "lab/report_page/report.css",
            "lab/report_page/report.js"} <= names
    assert not any("opt_optimize_preamble" in n for n in names)  # not a shipped preamble


def test_unpacked_wheel_renders_from_another_folder(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import lab.prompts as p, lab.html_report as h; "
            "r = p.render(p.PromptConfig(), 'a post', 'one', 'two', []); "
            "print(p.PROMPTS_DIR); print(r.assistant); print(h._page_file('report.js')[:2])")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RLAIF_PROMPTS_DIR")}
    env["PYTHONPATH"] = str(site)
    r = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(site / "lab" / "prompts_data"), "Preferred Summary=",
                                     "//"]
