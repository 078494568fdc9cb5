"""Config machinery: frozen dataclasses, TOML load/save and a stable config hash.

Every stage takes one frozen dataclass, defined next to the stage's code (e.g.
``cxrlens.data.iu_xray.IUXrayImportConfig``) so a stage and its config are read together. Nested sub-configs are
dataclasses too. The config hash is the SHA-256 of the canonical JSON of
``{"type": <qualified class name>, "fields": <all fields, recursively>}``, so it is stable across processes and
Python versions and changes whenever any field (or the config type) changes.

Example::

    @dataclass(frozen=True)
    class MyConfig:
        seed: int = 0
        lr: float = 1e-3

    cfg = MyConfig(lr=3e-4)
    save_toml(cfg, "run/config.toml")
    assert load_toml(MyConfig, "run/config.toml") == cfg
    config_hash(cfg)  # '5f0c…' (64 hex chars)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from cxrlens.files import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

import tomli_w

from cxrlens.errors import BadInputError

__all__ = [
    "config_from_dict",
    "config_hash",
    "config_to_dict",
    "load_toml",
    "save_toml",
]

C = TypeVar("C")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a dataclass config (tuples become lists, paths become strings)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"config values must be finite, got {value!r}")
    return value


def config_hash(cfg: Any) -> str:
    """SHA-256 (hex) of the config's type name and all its fields, canonically serialised."""
    payload = {"type": f"{type(cfg).__module__}.{type(cfg).__qualname__}", "fields": config_to_dict(cfg)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build ``cls`` from a nested dict; unknown keys are an error, missing keys take their defaults."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass type")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown field(s) for {cls.__name__}: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value) for name, value in data.items()}
    return cls(**kwargs)  # type: ignore[return-value]


def _coerce(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return config_from_dict(tp, value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value) if len(args) == 1 else value
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v) for v in value)
    if tp is Path and isinstance(value, str):
        return Path(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def save_toml(cfg: Any, path: str | Path) -> None:
    """Write ``cfg`` as TOML (atomically). ``None`` fields are omitted (TOML has no null) and load as default."""

    data = _drop_none(config_to_dict(cfg))
    atomic_write_text(Path(path), tomli_w.dumps(data))


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (_drop_none(v) if isinstance(v, dict) else v) for k, v in d.items() if v is not None}


def load_toml(cls: type[C], path: str | Path) -> C:
    """Read a TOML file written by :func:`save_toml` (or by hand) into ``cls``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise BadInputError(path, "config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(path, f"invalid TOML ({exc})") from None
    try:
        return config_from_dict(cls, data)
    except (TypeError, ValueError) as exc:
        raise BadInputError(path, str(exc)) from None
