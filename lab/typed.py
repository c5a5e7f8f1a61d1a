"""Typed configs: build a frozen config dataclass from a dict, checking every value.

Each field is checked against its annotation by pydantic in strict mode (``"no"`` is not a
boolean, ``"ten"`` not an integer, ``true`` not a number), plus optional *limits*: extra
pydantic constraints per field (``annotated_types.Ge(1)``) or a replacement type
(``Literal["high", "all"]``). Unknown keys are refused by name. Every error is one line naming
the file, the key and what was expected::

    experiments/x.yaml: prompt.cot: expected true or false, found 'no'

Also :func:`load_mapping`, the one reader of YAML and JSON config files (a syntax error is a
:class:`ConfigError` naming the file and line).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
import typing
from pathlib import Path
from typing import Annotated, Any

import pydantic

from lab.errors import ConfigError

# pydantic error type -> what the user should have written
EXPECTED = {
    "bool_type": "true or false",
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "dict_type": "a mapping",
    "list_type": "a list",
    "none_required": "null",
    "literal_error": None,  # pydantic's message lists the choices
}
BOUNDS = {"greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"),
          "less_than_equal": ("le", "<="), "less_than": ("lt", "<")}


def _wanted(e: dict) -> str:
    if e["type"] in BOUNDS:
        key, op = BOUNDS[e["type"]]
        return f"a value {op} {e['ctx'][key]}"
    return EXPECTED.get(e["type"]) or e["msg"].removeprefix("Input should be ")


@functools.cache
def _adapter(hint) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(hint)


def _hints(kind: type) -> dict[str, Any]:
    import sys

    module = sys.modules[kind.__module__]
    return typing.get_type_hints(kind, vars(module))


def describe(errors: list[dict]) -> str:
    """'expected X, found Y' for the pydantic errors of one value."""
    kinds = {e["type"] for e in errors}
    optional = "none_required" in kinds and len(kinds) > 1  # an optional field: "X (or null)"
    wanted = [_wanted(e) for e in errors if not (optional and e["type"] == "none_required")]
    text = " or ".join(dict.fromkeys(wanted)) + (" (or null)" if optional else "")
    return f"expected {text}, found {errors[0]['input']!r}"


def check_value(hint, value, where: str):
    """Validate one value strictly against a type hint; returns it (ConfigError if bad)."""
    try:
        return _adapter(hint).validate_python(value, strict=True)
    except pydantic.ValidationError as err:
        raise ConfigError(f"{where}: {describe(err.errors())}") from None


def build(kind: type, raw: dict, source: str, limits: dict | None = None, prefix: str = ""):
    """Construct a frozen config dataclass from a dict, checking keys, types and limits.

    Args:
        kind: the dataclass.
        raw: its values by field name (missing fields keep their defaults).
        source: the file (or ``command line``) for messages.
        limits: field -> a type that replaces the annotation (``Literal[...]``) or a list of
            pydantic constraints added to it (``[annotated_types.Ge(0)]``).
        prefix: section of the key in messages (``prompt`` gives ``prompt.cot``).
    """
    where = f"{source}: {prefix}" if prefix else source
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, found {type(raw).__name__}")
    names = [f.name for f in dataclasses.fields(kind)]
    unknown = set(raw) - set(names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{sorted(unknown)[0]}'; known: {', '.join(sorted(names))}"
        )
    hints, limits = _hints(kind), limits or {}
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        extra = limits.get(name)
        if isinstance(extra, list):
            if type(None) in typing.get_args(hint):  # optional: the limits apply to the value
                hint = Annotated[(_not_none(hint), *extra)] | None
            else:
                hint = Annotated[(hint, *extra)]
        elif extra is not None:
            hint = extra
        if dataclasses.is_dataclass(hint) and isinstance(value, hint):
            values[name] = value
            continue
        values[name] = check_value(hint, value, f"{source}: {prefix + '.' if prefix else ''}{name}")
    return kind(**values)


def _not_none(hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return functools.reduce(operator.or_, args)


def load_mapping(path: str | Path, what: str = "config") -> dict:
    """Read a YAML or JSON file holding a mapping; errors name the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what} file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the {what} file as UTF-8") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark else ""
            problem = getattr(err, "problem", None) or type(err).__name__
            raise ConfigError(f"{path}: not valid YAML ({problem}{line}); fix the "
                              f"{what} file") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); fix "
                              f"the {what} file") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a {what} file is a mapping of keys, found "
                          f"{type(raw).__name__}")
    return raw
