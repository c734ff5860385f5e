"""Fuzz test of the config loader: random keys, values, types, overrides and
``base:`` chains, a few hundred per run, seeded. Every outcome is a clean config or one of
the loader's own errors (:class:`fsggan.config.ConfigError`, one line) - never another
exception. Runs in a few seconds.
"""

from __future__ import annotations

import dataclasses
import random
import time
import typing

import pytest
import yaml

from fsggan.config import ConfigError, load_config
from fsggan.data.config import PrepareConfig
from fsggan.train.config import TrainGANConfig, TrainVAEConfig

SEED = 18
CASES = 300
CLASSES = (TrainVAEConfig, TrainGANConfig, PrepareConfig)


def key_paths(cls, prefix: str = "") -> list[tuple[str, typing.Any]]:
    """(dotted key, type) of every leaf of a config dataclass."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += key_paths(tp, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", tp))
    return out


JUNK = [None, True, False, 0, 1, -1, 3, 16, 32, 60, 128, 2 ** 70, -(2 ** 70), 0.0, 0.5, -0.5, 1.5, 1e308,
        float("nan"), float("inf"), float("-inf"), "", "x", "1e-4", "nan", "procedural", "auto", "cpu", "blend",
        "direct", "patch", "global", "none", "cosine", [], [1], [1, 2], [0, 0], [1, 2, 5], [5], ["a"], [[1]],
        {}, {"a": 1}, {"path": "procedural"}, {1: 2}, "../nowhere", "a\x00b"]


def random_value(rng: random.Random, tp) -> typing.Any:
    if rng.random() < 0.5:
        return rng.choice(JUNK)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return rng.choice(args)
    if tp is bool:
        return rng.random() < 0.5
    if tp is int:
        return rng.choice([-3, -1, 0, 1, 2, 3, 4, 8, 16, 32, 48, 64, 100])
    if tp is float:
        return rng.choice([-1.0, 0.0, 1e-4, 0.1, 0.5, 0.9, 1.0, 2.0, 100.0])
    if origin in (list, tuple):
        inner = [a for a in args if a is not Ellipsis] or [int]
        return [random_value(rng, rng.choice(inner)) for _ in range(rng.randint(0, 4))]
    if args:  # a union
        return random_value(rng, rng.choice(args))
    return rng.choice(JUNK)


def nested(pairs: list[tuple[str, typing.Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else node
        node[leaf] = value
    return out


def random_mapping(rng: random.Random, paths) -> dict:
    pairs = []
    for _ in range(rng.randint(0, 6)):
        key, tp = rng.choice(paths)
        if rng.random() < 0.1:  # an unknown key, somewhere
            key = rng.choice([key + "x", key.rsplit(".", 1)[0] + ".typo", "nosection", "train.typo.deep"])
        pairs.append((key, random_value(rng, tp)))
    data = nested(pairs)
    if rng.random() < 0.05:
        data[rng.choice([1, None, 2.5, True])] = "non-string key"
    if rng.random() < 0.05:
        data[rng.choice([p for p, _ in paths]).split(".")[0]] = rng.choice(JUNK)  # a section that is no mapping
    return data


def write_files(rng: random.Random, folder, paths, n: int = 4) -> list:
    """n YAML files, some with a base: chain (to another file, a missing one, a loop, junk),
    some broken (not UTF-8, bad YAML, not a mapping, empty)."""
    files = [folder / f"c{i}.yaml" for i in range(n)]
    for i, f in enumerate(files):
        roll = rng.random()
        if roll < 0.04:
            f.write_bytes(b"\xff\xfe\x00junk")
            continue
        if roll < 0.08:
            f.write_text("train: {steps: [1,\n")
            continue
        if roll < 0.11:
            f.write_text(rng.choice(["- 1\n- 2\n", "just a string\n", "", "42\n"]))
            continue
        data = random_mapping(rng, paths)
        if rng.random() < 0.4:
            data["base"] = rng.choice([files[(i + 1) % n].name, files[i].name, "missing.yaml", 7, None, ["x"],
                                       "../" + folder.name + "/" + files[0].name, ".", "sub/none.yaml"])
        if rng.random() < 0.2 and "data" in [p.split(".")[0] for p, _ in paths]:
            section = data.get("data") if isinstance(data.get("data"), dict) else {}
            section["config"] = rng.choice([str(files[0]), str(folder / "missing.yaml"), 5, ["a"], str(folder)])
            data["data"] = section
        f.write_text(yaml.safe_dump(data, allow_unicode=False) if rng.random() < 0.9
                     else yaml.safe_dump(data) + "\n!!python/object:os.system\n")
    return files


def random_overrides(rng: random.Random, paths) -> list[str]:
    out = []
    for _ in range(rng.randint(0, 3)):
        key, tp = rng.choice(paths)
        value = random_value(rng, tp)
        raw = rng.choice([yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("..."). strip(),
                          "[1,", "{a: ", "!!binary x", "", "null"])
        out.append(rng.choice([f"{key}={raw}", f"{key}{raw}", f".{key}={raw}", f"{key}.={raw}", f"={raw}"]))
    return out


def test_config_loader_fuzz(tmp_path):
    rng = random.Random(SEED)
    started = time.perf_counter()
    outcomes = {"clean": 0, "error": 0}
    for case in range(CASES):
        cls = rng.choice(CLASSES)
        paths = key_paths(cls)
        folder = tmp_path / f"case{case}"
        folder.mkdir()
        files = write_files(rng, folder, paths)
        chosen = rng.sample(files, rng.randint(0, 2))
        overrides = random_overrides(rng, paths)
        try:
            cfg = load_config(cls, chosen, overrides)
        except ConfigError as exc:
            assert "\n" not in str(exc), f"case {case}: a message of several lines: {exc}"
            outcomes["error"] += 1
        except Exception as exc:
            pytest.fail(f"case {case} ({cls.__name__}, files {[f.read_bytes()[:300] for f in chosen]}, "
                        f"overrides {overrides}): {type(exc).__name__}: {exc}")
        else:
            assert isinstance(cfg, cls)
            outcomes["clean"] += 1
    assert outcomes["clean"] > 10 and outcomes["error"] > 100, outcomes  # both kinds of outcome are reached
    assert time.perf_counter() - started < 20
