"""Checkpoint files, for every caller: the layout (:func:`make_checkpoint`), save (atomic,
cleaning up temp files that a killed save left behind), load (``weights_only``, one-line
errors naming the file and what was expected), resolve (a file or a run directory), and
back into objects (:func:`load_states`, :func:`load_state`, :func:`model_from_checkpoint`).

Layout (docs/design.md, Checkpoint): a plain dict ``{"version": 1, "step", "config": {resolved
config; the model sections are constructor kwargs}, "models": {name: state_dict},
"optimizers": {name: state_dict}, "scaler": {name: state_dict}, "rng": [per-rank states],
"data": {"epoch", "batch"}, "best": {...}, "data_yaml": {the data YAML as read at start}}``
- tensors, numbers, strings, lists and dicts only, so ``torch.load(path,
weights_only=True)`` reads it and a model can be rebuilt without the YAML. A Stage I
checkpoint holds models {"vae"}; a Stage II one {"generator", "discriminator", "vae"[,
"generator_ema"]}. A run directory holds ``checkpoints/last.pt`` (the latest state; what a
resumed run continues), ``checkpoints/best.pt`` (chosen on the validation split; what
inference uses) and optional snapshots.

Every damaged file is a :class:`CheckpointError` whose message is one line: ``<file>:
<what is wrong>; expected <what the caller needs>``, for example

    runs/vae/checkpoints/last.pt: truncated or damaged (an incomplete torch.save zip archive);
    expected an fsggan Stage I (VAE) checkpoint (what fsggan-train-vae writes)
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import nn

__all__ = ["CHECKPOINT_VERSION", "CheckpointError", "make_checkpoint", "save_checkpoint", "resolve_checkpoint",
           "load_checkpoint", "checkpoint_stage", "load_state", "load_states", "model_from_checkpoint",
           "remove_stale_temps", "vae_path_of_gan", "state_dicts_differ", "drop_retired_options"]

CHECKPOINT_VERSION = 1
# stage -> (the model that identifies it, its name, the command that writes it)
STAGES = {"vae": ("vae", "Stage I (VAE)", "fsggan-train-vae"),
          "gan": ("generator", "Stage II (GAN)", "fsggan-train-gan")}
TRAINING_STATE = ("step", "optimizers", "scaler", "rng", "data")   # what a resume needs besides the models
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")   # save_checkpoint's temp files


class CheckpointError(ValueError):
    """A file is not an fsggan checkpoint (of the expected kind); the message names it."""


# Training options that were measured and not adopted (docs/experiments.md): section (dotted for a
# nested one) -> {option: (the value that switched it off, the commit where its code last lived)}.
_J_SERIES = "9d7745f5129f3136abfcbe48c30380082d973b2c"   # identity and framing options (J-, R128c/e)
_O_SERIES = "56343622b9339a96fb24b5903aeb1e286d682f56"   # occluder-removal options (O-series, R128h)
_V_SERIES = "033daf3e54cdd64441720dfd87d2140c8754b6ba"   # Stage I options (V-series)
_V8 = "d85b4aa7a747c2f870143d3c1e95fc84ca718bab"   # Stage I's clean-latent term (V8)
_SP2 = "9f53812cc19aeb54296eda80cc8bb4ddbddd1c3f"  # G trained on its second pass's structure (SP2)
RETIRED_OPTIONS = {"generator": {"fill": ("free", _J_SERIES), "erase": (False, _O_SERIES)},
                   "loss": {"identity_blur": (0.0, _J_SERIES), "identity_views": (False, _J_SERIES),
                            "identity_layers": (0.0, _J_SERIES), "identity_every": (1, _J_SERIES),
                            "hole_weight": (0.0, _V_SERIES), "clean_latent": (0.0, _V8)},
                   "train": {"frame_jitter": (0.0, _J_SERIES), "frame_jitter_loss": ("framed", _J_SERIES)},
                   "data.synthesis": {"retexture": (0.0, _O_SERIES)}, "gan": {"refined_share": (0.0, _SP2)}}


def drop_retired_options(config: dict, where: str) -> dict:
    """``config`` (a checkpoint's or model.json's sections) without the retired options, so
    that models trained before their removal still load, resume and export; a model trained
    with one switched on cannot be rebuilt here, and CheckpointError says where it can."""
    for section, options in RETIRED_OPTIONS.items():
        stored = config
        for part in section.split("."):
            stored = stored.get(part) if isinstance(stored, dict) else None
        for key, (off, commit) in options.items():
            if not isinstance(stored, dict) or key not in stored:
                continue
            value = stored.pop(key)
            if value != off:
                raise CheckpointError(f"{where}: trained with {section}.{key}={value!r}, an option removed from fsggan "
                                      f"(measured and not adopted); run it with the code of commit {commit[:7]}")
    return config


def make_checkpoint(*, step: int, config: dict, models: dict, optimizers: dict, scalers: dict, rng: list,
                    data_pos: tuple[int, int], best: dict, **extra) -> dict:
    """The checkpoint dict of a training run (see the module docstring); ``extra`` keys are
    stored as they are."""
    return {
        "version": CHECKPOINT_VERSION,
        "step": step,
        "config": config,
        "models": {k: m.state_dict() for k, m in models.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "scaler": {k: s.state_dict() for k, s in scalers.items()},
        "rng": rng,
        "data": {"epoch": data_pos[0], "batch": data_pos[1]},
        "best": dict(best),
        **extra,
    }


# Saving -------------------------------------------------------------------------------

def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` atomically: temp file ``.<name>.tmp<PID>`` in the same folder, fsync,
    os.replace; then remove the temp files of saves that were killed (:func:`remove_stale_temps`).

    A crash while saving leaves the previous file intact.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename durable too
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    remove_stale_temps(path.parent)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the ``.<name>.tmp<PID>`` files in ``folder`` left by saves that were killed
    (their process no longer runs); returns what was removed. Training calls it at start
    and after every save."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m is None or not p.is_file() or _running(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


# Loading ------------------------------------------------------------------------------

def resolve_checkpoint(path: str | Path, prefer: Sequence[str] = ("best.pt", "last.pt")) -> Path:
    """A checkpoint file as it is, or a run directory -> its first existing
    ``checkpoints/<name>`` (else ``<name>``) for name in ``prefer``.

    Inference prefers ``best.pt`` (the default); resuming wants ``prefer=("last.pt",)``.
    Raises FileNotFoundError naming the path and what was looked for.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [rel for name in prefer for rel in (f"checkpoints/{name}", name)]
        for rel in candidates:
            if (path / rel).is_file():
                return path / rel
        raise FileNotFoundError(f"{path}: run directory without a checkpoint (looked for {', '.join(candidates)})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file or run directory")
    return path


def checkpoint_stage(ckpt: dict) -> Literal["vae", "gan"] | None:
    """"gan" for a checkpoint holding a generator, "vae" for one holding only V, else None."""
    models = ckpt.get("models") if isinstance(ckpt, dict) else None
    if not isinstance(models, dict):
        return None
    return "gan" if "generator" in models else "vae" if "vae" in models else None


def _expected(stage: str | None, require: str | None, resumable: bool) -> str:
    kind = "training checkpoint" if resumable else "checkpoint"
    where = " (checkpoints/last.pt)" if resumable else ""
    if stage is not None:
        _, name, writer = STAGES[stage]
        return f"an fsggan {name} {kind}, as {writer} writes{where}"
    if require is not None:
        name = {"vae": "Stage I (VAE)", "generator": "Stage II (GAN)"}.get(require, f"'{require}'")
        return f"an fsggan {name} {kind} (holding models['{require}'] and config['{require}'])"
    return f"an fsggan {kind}, as fsggan-train-vae or fsggan-train-gan writes{where}"


def _unreadable(path: Path, exc: BaseException) -> str:
    """What is wrong with a file that torch.load refused, in a few words."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:  # permissions, ...
        return f"cannot read it ({err.strerror or err})"
    if not head:
        return "empty file (0 bytes)"
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    imported = found[1] if found else _pickle_import(path) if head.startswith(b"\x80") else None
    if imported:  # weights_only refused an import: the file carries code, not only data
        return f"refused: loading it would import {imported} (code, not data)"
    if head.startswith(b"PK"):
        return "truncated or damaged (an incomplete torch.save zip archive)"
    if isinstance(exc, EOFError):
        return "truncated or damaged (the file ends early)"
    if _is_text(head):
        return "a text file, not a PyTorch checkpoint"
    return "not a PyTorch checkpoint (unrecognised binary content)"


def _pickle_import(path: Path) -> str | None:
    """The first ``module.name`` a raw pickle file would import (read, never run), or None."""
    import pickletools

    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    return str(arg).replace(" ", ".")
                if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    return f"{strings[-2]}.{strings[-1]}"
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - not a (complete) pickle
        return None
    return None


def _is_text(head: bytes) -> bool:
    """UTF-8 without control characters (a character cut at the end of ``head`` is fine)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return False
        text = head[:exc.start].decode("utf-8")
    return all(c.isprintable() or c.isspace() for c in text)


def load_checkpoint(path: str | Path, *, stage: Literal["vae", "gan"] | None = None, require: str | None = None,
                    version: int | None = None, resumable: bool = False,
                    prefer: Sequence[str] = ("best.pt", "last.pt"), map_location="cpu", mmap: bool = False) -> dict:
    """Read a checkpoint safely (``weights_only=True``: no pickled objects), the one loader
    of every command.

    path: a file or a run directory (see :func:`resolve_checkpoint`, ``prefer``).
    stage: "vae" (Stage I: models {"vae"}) or "gan" (Stage II: a "generator" among the
        models), with the model's constructor kwargs in ``config``.
    require: a model name ("vae", "generator", ...) that must be in ``models``, with its
        constructor kwargs in ``config`` (a Stage II checkpoint also satisfies "vae").
    version: the checkpoint version the caller reads (training resumes check it).
    resumable: the training state (optimisers, RNG, data position) must be there too.
    mmap: map the tensors from the file instead of reading them (cheap when only the config
        and the checks are wanted, e.g. by the command line before a resume).
    Returns the dict with ``"path"`` (the resolved file) added. Raises FileNotFoundError
    or :class:`CheckpointError`, both one line naming the file.
    """
    path = resolve_checkpoint(path, prefer)
    if stage is not None and stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    expected = _expected(stage, require, resumable)
    try:
        with warnings.catch_warnings():  # a raw pickle: torch warns about its protocol before refusing it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # not a torch file, truncated, unsafe pickle, ...
        raise CheckpointError(f"{path}: {_unreadable(path, exc)}; expected {expected}") from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("models"), dict):
        found = (f"top-level keys {sorted(map(str, ckpt))[:8]}" if isinstance(ckpt, dict)
                 else f"a {type(ckpt).__name__}, not a dict")
        raise CheckpointError(f"{path}: a PyTorch file but not an fsggan checkpoint (no 'models'; {found}); "
                              f"expected {expected}")
    models = ", ".join(sorted(map(str, ckpt["models"]))) or "none"
    found_stage = checkpoint_stage(ckpt)
    if stage is not None and found_stage != stage:
        what = f"a {STAGES[found_stage][1]} checkpoint" if found_stage else "a checkpoint of neither stage"
        raise CheckpointError(f"{path}: {what} (models: {models}); expected {expected}")
    require = require or (STAGES[stage][0] if stage else None)
    if require is not None and require not in ckpt["models"]:
        raise CheckpointError(f"{path}: holds models {models}, not '{require}'; expected {expected}")
    if not isinstance(ckpt.get("config"), dict) or (require is not None and not isinstance(
            ckpt["config"].get(require), dict)):
        key = f"config['{require}'] (the constructor arguments)" if require else "'config'"
        raise CheckpointError(f"{path}: {key} is missing; expected {expected}")
    drop_retired_options(ckpt["config"], str(path))
    if resumable:
        lacking = [k for k in TRAINING_STATE if k not in ckpt]
        if lacking:
            raise CheckpointError(f"{path}: no training state ({', '.join(lacking)} missing), so it cannot be "
                                  f"resumed; expected {expected}")
    if version is not None and ckpt.get("version") != version:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')}, this code reads {version}")
    ckpt["path"] = str(path)
    return ckpt


# Back into objects --------------------------------------------------------------------

def load_state(model: nn.Module, ckpt: dict, name: str, *, state: str | None = None,
               config: dict | None = None) -> None:
    """``model.load_state_dict(ckpt["models"][state or name])``, or a one-line
    CheckpointError naming the file and the tensors that do not fit. ``config``: the
    constructor arguments the model was built with (named in the message)."""
    path, stored = ckpt.get("path", "checkpoint"), ckpt["models"].get(state or name)
    built = f"{type(model).__name__}({', '.join(f'{k}={v!r}' for k, v in (config or {}).items())})" if config \
        else f"the {type(model).__name__} built from the config"
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: models['{state or name}'] is not a state dict; expected the weights of {built}")
    own = model.state_dict()
    shapes = [f"{k} is {tuple(stored[k].shape)} in the file, {tuple(v.shape)} in the model" for k, v in own.items()
              if k in stored and isinstance(stored[k], torch.Tensor) and stored[k].shape != v.shape]
    missing = [k for k in own if k not in stored]
    unexpected = [k for k in stored if k not in own]
    if shapes or missing or unexpected:
        first = shapes[0] if shapes else f"{missing[0]} missing" if missing else f"{unexpected[0]} unexpected"
        raise CheckpointError(f"{path}: the stored '{state or name}' weights do not fit {built}: {len(shapes)} "
                              f"shape(s) differ, {len(missing)} tensor(s) missing, {len(unexpected)} unexpected "
                              f"(first: {first})")
    model.load_state_dict(stored)


def load_states(ckpt: dict, *, models: dict, optimizers: dict, scalers: dict) -> tuple[int, tuple[int, int], dict]:
    """Load a checkpoint's states into the given objects; returns (step, (epoch, batch), best).
    Weights or optimiser states that do not fit raise a one-line CheckpointError."""
    for k, m in models.items():
        if k not in ckpt["models"]:
            raise CheckpointError(f"{ckpt.get('path', 'checkpoint')}: holds models "
                                  f"{', '.join(sorted(ckpt['models']))}, not '{k}', which this run needs")
        load_state(m, ckpt, k)
    for k, o in optimizers.items():
        try:
            o.load_state_dict(ckpt["optimizers"][k])
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{ckpt.get('path', 'checkpoint')}: the stored '{k}' optimiser state does not "
                                  f"fit: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    for k, s in scalers.items():
        if ckpt["scaler"].get(k):
            s.load_state_dict(ckpt["scaler"][k])
    return ckpt["step"], (ckpt["data"]["epoch"], ckpt["data"]["batch"]), dict(ckpt.get("best", {}))


def model_from_checkpoint(cls: type[nn.Module], ckpt: dict, name: str, *, state: str | None = None) -> nn.Module:
    """``cls(**ckpt["config"][name])`` with the weights ``ckpt["models"][state or name]``,
    frozen and in eval mode (for inference). Raises CheckpointError when they do not fit."""
    kwargs, path = ckpt["config"][name], ckpt.get("path", "checkpoint")
    try:
        model = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: config['{name}'] does not fit {cls.__name__}: {exc}") from exc
    load_state(model, ckpt, name, state=state, config=kwargs)
    return model.eval().requires_grad_(False)


def vae_path_of_gan(ckpt: dict) -> Path:
    """The Stage I checkpoint a Stage II checkpoint was trained with (absolute, or
    relative to the working directory or to the Stage II run directory)."""
    ref = (ckpt["config"].get("gan") or {}).get("vae_checkpoint")
    if not ref:
        raise CheckpointError(f"{ckpt['path']}: no config['gan']['vae_checkpoint']; pass the VAE with vae=...")
    ref = Path(ref)
    here = Path(ckpt["path"]).resolve()
    for cand in (ref, here.parent / ref, here.parent.parent / ref, here.parent.parent.parent / ref):
        if cand.exists():
            return cand
    raise FileNotFoundError(f"{ckpt['path']}: its VAE checkpoint {ref} (config['gan']['vae_checkpoint']) "
                            "was not found; pass it explicitly (vae=... / --vae)")


def state_dicts_differ(a: dict, b: dict | None) -> bool:
    """True when both state dicts exist and some tensor differs."""
    if b is None:
        return False
    return a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a)
