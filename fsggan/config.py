"""Typed configuration: nested dataclasses filled from layered YAML files plus `--set a.b=value`
overrides.

The dataclasses themselves live next to the code that uses them (training configs in
`fsggan.train.config`, data configs in `fsggan.data.config`); this module
holds the one generic loader they all share:

    cfg = load_config(TrainVAEConfig, "configs/vae.yaml", overrides=["optim.lr=2.0e-4"])
    cfg = load_config(TrainGANConfig, ["configs/gan.yaml", "my_layer.yaml"])   # applied in order

Layers: several files are merged in order (mappings key by key, recursively; any other
value - lists included - is replaced), then the overrides. A file may start with
`base: <file>` (a path relative to that file): its base is read first and the file lies
over it, so an ablation is a few lines over `configs/gan.yaml`. A section class may also
put a file under its own keys: `fsggan.train.config.TrainDataSection` reads the data YAML named
by `data.config` (see :func:`load_config`). The merged result is the resolved config,
saved as a run's config.yaml.

Rules, checked when loading so that a typo fails at start and not after an hour:
- an unknown key raises `ConfigError`, naming the file, the key and the valid keys;
- a value of the wrong type raises `ConfigError`, naming the key, the expected type and
  the value (ints are accepted where a float is expected; nothing else is coerced);
- override values are parsed as YAML scalars (`a.b=1.0e-4`, `a.c=[1, 2]`, `a.d=null`).
  Note that PyYAML reads `1e-4` (no dot) as a string: write `1.0e-4`. For float fields we
  accept such strings when they parse as a float, since that mistake is so common.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence, TypeVar, Union

import yaml

T = TypeVar("T")

__all__ = ["ConfigError", "load_config", "from_dict", "to_dict", "apply_overrides", "merge", "read_layers",
           "save_config"]


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message says what and how to fix it."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _check(value: Any, tp: Any, where: str) -> Any:
    """Return `value` converted to `tp` (only lossless conversions) or raise ConfigError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for section {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{where}: expected one of {_type_name(tp)}, got {value!r}")
    if origin in (Union, types.UnionType):
        return _check_union(value, tp, where)
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin in (list, tuple):
        return _check_sequence(value, tp, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        return _check_float(value, where)
    return _check_scalar(value, tp, where)


def _check_union(value: Any, tp: Any, where: str) -> Any:
    """`value` as the first member of union `tp` that takes it."""
    for arg in typing.get_args(tp):
        try:
            return _check(value, arg, where)
        except ConfigError:
            pass
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _check_sequence(value: Any, tp: Any, where: str) -> list | tuple:
    """A list or tuple of type `tp`, item by item: a fixed-length tuple checks each position
    against its own type, a list or `tuple[X, ...]` every item against X."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list ({_type_name(tp)}), got {value!r}")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items ({_type_name(tp)}), got {value!r}")
        items = [_check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
    else:
        item_tp = args[0] if args else Any
        items = [_check(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _check_float(value: Any, where: str) -> float:
    """A finite float from an int, a float or a string that parses as one (PyYAML reads
    `1e-4`, without a dot, as a string)."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e308 or isinstance(value, float) else math.inf
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is not None and math.isfinite(number):
        return number
    raise ConfigError(f"{where}: expected a {'finite ' if number is not None else ''}number, got {value!r}")


def _check_scalar(value: Any, tp: Any, where: str) -> Any:
    """A bool, int, str or Path, taken as it is (a str also as a Path); ints are not bools."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{where}: expected a path string, got {value!r}")
    raise ConfigError(f"{where}: unsupported config type {tp!r}")


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass `cls` from a (possibly partial) dict; missing keys keep their defaults."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) if isinstance(k, str) else repr(k) for k in data if k not in fields)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' in ' + where if where else ''}: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _check(value, hints[name], f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # __post_init__ validation
        message = " ".join(str(e).split())
        if message.split(".")[0].split("=")[0].split(" ")[0] in fields:  # it starts with one of the keys
            raise ConfigError(f"{where}.{message}" if where else message) from None
        raise ConfigError(f"{where or cls.__name__}: {message}") from None


def to_dict(cfg: Any) -> Any:
    """Plain dict/list/scalar form of a config (tuples become lists, Paths strings)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Apply `a.b.c=value` strings to a nested dict (values parsed as YAML scalars)."""
    data = dict(data or {})
    for item in overrides or ():
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.subkey=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: cannot parse the value ({_yaml_problem(e)}); quote it or "
                              f"fix its YAML") from None
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: the key must look like section.key (no empty parts)")
        node = data
        for p in parts[:-1]:
            child = node.get(p)
            child = dict(child) if isinstance(child, dict) else {}
            node[p] = child
            node = child
        node[parts[-1]] = value
    return data


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in a few words, on one line: what and where (line, column)."""
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or type(e).__name__
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def read_yaml(path: str | Path) -> dict:
    """One YAML file as a dict; every problem (missing, unreadable, not UTF-8, not YAML, not
    a mapping) is a one-line ConfigError naming the file."""
    try:
        path = Path(path)
        exists = path.is_file()
    except (TypeError, ValueError, OSError):
        raise ConfigError(f"config file {path!r}: not a usable path") from None
    if not exists:
        raise ConfigError(f"config file {path} does not exist (configs live in configs/*.yaml)")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                          f"{e.start}); save it as UTF-8 YAML") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def merge(base: dict, layer: dict) -> dict:
    """``layer`` over ``base``: mappings merged key by key (recursively), other values replaced."""
    out = dict(base)
    for k, v in layer.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_layers(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A YAML file over its ``base:`` file (relative to it), recursively."""
    try:
        path = Path(path)
        key = path.resolve()
    except (TypeError, ValueError, OSError, RuntimeError):
        raise ConfigError(f"config file {path!r}: not a usable path") from None
    if key in _seen:
        raise ConfigError(f"{path}: 'base:' files form a loop ({' -> '.join(str(p) for p in _seen)})")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be the path of a YAML file (relative to {path}), got {base!r}")
    return merge(read_layers(path.parent / base, (*_seen, key)), data)


def load_config(cls: type[T], path: str | Path | Sequence[str | Path] | None = None,
                overrides: Iterable[str] = ()) -> T:
    """Load dataclass `cls` from YAML file(s) `path` (optional; several are layered in order)
    and `key=value` overrides.

    A section whose class has a ``layer(raw: dict) -> dict`` static method gets its raw
    mapping through it after the files and the overrides (``TrainDataSection``: the data YAML
    named by ``data.config`` lies under the section's own keys).
    """
    paths = [] if path is None else [path] if isinstance(path, (str, Path)) else list(path)
    where = " + ".join(str(p) for p in paths)
    data: dict = {}
    for p in paths:  # file errors name their file
        data = merge(data, read_layers(p))
    data = apply_overrides(data, overrides)
    try:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            layer = getattr(hints[f.name], "layer", None)
            if callable(layer) and isinstance(data.get(f.name), dict):
                data[f.name] = layer(data[f.name])
        return from_dict(cls, data)
    except ConfigError as e:
        if where:
            raise ConfigError(f"{where}: {e}") from None
        raise


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (the run directory's config.yaml)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
