"""The resolved configuration of a labeling run: one frozen dataclass per stage.

``config.json`` in every run folder is :meth:`RunConfig.to_dict`; ``rlaif label --config``
reads it back (JSON or YAML) with :meth:`RunConfig.load`. Every value is checked on load
(:mod:`lab.typed`: its type strictly, and the ranges and choices in :data:`LIMITS`); unknown
keys are an error naming the key and the file, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from annotated_types import Ge, Gt

from lab.backends import BackendConfig
from lab.data import DataConfig
from lab.datasets import LOADERS
from lab.errors import ConfigError  # noqa: F401  (re-exported)
from lab.judges import JUDGES, judge_class
from lab.label import DecodeConfig
from lab.prompts import PromptConfig
from lab.typed import build, load_mapping  # noqa: F401  (build re-exported)

# Ranges and choices a type alone cannot say, per section (see lab.typed.build).
LIMITS = {
    DataConfig: {
        "confidence": Literal["high", "all"],
        "split": Literal["pool", "dev", "test", "eval", "train", "all"],
        "n": [Ge(1)],
        "task": Literal[tuple(LOADERS)] | None,
    },
    PromptConfig: {"shots": [Ge(0)], "max_exemplar_chars": [Ge(1)],
                   "judge": Literal[tuple(JUDGES)]},
    BackendConfig: {
        "backend": Literal["transformers", "vllm", "openai", "fake"],
        "dtype": Literal["auto", "bf16", "fp16", "fp32"],
        "chat": Literal["auto", "on", "off"],
        "endpoint": Literal["completions", "chat"],
        "tensor_parallel_size": [Ge(1)],
        "concurrency": [Ge(1)],
        "score_dtype": Literal["fp32", "model"],
        "batch_pairs": [Ge(1)],
        "timeout": [Gt(0)],
        "max_retries": [Ge(0)],
        "retry_budget": [Gt(0)],
        "top_logprobs": [Ge(2)],
    },
    DecodeConfig: {"samples": [Ge(1)], "temperature": [Ge(0)],
                   "max_rationale_tokens": [Ge(1)]},
}

LATER_DEFAULTS = {("prompt", "judge"): "pairwise", ("data", "task"): None,
                  ("data", "subset"): None, ("data", "with_reference"): False}
"""Settings added after run identities were first written: left out of
:meth:`RunConfig.identity_dict` and :meth:`RunConfig.to_dict` while they hold these defaults,
so that every run folder and sweep trial labeled before them keeps its identity."""


def build_section(kind: type, raw: dict, source: str, prefix: str = ""):
    """Build one section of a run config with its :data:`LIMITS`."""
    return build(kind, raw, source, LIMITS.get(kind), prefix)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a labeling run's labels."""

    data: DataConfig = field(default_factory=DataConfig)
    """Stage 1: the pairs."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """Stage 2: the prompt."""
    backend: BackendConfig = field(default_factory=BackendConfig)
    """Stage 3: the model."""
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    """Stage 4: rationale decoding."""

    def to_dict(self) -> dict:
        """Plain nested dict (what config.json holds); a setting of :data:`LATER_DEFAULTS` at
        its default is left out (config.json of a pairwise run reads as it always did)."""
        raw = dataclasses.asdict(self)
        for (section, key), default in LATER_DEFAULTS.items():
            if raw[section].get(key, _NONE) == default:
                del raw[section][key]
        return raw

    def identity_dict(self) -> dict:
        """:meth:`to_dict` without the fields that say how labels are computed rather than
        what they are (``compare=False``: timeouts, concurrency, batch size), so a run
        resumed with a longer ``--timeout`` is the same run."""
        return {
            section.name: {f.name: getattr(part, f.name)
                           for f in dataclasses.fields(part) if f.compare
                           and LATER_DEFAULTS.get((section.name, f.name), _NONE)
                           != getattr(part, f.name)}
            for section in dataclasses.fields(self)
            if (part := getattr(self, section.name)) is not None
        }

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config") -> RunConfig:
        """Build from a nested dict; unknown sections or keys raise :class:`ConfigError`."""
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(sections)
        if unknown:
            raise ConfigError(
                f"{source}: unknown section '{sorted(unknown)[0]}'; known: {', '.join(sections)}"
            )
        kinds = {"data": DataConfig, "prompt": PromptConfig, "backend": BackendConfig,
                 "decode": DecodeConfig}
        parts = {name: build_section(kinds[name], _section(raw, name), source, name)
                 for name in sections}
        config = cls(**parts)
        config.validate(source)
        return config

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a JSON or YAML config file."""
        raw = load_mapping(path, "config")
        raw.pop("export", None)  # provenance written by `rlaif export`, not a setting
        return cls.from_dict(raw, str(path))

    def validate(self, source: str = "config") -> None:
        """Check what no single value can (each value was checked when it was built)."""
        if self.decode.samples > 1 and self.decode.temperature <= 0:
            raise ConfigError(
                f"{source}: decode.samples > 1 needs decode.temperature > 0 "
                "(greedy rationales would all be the same)"
            )
        if self.decode.samples > 1 and not self.prompt.cot:
            raise ConfigError(f"{source}: self-consistency (decode.samples > 1) needs prompt.cot")
        judge_class(self.prompt.judge).check_prompt(self.prompt, source)


_NONE = object()


def _section(raw: dict, name: str) -> dict:
    value = raw.get(name)
    return {} if value is None else value
