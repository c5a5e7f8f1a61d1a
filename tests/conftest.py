"""Shared fixtures: the real data location, small synthetic comparison files, a fake run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RLAIF_DATA_DIR", ROOT.parent / "shared" / "data"))
TLDR_FILE = SHARED_DATA / "summarize_from_feedback_comparisons" / "batch13.json"


@pytest.fixture
def real_data() -> Path:
    """The real TL;DR comparisons folder (skips where the machine has no shared data)."""
    if not TLDR_FILE.is_file():
        pytest.skip(f"no real data at {SHARED_DATA}")
    return SHARED_DATA


def tldr_row(i: int, choice: int = 0, confidence: int = 2, post: str | None = None) -> dict:
    """One comparison in OpenAI's format."""
    return {
        "info": {
            "id": f"t3_post{i}",
            "post": post or f"My cat number {i} ate my homework and then my dog ate the cat food.",
            "title": f"title {i}",
            "subreddit": "r/pets",
        },
        "split": "valid2",
        "summaries": [
            {"text": f" cat {i} ate homework", "policy": "a", "note": None},
            {"text": f" a very long and winding summary about animal number {i}", "policy": "b",
             "note": None},
        ],
        "choice": choice,
        "worker": "w1",
        "batch": "test",
        "extra": {"confidence": confidence},
    }


def write_rows(path: Path, rows: list) -> Path:
    """Write rows (dicts, or raw strings) as JSON lines."""
    with open(path, "w") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path
