"""Stage 3 (for prompt optimisation): DSPy engines, how DSPy talks to the lab's models.

DSPy 3.4 accepts a custom engine object (``dspy.LM("local/NAME", engine=obj)``) whose
``complete(request)`` returns a ``dspy.lm15.Response``. :class:`LocalEngine` answers with a
lab backend's ``generate`` (a packaged local model, no network); :class:`FakeProposer` is the
deterministic one the tests use; :func:`proposer_lm` builds the proposer an experiment names,
including any OpenAI-compatible server through litellm.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from lab.config import ConfigError

FAKE_WORDS = ("brevity", "fluency", "faithfulness", "coverage", "style", "detail", "tone",
              "clarity")


@dataclass(frozen=True)
class ProposerConfig:
    """The model that writes candidate preambles."""

    backend: str = "transformers"
    """``transformers`` (a packaged local model), ``openai`` (any compatible server), ``fake``."""
    model: str = "qwen2.5-coder-1.5b"
    """Catalog name for ``transformers``; the served model name for ``openai``."""
    base_url: str | None = None
    """``openai`` only: the server, e.g. http://127.0.0.1:8000/v1."""
    api_key_env: str = "OPENAI_API_KEY"
    """``openai`` only: environment variable holding the key (may be unset for local servers)."""
    max_tokens: int = 320
    """Longest proposal, in tokens."""


class LocalEngine:
    """A DSPy engine that answers with a lab backend's ``generate`` (a local model)."""

    def __init__(self, backend, max_tokens: int) -> None:
        self.backend = backend
        self.max_tokens = max_tokens
        self.calls = 0

    def complete(self, request):
        from dspy.lm15 import Message, Response, TextPart, Usage

        system = request.system if isinstance(request.system, str) else "".join(
            p.text for p in request.system or ())
        user = "\n\n".join(m.text or "" for m in request.messages)
        prompt = self.backend.format(f"{system}\n\n{user}".strip(), "")
        cfg = request.config
        seed = int(hashlib.sha256(f"{self.calls}:{prompt}".encode()).hexdigest()[:8], 16)
        self.calls += 1
        gen = self.backend.generate([prompt], n=1, max_tokens=cfg.max_tokens or self.max_tokens,
                                    temperature=min(cfg.temperature or 0.0, 1.5), seed=seed)[0][0]
        text = repair_fields(gen.text, system)
        return Response(id=None, model="local", message=Message.assistant([TextPart(text)]),
                        finish_reason="stop",
                        usage=Usage(input_tokens=0, output_tokens=gen.tokens,
                                    total_tokens=gen.tokens))

    def stream(self, request):
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


def repair_fields(text: str, system: str) -> str:
    """Give an answer DSPy's field markers when a small model left them out.

    DSPy's chat format asks for ``[[ ## field ## ]]`` sections, which models of 0.5-1.5B
    parameters often skip. An answer with no marker is taken as the first output field; the
    other output fields get the text ``Preferred Summary=`` (COPRO's output-field prefix,
    which the lab's labeler does not use).
    """
    if "[[ ## " in text:
        return text
    listed = system.split("Your output fields are:", 1)[-1].split("\n\n", 1)[0]
    names = re.findall(r"`(\w+)`", listed)
    if not names:
        return text
    body = text.strip().strip('"')
    parts = [f"[[ ## {names[0]} ## ]]\n{body}"]
    parts += [f"[[ ## {n} ## ]]\nPreferred Summary=" for n in names[1:]]
    return "\n\n".join(parts) + "\n\n[[ ## completed ## ]]"


class FakeProposer(LocalEngine):
    """Deterministic proposer for tests: the current instruction plus 'Focus on <word>.'."""

    def __init__(self) -> None:
        super().__init__(backend=None, max_tokens=0)

    def complete(self, request):
        from dspy.lm15 import Message, Response, TextPart, Usage

        text = "\n".join(m.text or "" for m in request.messages)
        match = re.search(r"\[\[ ## basic_instruction ## \]\]\n(.*?)(\n\n|\Z)", text, re.S)
        tried = re.findall(r"Instruction #\d+: (.*)", text)  # later rounds: best attempt last
        base = match.group(1).strip() if match else tried[-1] if tried else "Rate summaries."
        base = re.sub(r" Focus on \w+\.", "", base)
        word = FAKE_WORDS[self.calls % len(FAKE_WORDS)]
        self.calls += 1
        answer = (f"[[ ## proposed_instruction ## ]]\n{base} Focus on {word}.\n\n"
                  f"[[ ## proposed_prefix_for_output_field ## ]]\nPreferred Summary:\n\n"
                  f"[[ ## completed ## ]]")
        return Response(id=None, model="fake", message=Message.assistant([TextPart(answer)]),
                        finish_reason="stop", usage=Usage(input_tokens=0, output_tokens=0,
                                                          total_tokens=0))


def proposer_lm(config: ProposerConfig, temperature: float):
    """The DSPy LM that proposes candidates."""
    import dspy

    if config.backend == "fake":
        return dspy.LM("local/fake", engine=FakeProposer(), cache=False,
                       temperature=temperature, max_tokens=config.max_tokens)
    if config.backend == "transformers":
        from lab.backends import BackendConfig, make_backend

        backend = make_backend(BackendConfig(model=config.model))
        return dspy.LM(f"local/{config.model}", engine=LocalEngine(backend, config.max_tokens),
                       temperature=temperature, max_tokens=config.max_tokens)
    if config.backend == "openai":
        if not config.base_url:
            raise ConfigError("proposer.backend openai needs proposer.base_url")
        return dspy.LM(f"openai/{config.model}", api_base=config.base_url,
                       api_key=os.environ.get(config.api_key_env, "none"),
                       temperature=temperature, max_tokens=config.max_tokens)
    raise ConfigError(f"proposer.backend must be transformers, openai or fake, "
                      f"not {config.backend!r}")


