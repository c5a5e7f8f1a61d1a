"""The pairwise judge is today's labeler, byte for byte: prompts, labels and label-cache keys.

``tests/golden/judge_pairwise.json`` was written by the labeler before the judge seam existed
(``UPDATE_GOLDEN=1`` rewrites it; do so only for a deliberate change of the pairwise prompts,
which also orphans every label in the users' shared label caches).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lab.backends.fake import FakeBackend
from lab.data import Pair
from lab.label import DecodeConfig, Labeler
from lab.prompts import Exemplar, PromptConfig

GOLDEN = Path(__file__).parent / "golden" / "judge_pairwise.json"
PAIRS = [
    Pair("g1", "t3_g1", "I (24F) adopted a cat last week. She hides under the bed all day. "
         "How do I help her settle in?", "", "",
         "New cat hides all day, how do I help her feel at home?", "I got a cat.", 1.0, 2, "w"),
    Pair("g2", "t3_g2", "My landlord kept my whole deposit and says the carpet was stained, "
         "but it was stained when I moved in. I have photos.", "", "",
         "Landlord kept deposit over a carpet stain.",
         "Landlord kept my deposit for a stain that was there before I moved in; I have "
         "photos, what can I do?", 0.0, 8, "w"),
    Pair("g3", "t3_g3", "Ran my first marathon today after a year of training!", "", "",
         "Ran.", "Ran a marathon.", 0.5, None, "w"),
]
EXEMPLARS = [Exemplar("My boss texts me at midnight about work. Is that normal?",
                      "Boss texts at midnight, normal?", "Work.", 1)]
CASES = {
    "base_0shot_direct": (PromptConfig("base", 0, False), []),
    "detailed_0shot_direct": (PromptConfig("detailed", 0, False), []),
    "base_1shot_direct": (PromptConfig("base", 1, False), EXEMPLARS),
    "detailed_1shot_cot": (PromptConfig("detailed", 1, True), EXEMPLARS),
    "base_0shot_cot": (PromptConfig("base", 0, True), []),
}
KNOBS = {"position": 0.7, "length": 0.4, "skill": 1.3, "noise": 0.5, "rationale": 0.9}
LABEL_KEYS = ("p", "p_fwd", "p_swapped", "rationales", "prompt_tokens", "generated_tokens")


def current() -> dict:
    """What the labeler renders, keys and labels for every case and pair."""
    out = {}
    for name, (prompt, exemplars) in CASES.items():
        decode = DecodeConfig(samples=2, temperature=0.7) if prompt.cot else DecodeConfig()
        labeler = Labeler(FakeBackend(**KNOBS), prompt, decode, exemplars)
        cases = []
        for pair in PAIRS:
            heads, key = labeler.key_for(pair)
            label = labeler.label(pair)
            scored = labeler.prompt_for(pair, True, " Summary 2 is better.") if prompt.cot \
                else None
            cases.append({"heads": heads, "key": key, "scored_swapped": scored,
                          "label": {k: label[k] for k in LABEL_KEYS}})
        out[name] = cases
    return out


def test_pairwise_prompts_keys_and_labels_match_golden():
    got = current()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert sorted(got) == sorted(want)
    for name in want:
        for i, (g, w) in enumerate(zip(got[name], want[name], strict=True)):
            assert g["heads"] == w["heads"], (name, i)
            assert g["scored_swapped"] == w["scored_swapped"], (name, i)
            assert g["key"] == w["key"], (name, i)
            assert g["label"] == w["label"], (name, i)  # floats exactly, through JSON
