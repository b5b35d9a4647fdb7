"""Typed parameters from params.toml: one table per stage, read once, unknown keys rejected by name."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from uos.errors import ConfigError

DEFAULT_PARAMS = Path("params.toml")
T = TypeVar("T")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such params file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], where)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, not {value!r}")
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        items = [_coerce(v, item, where) for v in value]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, not {value!r}")
        return from_table(annotation, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, not {value!r}")
        item = typing.get_args(annotation)[1]
        return {key: _coerce(v, item, f"{where}.{key}") for key, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, not {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, not {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, not {value!r}")
        return value
    return value


def from_table(cls: type[T], table: dict[str, Any], where: str) -> T:
    """Build dataclass `cls` from a TOML table, rejecting unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(fields))
    for key in unknown:  # a key the project had once: what became of it
        if key in (retired := getattr(cls, "RETIRED", {})):
            raise ConfigError(f"{where}: {key} is no longer a setting: {retired[key]}")
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (known: {', '.join(fields)})"
        )
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in table.items()}
    for name, value in values.items():
        default = fields[name].default_factory
        if isinstance(value, dict) and default is not dataclasses.MISSING:
            values[name] = {**default(), **value}  # a table given in part keeps the other defaults
    missing = [
        f.name
        for f in fields.values()
        if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return cls(**values)


def load_params(cls: type[T], section: str, path: Path | None = None) -> T:
    """The `[section]` table of params.toml as `cls`; defaults when the file or table is absent.

    `path` None means ./params.toml if it exists.
    """
    if path is None:
        if not DEFAULT_PARAMS.exists():
            return cls()
        path = DEFAULT_PARAMS
    data = read_toml(path)
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{section}] must be a table")
    return from_table(cls, table, f"{path} [{section}]")
