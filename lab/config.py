"""The resolved configuration of a labeling run: one frozen dataclass per stage.

``config.json`` in every run folder is :meth:`RunConfig.to_dict`; ``rlaif label --config``
reads it back (JSON or YAML) with :meth:`RunConfig.load`. Unknown keys are an error naming the
key and the file, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from lab.backends import BackendConfig
from lab.data import DataConfig
from lab.errors import ConfigError  # noqa: F401  (re-exported)
from lab.label import DecodeConfig
from lab.prompts import PromptConfig


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
        """Plain nested dict (what config.json holds)."""
        return dataclasses.asdict(self)

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
        parts = {name: build(kinds[name], raw.get(name) or {}, f"{source}: {name}")
                 for name in sections}
        config = cls(**parts)
        config.validate(source)
        return config

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a JSON or YAML config file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raw = json.loads(text)
        raw.pop("export", None)  # provenance written by `rlaif export`, not a setting
        return cls.from_dict(raw, str(path))

    def validate(self, source: str = "config") -> None:
        """Check values that a type alone cannot."""
        if self.data.confidence not in ("high", "all"):
            raise ConfigError(f"{source}: data.confidence must be high or all")
        if self.data.split not in ("pool", "dev", "test", "eval", "train", "all"):
            raise ConfigError(
                f"{source}: data.split must be pool, dev, test, eval, train or all"
            )
        if self.prompt.shots < 0:
            raise ConfigError(f"{source}: prompt.shots must be >= 0")
        if self.decode.samples < 1:
            raise ConfigError(f"{source}: decode.samples must be >= 1")
        if self.decode.samples > 1 and self.decode.temperature <= 0:
            raise ConfigError(
                f"{source}: decode.samples > 1 needs decode.temperature > 0 "
                "(greedy rationales would all be the same)"
            )
        if self.decode.samples > 1 and not self.prompt.cot:
            raise ConfigError(f"{source}: self-consistency (decode.samples > 1) needs prompt.cot")


def build(kind: type, raw: dict, source: str):
    """Construct a frozen config dataclass from a dict, refusing unknown keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping, found {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{sorted(unknown)[0]}'; known: {', '.join(sorted(names))}"
        )
    return kind(**raw)
