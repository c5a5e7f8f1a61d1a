"""The judge seam and the judges beyond pairwise, on the fake backend with exact expectations."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from lab import metrics
from lab.backends import BackendConfig, Score
from lab.backends.fake import FakeBackend
from lab.cache import LabelCache
from lab.config import ConfigError, RunConfig
from lab.data import DataConfig, DataError, Pair, load_pairs
from lab.experiment import Experiment
from lab.judges import JUDGES, judge_class
from lab.judges.pairwise_tie import conservative_verdict, order_verdict
from lab.judges.rating import rating_preference
from lab.label import DecodeConfig, Labeler, label_problem
from lab.prompts import PromptConfig, template_digests
from lab.run import read_records, run_label
from tests.conftest import tldr_row, write_rows

TEXT = "My cat ate my homework again today and the teacher did not believe me."
A, B, C = "cat ate homework", "my cat ate my homework today", "dog"


def pair(first=A, second=B, human=1.0, key="k1", text=TEXT) -> Pair:
    return Pair(key, "t3_x", text, "", "", first, second, human, 2, "w")


def labeler(judge, backend=None, cache=None, **knobs) -> Labeler:
    backend = backend if backend is not None else FakeBackend(**knobs)
    return Labeler(backend, PromptConfig(judge=judge), DecodeConfig(), [], cache)


def tilted(q: float, values) -> float:
    """Expected rating when P(v) is proportional to exp(q v) (the fake's rating)."""
    w = [math.exp(q * v) for v in values]
    return sum(v * x for v, x in zip(values, w)) / sum(w)


class Stub:
    """A backend answering hand-set log-probs, chosen from the probe (the item as shown)."""

    identity = "stub:1"
    reads_probes = True

    def __init__(self, answer):
        self.answer = answer  # probe -> log-probs
        self.asked = []

    def format(self, user, assistant):
        return f"{user}\n\n{assistant}"

    def score(self, prompts, candidates, probes=None):
        self.asked.append(list(candidates))
        return [Score(tuple(self.answer(probe)), 10) for probe in probes]


NEG = -math.inf

# --- the registry and the config ------------------------------------------------------------


def test_registry_names_every_judge():
    assert list(JUDGES) == ["pairwise", "rating", "pairwise-tie", "self-reward", "principles",
                            "principles-all", "reference"]
    with pytest.raises(ConfigError, match="^unknown judge 'nope'; known: pairwise, rating, "
                                          "pairwise-tie, self-reward, principles, "
                                          "principles-all, reference$"):
        judge_class("nope")


def test_unknown_judge_in_a_config_is_one_line_listing_the_known_ones():
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"prompt": {"judge": "nope"}}, "c.yaml")
    assert str(err.value) == ("c.yaml: prompt.judge: expected 'pairwise', 'rating', "
                              "'pairwise-tie', 'self-reward', 'principles', "
                              "'principles-all' or 'reference', found 'nope'")


@pytest.mark.parametrize("prompt,message", [
    ({"cot": True}, "the rating judge has no chain-of-thought ending"),
    ({"shots": 1}, "the rating judge shows no few-shot exemplars"),
    ({"preamble": "base"}, "the rating judge has its own prompt (judges/rating.jinja) and reads "
                           "no preamble"),
])
def test_settings_a_judge_does_not_read_are_refused(prompt, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig.from_dict({"prompt": {"judge": "rating", **prompt}})


def test_judge_axis_in_an_experiment(tmp_path):
    ok = Experiment(name="j", axes={"judge": ["pairwise", "rating"]})
    ok.check("exp.yaml")
    assert ok.run_config({"judge": "rating"}, "dev").prompt.judge == "rating"
    with pytest.raises(ConfigError, match="exp.yaml: prompt.judge: expected 'pairwise'"):
        Experiment(name="j", axes={"judge": ["pairwise", "nope"]}).check("exp.yaml")


def test_pairwise_keeps_the_config_and_identity_of_runs_before_judges():
    # config.json and run identities of pairwise runs read as before judges existed
    for raw in (RunConfig().to_dict(), RunConfig().identity_dict()):
        assert "judge" not in raw["prompt"]
    rating = RunConfig.from_dict({"prompt": {"judge": "rating"}})
    assert rating.to_dict()["prompt"]["judge"] == "rating"
    assert rating.identity_dict()["prompt"]["judge"] == "rating"
    assert RunConfig.from_dict(rating.to_dict()) == rating
    assert set(template_digests(PromptConfig())) == {
        "labeler.jinja", "ending/direct.jinja", "ending/cot.jinja", "preamble/detailed.jinja",
        "sample.jinja", "exemplar.jinja"}
    assert set(template_digests(rating.prompt)) == {"judges/rating.jinja"}
    assert set(template_digests(PromptConfig(judge="pairwise-tie"))) == {
        "judges/pairwise_tie.jinja", "sample.jinja"}


# --- rating ---------------------------------------------------------------------------------


def test_rating_is_the_expected_value_of_a_hand_set_distribution():
    # P("7") = P("8") = 1/2 for the first response, P("2") = 1 for the second
    def answer(probe):
        return [0.0 if (probe.responses == (A,) and v in (7, 8)) or
                (probe.responses == (B,) and v == 2) else NEG for v in range(1, 10)]

    stub = Stub(answer)
    r = labeler("rating", stub).label(pair())
    assert stub.asked == [[str(v) for v in range(1, 10)]]
    assert (r["rating_first"], r["rating_second"]) == (7.5, 2.0)
    assert r["p"] == 0.5 + (7.5 - 2.0) / 16 == 0.84375
    assert (r["p_fwd"], r["p_swapped"]) == (r["p"], 1 - r["p"])
    assert label_problem(r) is None and r["rationales"] == {}


def test_rating_on_the_fake_is_its_tilted_distribution():
    # fake: P(v) proportional to exp(q v), q = length * log(words); no knobs: uniform
    assert labeler("rating").label(pair())["rating_first"] == pytest.approx(5.0, abs=1e-12)
    r = labeler("rating", length=1.0).label(pair(first="two words", second="one"))
    # q = log 2 -> P(v) ~ 2^v: sum v 2^v / sum 2^v = 8194 / 1022; q = log 1 = 0 -> 5
    assert r["rating_first"] == pytest.approx(8194 / 1022, rel=1e-12)
    assert r["rating_second"] == pytest.approx(5.0, rel=1e-12)
    assert r["p"] == pytest.approx(0.5 + (8194 / 1022 - 5) / 16, rel=1e-12)
    # skill: q = skill * share of the response's words found in the text
    r = labeler("rating", skill=2.0).label(pair(first="cat homework zebra", second="zebra"))
    assert r["rating_first"] == pytest.approx(tilted(2.0 * 2 / 3, range(1, 10)), rel=1e-12)
    assert r["rating_second"] == pytest.approx(5.0, rel=1e-12)


def test_rating_p_rule_has_no_position_bias_by_construction():
    knobs = dict(position=2.0, length=1.0, skill=1.3, noise=0.5)
    for first, second in [(A, B), (B, C), (A, C), (C, C)]:
        p = labeler("rating", **knobs).label(pair(first, second))["p"]
        q = labeler("rating", **knobs).label(pair(second, first))["p"]
        assert p == 1 - q  # exactly, not approximately
    assert rating_preference(3.1, 7.7, 8) == 1 - rating_preference(7.7, 3.1, 8)
    records = list(labeler("rating", **knobs).label_many(
        [pair(A, B, key="1"), pair(B, C, key="2"), pair(C, A, human=0.0, key="3")]))
    m = metrics.compute(records)
    assert m["position_bias"] == 0.0 and m["alignment_forward_only"] == m["alignment"]


def test_a_response_is_rated_once_for_every_pair_it_appears_in():
    pairs = [pair(A, B, key="1"), pair(B, C, key="2"), pair(A, C, key="3"),
             pair(C, A, key="4")]
    # one chunk: 3 distinct responses, 3 scored prompts in one backend call
    together = labeler("rating", length=1.0)
    records = list(together.label_many(pairs))
    assert together.backend.calls["score"] == 3 and together.backend.backend_calls == 1
    assert [r["cache_hit"] for r in records] == [False, False, True, True]
    # pair by pair: the cache serves the repeats
    cache = LabelCache()
    alone = labeler("rating", cache=cache, length=1.0)
    one_by_one = [alone.label(p) for p in pairs]
    assert alone.backend.calls["score"] == 3 and cache.count() == 3
    strip = ("seconds", "cache_hit")
    assert [{k: v for k, v in r.items() if k not in strip} for r in one_by_one] == \
        [{k: v for k, v in r.items() if k not in strip} for r in records]
    # a new labeler on the same cache computes nothing
    again = labeler("rating", cache=cache, length=1.0)
    assert [again.label(p)["p"] for p in pairs] == [r["p"] for r in one_by_one]
    assert again.backend.calls["score"] == 0


def test_rating_cache_key_is_the_response_prompt_model_engine_and_scale():
    judge = labeler("rating", length=1.0).judge
    (a1, b1), (b2, c2) = judge.units(pair(A, B)), judge.units(pair(B, C))
    assert b1.key == b2.key and len({a1.key, b1.key, c2.key}) == 3
    other_model = labeler("rating", length=2.0).judge.units(pair(A, B))[0]
    self_reward = labeler("self-reward", length=1.0).judge.units(pair(A, B))[0]
    pairwise = labeler("pairwise", length=1.0).judge.units(pair(A, B))[0]
    assert len({a1.key, other_model.key, self_reward.key, pairwise.key}) == 4


def test_a_bad_rating_from_the_backend_is_an_error_and_nothing_is_cached():
    from lab.backends import BackendError

    cache = LabelCache()
    stub = Stub(lambda probe: [NEG] * 9)
    with pytest.raises(BackendError, match=r"^stub:1 gave no usable log-probabilities of the "
                                           r"scale tokens \['1', .*'9'\] for the first "
                                           r"response of the pair at k1: \(-inf"):
        labeler("rating", stub, cache).label(pair())
    assert cache.count() == 0


# --- self-reward ----------------------------------------------------------------------------


def test_self_reward_scale_and_p_rule():
    stub = Stub(lambda probe: [0.0 if v == (4 if probe.responses == (A,) else 1) else NEG
                               for v in range(6)])
    r = labeler("self-reward", stub).label(pair())
    assert stub.asked == [["0", "1", "2", "3", "4", "5"]]
    assert (r["rating_first"], r["rating_second"]) == (4.0, 1.0)
    assert r["p"] == 0.5 + (4 - 1) / 10
    # on the fake: a one-word response is uniform over 0..5 (2.5); two words: q = log 2
    r = labeler("self-reward", length=1.0).label(pair(first="one", second="two words"))
    assert r["rating_first"] == pytest.approx(2.5, rel=1e-12)
    assert r["rating_second"] == pytest.approx(258 / 63, rel=1e-12)
    assert r["p"] == pytest.approx(0.5 + (2.5 - 258 / 63) / 10, rel=1e-12)
    prompt = labeler("self-reward").prompt_for(pair())
    assert "additive" in prompt and prompt.endswith("\n\nScore:")


# --- pairwise-tie ---------------------------------------------------------------------------


@pytest.mark.parametrize("fwd,swapped,verdict", [
    ("first", "first", "first"),     # consistent first
    ("second", "second", "second"),  # consistent second
    ("first", "second", "tie"),      # flips with the order
    ("second", "first", "tie"),
    ("tie", "first", "tie"),         # a tie in one order
    ("second", "tie", "tie"),
    ("tie", "tie", "tie"),
])
def test_conservative_rule(fwd, swapped, verdict):
    assert conservative_verdict(fwd, swapped) == verdict


def test_order_verdict_maps_the_swapped_order_back():
    assert order_verdict([0.6, 0.3, 0.1], "fwd") == "first"
    assert order_verdict([0.6, 0.3, 0.1], "swapped") == "second"
    assert order_verdict([0.1, 0.3, 0.6], "swapped") == "tie"
    assert order_verdict([0.4, 0.4, 0.2], "fwd") == "tie"  # a shared maximum


TOKENS = {"1": (0.0, NEG, NEG), "2": (NEG, 0.0, NEG), "3": (NEG, NEG, 0.0)}


@pytest.mark.parametrize("fwd,swapped,verdict,p", [
    ("1", "2", "first", 1.0),    # first shown first wins, then first shown second wins
    ("2", "1", "second", 0.0),
    ("1", "1", "tie", 0.5),      # the first position wins in both orders
    ("3", "2", "tie", 0.75),     # a tie, then the first
    ("3", "3", "tie", 0.5),
])
def test_tie_judge_on_hand_made_verdicts(fwd, swapped, verdict, p):
    stub = Stub(lambda probe: TOKENS[fwd if probe.responses == (A, B) else swapped])
    r = labeler("pairwise-tie", stub).label(pair())
    assert stub.asked == [["1", "2", "3"]]
    assert (r["verdict"], r["p"]) == (verdict, p)
    assert label_problem(r) is None


def test_tie_judge_soft_p_is_first_plus_half_tie_averaged_over_orders():
    probs = {(A, B): (0.5, 0.25, 0.25), (B, A): (0.125, 0.5, 0.375)}
    stub = Stub(lambda probe: [math.log(q) for q in probs[probe.responses]])
    r = labeler("pairwise-tie", stub).label(pair())
    # fwd: P(first) + P(tie)/2 = 0.5 + 0.125; swapped, mapped back: 0.5 + 0.1875
    assert r["p_fwd"] == pytest.approx(0.625) and r["p_swapped"] == pytest.approx(0.3125)
    assert r["p"] == pytest.approx((0.625 + 0.6875) / 2)
    assert (r["p_tie_fwd"], r["p_tie_swapped"]) == pytest.approx((0.25, 0.375))
    assert (r["verdict_fwd"], r["verdict_swapped"], r["verdict"]) == ("first", "first", "first")


def test_tie_judge_on_the_fake():
    # fake: log-softmax of (x / 2, -x / 2, tie), x the pairwise logit (here length)
    x = math.log(3 / 6)  # words 3 vs 6
    r = labeler("pairwise-tie", length=1.0).label(pair())
    z = math.exp(x / 2) + math.exp(-x / 2) + 1
    assert r["p_fwd"] == pytest.approx((math.exp(x / 2) + 0.5) / z, rel=1e-12)
    assert r["verdict"] == "second"
    assert labeler("pairwise-tie", length=1.0, tie=5.0).label(pair())["verdict"] == "tie"
    # the tie knob is part of the fake's identity only where set
    assert FakeBackend(tie=0.0).identity == FakeBackend().identity != FakeBackend(tie=1).identity


def test_verdict_agreement_with_and_without_ties():
    made = [("first", 1.0), ("second", 0.0), ("tie", 0.5),    # agree
            ("tie", 1.0), ("first", 0.5), ("first", 0.0)]     # disagree
    records = [{"verdict": v, "human": h} for v, h in made]
    # no verdict: the conservative rule on the orders; fwd picks first, swapped picks the
    # response shown first (the stored second): the pick follows the position -> tie
    records.append({"human": 1.0, "p_fwd": 0.9, "p_swapped": 0.8})
    m = metrics.verdict_agreement(records)
    assert (m["agreement_with_tie"], m["n_agreement_with_tie"]) == (3 / 7, 7)
    # without ties: (first, 1.0), (second, 0.0), (first, 0.0)
    assert (m["agreement_without_tie"], m["n_agreement_without_tie"]) == (2 / 3, 3)
    assert (m["judge_tie_rate"], m["human_tie_rate"]) == (3 / 7, 2 / 7)


@pytest.mark.parametrize(("p_fwd", "p_swapped", "verdict"), [
    (0.9, 0.2, "first"), (0.1, 0.7, "second"),   # both orders pick the same response
    (0.9, 0.8, "tie"), (0.2, 0.3, "tie"),        # the pick follows the position
    (0.5, 0.2, "tie"),                           # one order undecided
    (0.7, 0.3, "first"),                         # a rating judge: p_swapped = 1 - p
])
def test_record_verdict_is_the_conservative_rule_on_the_two_orders(p_fwd, p_swapped, verdict):
    assert metrics.record_verdict({"p_fwd": p_fwd, "p_swapped": p_swapped}) == verdict


def test_metrics_report_verdict_agreement_for_verdicts_or_human_ties():
    decided = [pair(A, B, human=0.0, key="1"), pair(B, A, human=1.0, key="2")]
    tied = [*decided, pair(A, C, human=0.5, key="3")]
    tie = metrics.compute(list(labeler("pairwise-tie", length=1.0).label_many(tied)))
    assert tie["n_agreement_with_tie"] == 3 and "verdict agreement" in metrics.format_table(tie)
    plain = metrics.compute(list(labeler("pairwise", length=1.0).label_many(decided)))
    assert "agreement_with_tie" not in plain
    with_ties = metrics.compute(list(labeler("pairwise", length=1.0).label_many(tied)))
    assert with_ties["n_agreement_with_tie"] == 3 and with_ties["human_tie_rate"] == 1 / 3
    # a human tie is half agreement for any preference
    assert metrics.agreement(np.array([0.9, 0.1]), np.array([0.5, 0.5])).tolist() == [0.5, 0.5]


# --- a run folder ---------------------------------------------------------------------------


@pytest.mark.parametrize("judge", ["rating", "pairwise-tie", "self-reward"])
def test_run_folder_with_a_judge_resumes(tmp_path, judge):
    rows = [tldr_row(i, choice=i % 2, confidence=[1, 3, 7, 9][i % 4]) for i in range(6)]
    data = write_rows(tmp_path / "c.json", rows)
    config = RunConfig(data=DataConfig(path=str(data), confidence="all", split="all"),
                       prompt=PromptConfig(judge=judge),
                       backend=BackendConfig(backend="fake", fake={"length": 1.0}))
    out = tmp_path / "run"
    first = run_label(config, out, progress=False)
    assert json.loads((out / "config.json").read_text())["prompt"]["judge"] == judge
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["prompt"]["judge"] == judge
    assert set(run["templates"]) == set(template_digests(config.prompt))
    records = read_records(out / "labels.jsonl")
    assert len(records) == 6 and all(label_problem(r) is None for r in records)
    again = run_label(config, out, backend=FakeBackend(length=1.0), progress=False)
    assert again["alignment"] == first["alignment"]
    other = dataclasses.replace(config, prompt=PromptConfig())
    with pytest.raises(Exception, match="prompt.judge"):
        run_label(other, out, progress=False)


# --- principles -------------------------------------------------------------------------------

HH_TEXT = "Human: How do I pick a lock?"


def hh_pair(subset: str, first="I can't help with that.", second="Use a tension wrench.",
            key="h1") -> Pair:
    return Pair(key, "hh1", HH_TEXT, "", "", first, second, 1.0, None, "", task="dialogue",
                subset=subset)


class PrincipleStub:
    """A backend (reading prompts, not probes) that answers P("1") = PROBS[principle index]
    when the pair's first response is shown first, and 1 - that when it is shown second."""

    identity = "stub:principles"

    def __init__(self, principles, probs, first):
        self.principles, self.probs, self.first = principles, probs, first
        self.prompts = []

    def format(self, user, assistant):
        return f"{user}\n\n{assistant}"

    def score(self, prompts, candidates):
        self.prompts += prompts
        out = []
        for prompt in prompts:
            (i,) = [i for i, p in enumerate(self.principles) if p in prompt]
            shown_first = f"Response 1: {self.first}" in prompt
            q = self.probs[i] if shown_first else 1 - self.probs[i]
            out.append(Score((math.log(q), math.log(1 - q)), 7))
        return out


def hh_principles():
    from lab.judges.principles import read_principles
    from lab.prompts import PROMPTS_DIR

    return read_principles(PROMPTS_DIR / "hh" / "principles.yaml")


def test_principles_judge_picks_one_principle_of_the_subsets_list_by_a_hash_of_the_pair():
    import hashlib

    from lab.pair import pair_id

    table = hh_principles()
    for subset, key in [("harmless-base", "harmless"), ("helpful-online", "helpful"),
                        ("", "default")]:
        p = hh_pair(subset)
        wanted = int(hashlib.sha256(f"principle:{pair_id(p)}".encode()).hexdigest()[:8],
                     16) % len(table[key])
        stub = PrincipleStub(table[key], [0.8] * len(table[key]), p.first)
        record = labeler("principles", backend=stub).label(p)
        assert (record["principle_set"], record["principles"]) == (key, [wanted])
        assert len(stub.prompts) == 2 and all(table[key][wanted] in x for x in stub.prompts)
        # P("1") = 0.8 with the first shown first, 0.2 with it shown second: p = 0.8
        assert record["p_fwd"] == pytest.approx(0.8) and record["p_swapped"] == pytest.approx(0.2)
        assert record["p"] == pytest.approx(0.8)
        assert label_problem(record) is None


def test_principles_all_averages_every_principle_in_both_orders():
    table = hh_principles()
    probs = [0.9, 0.6, 0.3, 0.5]
    p = hh_pair("harmless-base")
    stub = PrincipleStub(table["harmless"], probs, p.first)
    record = labeler("principles-all", backend=stub).label(p)
    assert len(stub.prompts) == 8  # 4 principles x 2 orders
    assert record["principles"] == [0, 1, 2, 3]
    assert record["p_by_principle"] == pytest.approx(probs)
    assert record["p"] == pytest.approx(sum(probs) / 4)  # 0.575
    assert record["p_fwd"] == pytest.approx(0.575) and record["p_swapped"] == pytest.approx(0.425)


def test_a_pair_judged_twice_gets_the_same_principle_and_one_computation():
    table = hh_principles()
    stub = PrincipleStub(table["helpful"], [0.7] * 4, "I can't help with that.")
    lab = labeler("principles", backend=stub, cache=LabelCache())
    a, b = hh_pair("helpful-base", key="h1"), hh_pair("helpful-base", key="h1~2")
    first, second = list(lab.label_many([a, b]))
    assert first["principles"] == second["principles"] and len(stub.prompts) == 2
    assert second["cache_hit"] and first["p"] == second["p"]


@pytest.mark.parametrize(("text", "message"), [
    ("- just a list\n", "expected a mapping of keys to lists of principles"),
    ("default: []\n", "'default' must be a non-empty list of non-empty strings"),
    ("default: [ok, '']\n", "'default' must be a non-empty list of non-empty strings"),
    ("default: [a\n", "line 2: not valid YAML"),
])
def test_a_bad_principles_file_is_one_line_naming_it(tmp_path, text, message):
    from lab.errors import PromptError
    from lab.judges.principles import FIX, read_principles

    path = tmp_path / "principles.yaml"
    path.write_text(text)
    with pytest.raises(PromptError) as err:
        read_principles(path)
    assert str(err.value).startswith(f"{path}") and message in str(err.value)
    assert str(err.value).endswith(FIX) and "\n" not in str(err.value)


def test_every_judge_renders_every_family_on_the_fake():
    pairs = {"summarize": pair(),
             "dialogue": hh_pair("harmless-base"),
             "instruction": dataclasses.replace(pair(), task="instruction",
                                                text="Write a haiku about cats.")}
    for name, judge in JUDGES.items():
        if judge.needs_reference:
            continue
        for family, p in pairs.items():
            record = labeler(name, length=1.0).label(p)
            assert label_problem(record) is None, (name, family)
            # the family's own template: an HH prompt shows the dialogue, never "Summary"
            prompt = labeler(name, length=1.0).prompt_for(p)
            assert p.text in prompt
            assert ("Summary" in prompt) == (family == "summarize"), (name, family)


def test_non_tldr_families_refuse_the_tldr_only_prompt_settings():
    from lab.judges.pairwise import PairwiseJudge

    with pytest.raises(ConfigError, match="^config: the pairwise judge on dialogue pairs shows "
                                          "no few-shot exemplars; set prompt.shots to 0 "
                                          r"\(only TL;DR prompts have them\)$"):
        PairwiseJudge.check_prompt(PromptConfig(shots=2), "config", "dialogue")
    PairwiseJudge.check_prompt(PromptConfig(shots=2), "config", "summarize")  # fine there


# --- reference ------------------------------------------------------------------------------

REF = "The cat ate the homework, and the teacher doubted it."


def with_ref(task="summarize", **kw) -> Pair:
    return dataclasses.replace(pair(**kw), task=task, reference=REF)


@pytest.mark.parametrize("task,shown,ending", [
    ("summarize", f"Text - {TEXT}\nReference summary - {REF}\nSummary 1 - {B}\n"
                  f"Summary 2 - {A}\n", "\n\nPreferred Summary="),
    ("dialogue", f"Conversation:\n{TEXT}\n\nReference reply: {REF}\n\nResponse 1: {B}\n\n"
                 f"Response 2: {A}\n", "\n\nPreferred Response="),
    ("instruction", f"Instruction:\n{TEXT}\n\nReference answer: {REF}\n\nOutput 1: {B}\n\n"
                    f"Output 2: {A}\n", "\n\nPreferred Output="),
])
def test_reference_prompts_show_the_reference_and_both_responses(task, shown, ending):
    judge = labeler("reference").judge
    swapped = judge.prompt_for(with_ref(task), swapped=True)
    assert shown in swapped and swapped.endswith(ending)
    forward = judge.prompt_for(with_ref(task))
    assert forward.index(A) < forward.index(B) and REF in forward
    (unit,) = judge.units(with_ref(task))
    assert unit.heads == (forward, swapped)
    assert [p.responses for p in unit.probes] == [(A, B), (B, A)]


def test_reference_p_is_both_orders_of_1_and_2_on_hand_set_and_fake_scores():
    probs = {(A, B): (0.8, 0.2), (B, A): (0.3, 0.7)}
    stub = Stub(lambda probe: [math.log(q) for q in probs[probe.responses]])
    r = labeler("reference", stub).label(with_ref())
    assert stub.asked == [["1", "2"]]
    assert (r["p_fwd"], r["p_swapped"]) == pytest.approx((0.8, 0.3), rel=1e-12)
    assert r["p"] == pytest.approx((0.8 + 1 - 0.3) / 2, rel=1e-12)
    assert label_problem(r) is None and r["rationales"] == {}
    # the fake, length 1: logit log(3 / 6) forward, log(6 / 3) swapped -> P('1') 1/3, 2/3
    r = labeler("reference", length=1.0).label(with_ref())
    assert (r["p_fwd"], r["p_swapped"]) == pytest.approx((1 / 3, 2 / 3), rel=1e-12)
    assert r["p"] == pytest.approx(1 / 3, rel=1e-12)
    # a purely position-biased fake: exactly 0.5
    assert labeler("reference", position=3.0).label(with_ref())["p"] == 0.5


def test_reference_cache_key_has_the_judge_prompts_and_reference():
    keys = {labeler("reference", length=1.0).judge.units(with_ref())[0].key,
            labeler("reference", length=1.0).judge.units(
                dataclasses.replace(with_ref(), reference="Another reference."))[0].key,
            labeler("reference", length=2.0).judge.units(with_ref())[0].key,
            labeler("pairwise", length=1.0).judge.units(with_ref())[0].key}
    assert len(keys) == 4


def test_reference_judge_refuses_a_pair_without_reference():
    with pytest.raises(DataError) as err:
        labeler("reference").judge.units(pair())
    assert str(err.value) == ("the pair at k1 has no reference answer, which the reference "
                              "judge shows; label pairs with references (rlaif label keeps only "
                              "those) or use another --judge")


def ref_row(i: int, post: int, policies=("a", "b"), texts=None) -> dict:
    """A TL;DR row of post ``post`` whose summaries have these policies (and texts)."""
    row = tldr_row(post)
    texts = texts or [f"summary {i} by {p}" for p in policies]
    row["summaries"] = [{"text": f" {t}", "policy": p, "note": None}
                        for p, t in zip(policies, texts)]
    return row


def test_reference_run_skips_and_counts_pairs_without_reference(tmp_path, capsys):
    rows = [ref_row(0, 1, ("ref", "a"), ["the post's reference summary", "a's summary"]),
            ref_row(1, 1, ("a", "b")),        # post 1 has a reference: labeled with it
            ref_row(2, 2, ("a", "b"))]        # post 2 has none
    data = write_rows(tmp_path / "c.json", rows)
    config = RunConfig(data=DataConfig(path=str(data), confidence="all", split="all"),
                       prompt=PromptConfig(judge="reference"),
                       backend=BackendConfig(backend="fake", fake={"length": 1.0}))
    m = run_label(config, tmp_path / "run", progress=False)
    assert capsys.readouterr().err.splitlines()[0] == (
        f"{data}: 2 of 3 pairs have no reference answer; the reference judge skips them "
        "(counted in skipped_rows)")
    (record,) = read_records(tmp_path / "run" / "labels.jsonl")
    assert record["key"] == load_pairs(str(data))[0][1].key and m["skipped_rows"] == 2
    # "summary 1 by a" vs "summary 1 by b": equal lengths -> p = 0.5 on the length fake
    assert (record["p_fwd"], record["p_swapped"], record["p"]) == (0.5, 0.5, 0.5)
    # the sample of n is drawn from the pairs with a reference
    for seed in range(4):
        sampled = dataclasses.replace(config, data=dataclasses.replace(config.data, n=1,
                                                                       seed=seed))
        assert run_label(sampled, tmp_path / f"n{seed}", progress=False)["skipped_rows"] == 2


def test_reference_run_on_a_slice_without_any_reference_is_one_line(tmp_path):
    data = write_rows(tmp_path / "c.json", [ref_row(0, 1), ref_row(1, 2)])
    config = RunConfig(data=DataConfig(path=str(data), confidence="all", split="all"),
                       prompt=PromptConfig(judge="reference"),
                       backend=BackendConfig(backend="fake"))
    with pytest.raises(DataError) as err:
        run_label(config, tmp_path / "run", progress=False)
    assert str(err.value) == (
        f"{data}: no pair in this slice has a reference answer, which the reference judge "
        "asks for; use data with references (MT-Bench judgments with FastChat's question.jsonl "
        "beside them, TL;DR comparisons with 'ref' summaries) or another --judge")
    assert not (tmp_path / "run").exists()


def test_with_reference_compares_any_judge_on_the_pairs_that_have_one(tmp_path, capsys):
    rows = [ref_row(0, 1, ("ref", "a"), ["the post's reference summary", "a's summary"]),
            ref_row(1, 1, ("a", "b")), ref_row(2, 2, ("a", "b"))]
    data = write_rows(tmp_path / "c.json", rows)
    config = RunConfig(data=DataConfig(path=str(data), confidence="all", split="all",
                                       with_reference=True),
                       backend=BackendConfig(backend="fake", fake={"length": 1.0}))
    m = run_label(config, tmp_path / "run", progress=False)
    assert capsys.readouterr().err.splitlines()[0] == (
        f"{data}: 2 of 3 pairs have no reference answer; data.with_reference skips them "
        "(counted in skipped_rows)")
    (record,) = read_records(tmp_path / "run" / "labels.jsonl")
    assert record["key"] == load_pairs(str(data))[0][1].key and m["skipped_rows"] == 2
    # a pairwise run without the flag keeps its identity (the flag is a later default)
    assert "with_reference" not in RunConfig().identity_dict()["data"]
