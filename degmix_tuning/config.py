"""Dataclass configs: the single source of truth, written as JSON next to every run, overridable from the CLI.

`ConfigBase` gives every config `to_dict`/`from_dict`/`save`/`load` and dotted overrides
(`cfg.override(["train.lr=1e-3", "model.tasks=semseg,depth"])`), coerced to each field's declared type.
Coercion refuses what would silently mean something else: a boolean for an int/float field (`true` is not a batch
size of 1) and a NaN/inf float (no float field of these configs has a use for one).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C", bound="ConfigBase")


def _coerce(value: Any, hint: Any, where: str, path: str | None = None) -> Any:
    """Convert a JSON/CLI value to the type declared by a dataclass field; `path` ("train") names a nested config
    section's fields as the user writes them ("train.lr")."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        last_err = None
        candidates = [a for a in args if a is not type(None)]
        for a in candidates:
            try:
                return _coerce(value, a, where, path)
            except (TypeError, ValueError) as exc:
                last_err = exc
        if len(candidates) == 1 and last_err is not None:  # `X | None`: X's own reason says more
            raise ValueError(f"{last_err}{' (or null)' if type(None) in args else ''}") from last_err
        raise ValueError(f"{where}: cannot convert {value!r} to {hint}") from last_err
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping for {hint.__name__}, got {value!r}")
        if hasattr(hint, "_from_dict"):
            return hint._from_dict(value, f"{path}." if path else "")
        return hint.from_dict(value) if hasattr(hint, "from_dict") else hint(**value)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if origin is tuple and args:
            if len(args) != len(value):
                raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, where) for v, a in zip(value, args))
        return origin(_coerce(v, args[0], where) for v in value) if args else origin(value)
    if origin is dict:
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if hint in (int, float, str):
        if hint is not str and isinstance(value, bool):  # int(True) == 1: a typo'd flag must not become a number
            raise ValueError(f"{where}: expected {'an integer' if hint is int else 'a number'}, got the boolean "
                             f"{str(value).lower()}")
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        try:
            converted = hint(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{where}: expected {hint.__name__}, got {value!r}") from exc
        if hint is float and not math.isfinite(converted):
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        return converted
    return value


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing or malformed file raises an error naming the file and what it should be."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON: {exc}") from exc


class ConfigBase:
    """Mixin for config dataclasses: JSON round trip and typed dotted overrides."""

    def to_dict(self) -> dict[str, Any]:
        def conv(v):
            if dataclasses.is_dataclass(v):
                return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
            if isinstance(v, (list, tuple)):
                return [conv(x) for x in v]
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, Path):
                return str(v)
            return v

        return conv(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        return cls._from_dict(data, "")

    @classmethod
    def _from_dict(cls: type[C], data: dict[str, Any], path: str) -> C:
        """`from_dict`, naming nested fields by their dotted path ("train.lr") in errors."""
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise KeyError(f"{cls.__name__} has no field(s) {sorted(unknown)}; known fields: {sorted(names)}")
        kwargs = {k: _coerce(v, hints[k], f"{path}{k}" if path else f"{cls.__name__}.{k}", f"{path}{k}")
                  for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def flat_fields(cls, data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        """A saved config (`to_dict`, or its JSON) as {"train.lr": value, ...}: nested config sections are flattened,
        free-form mapping fields (e.g. tuning_kwargs) stay whole values; keys this class does not know are kept as
        they are. Comparing two configs field by field then names exactly the fields that differ."""
        hints = typing.get_type_hints(cls)
        flat: dict[str, Any] = {}
        for key, value in data.items():
            hint = hints.get(key)
            if isinstance(value, dict) and isinstance(hint, type) and issubclass(hint, ConfigBase):
                flat.update(hint.flat_fields(value, f"{prefix}{key}."))
            else:
                flat[f"{prefix}{key}"] = value
        return flat

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        return cls.from_dict(read_json(path, "config file"))

    def override(self: C, assignments: list[str] | tuple[str, ...]) -> C:
        """Return a copy with dotted `key=value` assignments applied (`train.lr=1e-3`)."""
        data = self.to_dict()
        for item in assignments:
            if "=" not in item:
                raise ValueError(f"override {item!r} must look like section.field=value")
            key, raw = item.split("=", 1)
            node = data
            parts = key.strip().split(".")
            for p in parts[:-1]:
                if not isinstance(node, dict) or p not in node:
                    raise KeyError(f"override {item!r}: no config section {p!r}")
                node = node[p]
            if not isinstance(node, dict) or parts[-1] not in node:
                raise KeyError(f"override {item!r}: no config field {key!r}")
            try:
                node[parts[-1]] = json.loads(raw)
            except json.JSONDecodeError:
                node[parts[-1]] = raw
        return type(self).from_dict(data)
