"""Stage 3 (test double): a deterministic fake labeler with known biases.

It reads the *item* a prompt shows, not the prompt's text: the labeler hands it each prompt's
:class:`lab.judges.Probe` (the text, the response(s) in the order shown, a decoded rationale;
``reads_probes = True``). Only the noise (a hash of the prompt), the ``keyword`` gate (a string
in the prompt) and rationale decoding (``generate``) look at the prompt text; called without
probes, ``score`` falls back to parsing the last ``Text - / Summary 1 - / Summary 2 -`` sample
of a pairwise prompt.

**Comparison** (two responses, tokens ``1`` / ``2``): it prefers the response shown first
with logit

    position + length * (log words_1 - log words_2) + skill * (overlap_1 - overlap_2)
    + noise * z(prompt) + rationale * r

where ``overlap`` is the share of a response's words that occur in the text (a crude but
content-based notion of quality), ``z`` is a standard normal drawn from a hash of the prompt,
and ``r`` is +1/-1 when a decoded rationale names Summary 1/2. ``skill`` only counts when
``keyword`` is None or occurs in the prompt, so an optimiser can be shown to find it. With
only ``position`` set the fake is purely position-biased, and averaging both orders must give
p = 0.5 exactly: that is what the debiasing tests check.

**Comparison with a tie** (tokens ``1`` / ``2`` / ``3``): with x the logit above, the
log-probabilities are the log-softmax of (x / 2, -x / 2, ``tie``).

**Rating** (one response, digit tokens such as ``1`` ... ``9``): with the response's quality

    q = length * log words + skill * overlap + noise * z(prompt)

(``skill`` gated by ``keyword`` as above), the log-probability of the scale token with value v
is the log-softmax of q * v over the scale: q = 0 is uniform (the scale's mean as expected
rating), and a larger q tilts the rating up.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import time

from lab.backends import Generation, Score

_WORD = re.compile(r"[a-z0-9']+")


class FakeFault(RuntimeError):
    """The failure ``fail_at_call`` injects (a stand-in for a crash or a kill)."""


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _log_softmax(xs: list[float]) -> tuple[float, ...]:
    m = max(xs)
    log_total = m + math.log(sum(math.exp(x - m) for x in xs))
    return tuple(x - log_total for x in xs)


def parse_sample(prompt: str) -> tuple[str, str, str]:
    """The (text, summary 1, summary 2) of the last sample in a prompt."""
    i1 = prompt.rfind("\nSummary 1 - ")
    i2 = prompt.find("\nSummary 2 - ", i1)
    it = prompt.rfind("Text - ", 0, i1)
    if min(i1, i2, it) < 0:
        raise ValueError("fake backend: prompt has no 'Text - / Summary 1 - / Summary 2 -' sample")
    end = prompt.find("\n", i2 + 1)
    return (
        prompt[it + 7 : i1],
        prompt[i1 + 13 : i2],
        prompt[i2 + 13 : end if end >= 0 else None],
    )


class FakeBackend:
    """Deterministic, offline backend whose preference is a known formula."""

    def __init__(
        self,
        position: float = 0.0,
        length: float = 0.0,
        skill: float = 0.0,
        noise: float = 0.0,
        rationale: float = 0.0,
        keyword: str | None = None,
        tie: float = 0.0,
        delay: float = 0.0,
        max_context: int | None = None,
        fail_at_call: int | None = None,
    ) -> None:
        """Set the knobs.

        Args:
            position: logit bonus for whichever summary is shown first.
            length: weight on the log word-count ratio (positive prefers longer).
            skill: weight on the difference in word overlap with the text.
            noise: scale of deterministic per-prompt noise.
            rationale: weight of a decoded rationale that names a summary.
            keyword: if set, ``skill`` only counts when this string is in the prompt.
            tie: logit of the token ``3`` (about equally good) in a comparison with a tie.
            delay: seconds to sleep per scored prompt (to test slow runs and kills).
            max_context: longest prompt in whitespace words (None: no limit), to test the
                refusal of prompts longer than a model's context.
            fail_at_call: raise :class:`FakeFault` on this backend call (1-based, ``score``
                and ``generate`` calls counted together), to test a run that dies part way.
                Not part of :attr:`identity`: the labels it does give are the normal ones.
        """
        self.knobs = dict(
            position=position, length=length, skill=skill, noise=noise,
            rationale=rationale, keyword=keyword,
        )
        if tie:  # only where set: the identity of every fake without it is unchanged
            self.knobs["tie"] = tie
        self.delay = delay
        self.max_context = max_context
        self.fail_at_call = fail_at_call
        self.calls = {"score": 0, "generate": 0}
        self.backend_calls = 0  # score and generate calls, each counted once

    per_prompt_seeds = True
    reads_probes = True
    """``score`` takes each prompt's :class:`lab.judges.Probe` (the item, as data)."""
    """``generate`` takes one seed per prompt (see :class:`lab.backends.Backend`)."""

    def _count_call(self) -> None:
        self.backend_calls += 1
        if self.backend_calls == self.fail_at_call:
            raise FakeFault(f"fake backend: injected fault at call {self.backend_calls}")

    @property
    def identity(self) -> str:
        digest = hashlib.sha256(repr(sorted(self.knobs.items())).encode()).hexdigest()[:12]
        return f"fake:{digest}"

    def format(self, user: str, assistant: str) -> str:
        return f"{user}\n\n{assistant}"

    def count_tokens(self, prompt: str) -> int:
        """The fake's tokens are whitespace words (as in its ``prompt_tokens``)."""
        return len(prompt.split())

    def _skill_counts(self, prompt: str) -> bool:
        k = self.knobs
        return bool(k["skill"]) and (k["keyword"] is None or k["keyword"] in prompt)

    def _noise(self, prompt: str) -> float:
        seed = int(hashlib.sha256(prompt.encode()).hexdigest()[:16], 16)
        return self.knobs["noise"] * random.Random(seed).gauss(0.0, 1.0)

    def logit(self, prompt: str, probe=None) -> float:
        """Logit of preferring the response shown first (Summary 1) for this prompt, from its
        probe (else from the prompt's last sample)."""
        k = self.knobs
        if probe is None:
            text, s1, s2 = parse_sample(prompt)
        else:
            text, (s1, s2) = probe.text, probe.responses
        w1, w2 = _words(s1), _words(s2)
        x = k["position"]
        x += k["length"] * (math.log(max(len(w1), 1)) - math.log(max(len(w2), 1)))
        if self._skill_counts(prompt):
            vocab = set(_words(text))
            ov = [sum(w in vocab for w in ws) / max(len(ws), 1) for ws in (w1, w2)]
            x += k["skill"] * (ov[0] - ov[1])
        if k["noise"]:
            x += self._noise(prompt)
        if k["rationale"]:
            if probe is None:
                said = prompt[prompt.rfind("Rationale:"):] if "Rationale:" in prompt else ""
            else:
                said = probe.rationale or ""
            x += k["rationale"] * (("Summary 1 is" in said) - ("Summary 2 is" in said))
        return x

    def quality(self, prompt: str, probe) -> float:
        """A rated response's quality q (the rating's tilt), from its probe."""
        k = self.knobs
        (response,) = probe.responses
        words = _words(response)
        q = k["length"] * math.log(max(len(words), 1))
        if self._skill_counts(prompt):
            vocab = set(_words(probe.text))
            q += k["skill"] * sum(w in vocab for w in words) / max(len(words), 1)
        if k["noise"]:
            q += self._noise(prompt)
        return q

    def _logprobs(self, prompt: str, candidates: list[str], probe) -> tuple[float, ...]:
        if probe is None or len(probe.responses) == 2:
            x = self.logit(prompt, probe)
            if candidates == ["1", "2"]:
                return (_log_sigmoid(x), _log_sigmoid(-x))
            if candidates == ["1", "2", "3"]:
                return _log_softmax([x / 2, -x / 2, self.knobs.get("tie", 0.0)])
        elif len(probe.responses) == 1 and all(c.isdigit() for c in candidates):
            q = self.quality(prompt, probe)
            return _log_softmax([q * int(c) for c in candidates])
        shown = "no probe" if probe is None else f"{len(probe.responses)} responses"
        raise ValueError(f"fake backend: cannot score {candidates} for a prompt with {shown}")

    def score(self, prompts: list[str], candidates: list[str], probes=None) -> list[Score]:
        """Log-probs of the candidates after each prompt, from its probe where given."""
        candidates = list(candidates)
        if probes is None and candidates != ["1", "2"]:
            raise ValueError(f"fake backend scores only ['1', '2'] without probes, not "
                             f"{candidates}")
        self._count_call()
        self.calls["score"] += len(prompts)
        time.sleep(self.delay * len(prompts))
        probes = probes if probes is not None else [None] * len(prompts)
        return [Score(self._logprobs(prompt, candidates, probe), len(prompt.split()))
                for prompt, probe in zip(prompts, probes)]

    def generate(
        self, prompts: list[str], n: int, max_tokens: int, temperature: float,
        seed: int | list[int],
    ) -> list[list[Generation]]:
        self._count_call()
        seeds = seed if isinstance(seed, list) else [seed] * len(prompts)
        return [self._generate(p, n, max_tokens, temperature, s) for p, s in zip(prompts, seeds)]

    def _generate(
        self, prompt: str, n: int, max_tokens: int, temperature: float, seed: int
    ) -> list[Generation]:
        self.calls["generate"] += n
        p1 = 1.0 / (1.0 + math.exp(-self.logit(prompt)))
        rng = random.Random(f"{seed}:{prompt}")
        out = []
        for _ in range(n):
            if temperature <= 0:
                pick = 1 if p1 >= 0.5 else 2
            else:
                pick = 1 if rng.random() < p1 ** (1 / temperature) / (
                    p1 ** (1 / temperature) + (1 - p1) ** (1 / temperature)
                ) else 2
            text = f" Summary {pick} is more accurate and covers the post better."
            words = text.split()[:max_tokens]
            out.append(Generation(" " + " ".join(words), len(words)))
        return out
