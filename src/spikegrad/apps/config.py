"""App configs: dataclasses, ``key=value`` overrides with type checks, JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any, Iterable, Union


class ConfigError(ValueError):
    """A bad ``--set`` key or value; the message names the valid keys or the expected type."""


class _NotFinite(Exception):
    pass


def _base_type(tp) -> tuple:
    """``Optional[int]`` -> ``(int, True)``; ``int`` -> ``(int, False)``."""
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def parse_value(key: str, text: str, tp, default: Any = None) -> Any:
    """``text`` as a value of type ``tp`` for config key ``key``.

    An empty value is passed on only for plain string keys, whose app validation says what
    it means there (e.g. ``shd_path=``: not given; ``compare_tbptt=``: no comparison;
    ``surrogate=``: an error). For numbers and flags it means nothing, and for optional keys
    "take the preset" is spelled ``none``: both are errors. Floats must be finite: no config
    value means anything at NaN or infinity.
    """
    base, optional = _base_type(tp)
    if text == "" and (optional or base is not str):
        example = default if default not in (None, "") else ("none" if optional else "...")
        raise ConfigError(f"empty value for {key!r}; give one, e.g. {key}={example}"
                          + (" (none: the preset's value)" if optional else ""))
    if optional and text.lower() in ("none", "null"):
        return None
    try:
        if base is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if base is int:
            return int(text)
        if base is float:
            value = float(text)
            if math.isfinite(value):
                return value
            raise _NotFinite
        if base is str:
            return text
    except _NotFinite:
        raise ConfigError(f"bad value for {key!r}: {text!r} is not a finite number") from None
    except ValueError:
        pass
    else:
        raise ConfigError(f"config key {key!r} has unsupported type {tp}")
    raise ConfigError(f"bad value for {key!r}: {text!r} is not a valid {base.__name__}"
                      + (" (or none)" if optional else ""))


def apply_overrides(cfg, overrides: Iterable[str]):
    """Return a copy of dataclass ``cfg`` with ``key=value`` strings applied."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}; valid keys: "
                              f"{', '.join(sorted(fields))}")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {item!r} has no key before '='; expected KEY=VALUE, e.g. "
                              "epochs=5")
        if key not in fields:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(fields))}")
        changes[key] = parse_value(key, text.strip(), hints[key], fields[key].default)
    return dataclasses.replace(cfg, **changes)


def resolve_config(app, cfg):
    """The app's ``validate(cfg)`` (presets filled in, every key checked), before anything
    runs."""
    validate = getattr(app, "validate", None)
    if not callable(validate):
        raise TypeError(f"app {getattr(app, '__name__', app)!r} has no validate(cfg); every app "
                        "module defines Config, validate(cfg) -> Config and run(cfg, out)")
    cfg = validate(cfg)
    _check_common(cfg)
    return cfg


def _check_common(cfg) -> None:
    """Keys several apps share, checked here so that no app's validation can miss them."""
    from .. import surrogate

    spec = getattr(cfg, "log", None)
    if isinstance(spec, str):
        from ..train.log import check_formats

        try:
            check_formats(spec)
        except (ValueError, ImportError) as e:
            raise ConfigError(str(e)) from None
    name = getattr(cfg, "surrogate", None)
    if isinstance(name, str) and name not in surrogate.names():
        raise ConfigError(f"surrogate must be one of {', '.join(surrogate.names())}; got "
                          f"{name!r}")


def to_json(cfg) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True)
