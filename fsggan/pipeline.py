"""De-occlusion with trained models: the notebook API and ``fsggan-deocclude``.

    from fsggan import FSGGAN
    m = FSGGAN.from_checkpoints(vae="runs/vae", gan="runs/gan")   # run dirs or .pt files
    out = m.deocclude(images)        # y_hat = G(x, V(x))
    g = m.structure(images)          # g = V(x), the blurry facial structure

``images`` may be (the output has the same kind):

* a PIL image or a list of them -> PIL image(s), RGB, ``image_size`` x ``image_size``;
* a numpy array (H, W, 3) or a batch (B, H, W, 3), or a list of arrays: uint8 in
  [0, 255] -> uint8; float in [0, 1] -> float32 in [0, 1];
* a torch tensor (3, H, W) or (B, 3, H, W), float in [-1, 1] (fsggan's convention) ->
  a tensor of the same rank in [-1, 1], on the input's device.

Inputs should be face crops like the training data (128x128, aligned as
``fsggan-prepare-data`` does); other sizes are resized to the model's ``image_size``.
For uncropped photos use :func:`crop_faces` first (or ``fsggan-deocclude`` without
``--aligned``), which crops them as the data pipeline does.

Checkpoints (``fsggan.train``; loaded with ``torch.load(weights_only=True)``):
Stage I ``{"models": {"vae": sd}, "config": {"vae": kwargs}}``; Stage II
``{"models": {"generator": sd, ...}, "config": {"generator": kwargs, "vae": kwargs,
"gan": {"vae_checkpoint": path}}}``. A run directory stands for its
``checkpoints/best.pt`` (else ``checkpoints/last.pt``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fsggan.eval.imageio import IMAGE_EXTENSIONS, list_images, pil_to_tensor, save_image, tensor_to_uint8

CHECKPOINT_CANDIDATES = ("checkpoints/best.pt", "best.pt", "checkpoints/last.pt", "last.pt")

__all__ = ["FSGGAN", "CheckpointError", "resolve_checkpoint", "load_checkpoint", "crop_faces", "main"]


# ---------------------------------------------------------------- checkpoints

class CheckpointError(ValueError):
    """A file is not an fsggan checkpoint of the expected stage; the message names it."""


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory -> its ``checkpoints/best.pt`` (else last.pt)."""
    path = Path(path)
    if path.is_dir():
        for rel in CHECKPOINT_CANDIDATES:
            if (path / rel).is_file():
                return path / rel
        raise FileNotFoundError(f"{path}: run directory without a checkpoint "
                                f"(looked for {', '.join(CHECKPOINT_CANDIDATES)})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file or run directory")
    return path


def load_checkpoint(path: str | Path, *, require: str) -> dict:
    """Load a checkpoint safely (``weights_only=True``) and check it holds model ``require``
    ("vae" or "generator") with its constructor kwargs in ``config``."""
    path = resolve_checkpoint(path)
    stage = {"vae": "Stage I (VAE)", "generator": "Stage II (GAN)"}[require]
    expected = (f"an fsggan {stage} checkpoint: a dict with 'models': {{'{require}': state_dict}} and "
                f"'config': {{'{require}': constructor kwargs}}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, unsafe pickle, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({msg}); expected {expected}") from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("models"), dict):
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: expected {expected}; found {found}")
    if require not in ckpt["models"]:
        raise CheckpointError(f"{path}: holds models {sorted(ckpt['models'])}, not '{require}'; expected {expected}")
    if not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt["config"].get(require), dict):
        raise CheckpointError(f"{path}: config['{require}'] (the constructor kwargs) is missing; expected {expected}")
    ckpt["path"] = str(path)
    return ckpt


def _build(cls, kwargs: dict, state: dict, path: str, what: str) -> nn.Module:
    try:
        model = cls(**kwargs)
    except TypeError as exc:
        raise CheckpointError(f"{path}: config['{what}'] does not fit {cls.__name__}: {exc}") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: state dict of '{what}' does not fit {cls.__name__}({kwargs}): "
                              f"{str(exc).splitlines()[0]}") from exc
    return model.eval().requires_grad_(False)


def _vae_path_from_gan(ckpt: dict) -> Path:
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


def _differs(a: dict, b: dict | None) -> bool:
    """True when both state dicts exist and some tensor differs."""
    if b is None:
        return False
    return a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- image kinds

def _to_batch(images) -> tuple[torch.Tensor, dict]:
    """Any supported input -> ((B, 3, H, W) float in [-1, 1] on CPU or the input's device,
    info needed to give the output back in the same kind)."""
    if isinstance(images, torch.Tensor):
        if images.dim() == 3 and images.shape[0] == 3:
            return images.unsqueeze(0).float(), {"kind": "tensor", "single": True, "device": images.device}
        if images.dim() == 4 and images.shape[1] == 3:
            return images.float(), {"kind": "tensor", "single": False, "device": images.device}
        raise ValueError(f"tensor input must be (3, H, W) or (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
    if isinstance(images, Image.Image):
        return pil_to_tensor(images).unsqueeze(0), {"kind": "pil", "single": True}
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            batch, info = _to_batch(list(images))
            info["kind"] = "ndarray_batch"
            return batch, info
        return _array_to_tensor(images).unsqueeze(0), {"kind": "ndarray", "single": True,
                                                       "dtype": images.dtype}
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("empty list of images")
        items = [_to_batch(im) for im in images]
        kinds = {info["kind"] for _, info in items}
        if len(kinds) > 1:
            raise ValueError(f"mixed image kinds in one list: {sorted(kinds)}")
        first = items[0][1]
        sizes = {tuple(t.shape[-2:]) for t, _ in items}
        tensors = [t for t, _ in items]
        if len(sizes) > 1:  # the model resizes anyway; stack at the first size
            tensors = [_resize(t, items[0][0].shape[-2:]) for t in tensors]
        return torch.cat(tensors), {**first, "single": False}
    raise TypeError(f"unsupported image input {type(images).__name__}: give PIL images, "
                    "numpy arrays (H, W, 3) or tensors (B, 3, H, W) in [-1, 1]")


def _array_to_tensor(arr: np.ndarray) -> torch.Tensor:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"numpy image must be (H, W, 3), got {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(arr)).float() / 127.5 - 1.0
    elif np.issubdtype(arr.dtype, np.floating):
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)) * 2.0 - 1.0
    else:
        raise ValueError(f"numpy image must be uint8 or float in [0, 1], got {arr.dtype}")
    return t.permute(2, 0, 1)


def _from_batch(out: torch.Tensor, info: dict):
    kind = info["kind"]
    if kind == "tensor":
        out = out.to(info["device"])
        return out[0] if info["single"] else out
    if kind == "pil":
        imgs = [Image.fromarray(tensor_to_uint8(o)) for o in out]
        return imgs[0] if info["single"] else imgs
    arrays = []
    for o in out:
        if info["dtype"] == np.uint8:
            arrays.append(tensor_to_uint8(o))
        else:
            arrays.append(((o.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy())
    if info["single"]:
        return arrays[0]
    return np.stack(arrays) if kind == "ndarray_batch" else arrays


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ---------------------------------------------------------------- the model

class FSGGAN:
    """Trained FSG-GAN for inference: Stage I VAE ``V`` and Stage II generator ``G``.

    vae: the VAE (``None`` only for a generator trained without structure input,
        ``in_channels == 3``, the "w/o VAE" ablation).
    generator: the U-Net generator; ``G(x, V(x))``.
    device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", or a torch.device.
    image_size: the size the models work at (default: the VAE's, else 128).
    """

    def __init__(self, vae: nn.Module | None, generator: nn.Module, device="auto", image_size: int | None = None):
        self.device = _device(device)
        self.vae = None if vae is None else vae.to(self.device).eval().requires_grad_(False)
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self.uses_structure = getattr(generator, "in_channels", 6) != 3
        if self.uses_structure and self.vae is None:
            raise ValueError("this generator takes the structure image g: a VAE is needed")
        self.image_size = int(image_size or 128)
        self.checkpoints: dict[str, str] = {}

    @classmethod
    def from_checkpoints(cls, vae: str | Path | None = None, gan: str | Path | None = None,
                         device="auto") -> FSGGAN:
        """Build from a Stage II checkpoint (``gan``) and a Stage I checkpoint (``vae``).

        Each is a ``.pt`` file or a run directory (``checkpoints/best.pt`` preferred).
        ``vae=None`` (recommended): the VAE saved inside the Stage II checkpoint - the V
        that G was trained with, which differs from Stage I's after ``trunk_mode: tied`` -
        else the file its ``config["gan"]["vae_checkpoint"]`` names. An explicit ``vae``
        that differs from the stored one gives a warning.
        """
        from fsggan.models import VAE, UNetGenerator

        if gan is None:
            raise ValueError("gan= (the Stage II checkpoint or run directory) is required")
        gckpt = load_checkpoint(gan, require="generator")
        generator = _build(UNetGenerator, gckpt["config"]["generator"], gckpt["models"]["generator"],
                           gckpt["path"], "generator")
        paths = {"gan": gckpt["path"]}
        vae_model, vae_kwargs = None, None
        if vae is not None or getattr(generator, "in_channels", 6) != 3:
            if vae is None and "vae" in gckpt["models"] and isinstance(gckpt["config"].get("vae"), dict):
                vckpt = gckpt
            else:
                vckpt = load_checkpoint(vae if vae is not None else _vae_path_from_gan(gckpt), require="vae")
            vae_kwargs = vckpt["config"]["vae"]
            vae_model = _build(VAE, vae_kwargs, vckpt["models"]["vae"], vckpt["path"], "vae")
            paths["vae"] = vckpt["path"]
            if vckpt is not gckpt and _differs(vckpt["models"]["vae"], gckpt["models"].get("vae")):
                warnings.warn(f"{vckpt['path']}: this VAE differs from the one stored in {gckpt['path']}, "
                              "which is the one G was trained with (trunk_mode 'tied' updates it); "
                              "leave vae unset to use the stored one", stacklevel=2)
        size = (vae_kwargs or gckpt["config"].get("vae") or {}).get("image_size", 128)
        model = cls(vae_model, generator, device=device, image_size=size)
        model.checkpoints = paths
        return model

    # -- tensors in, tensors out (B, 3, S, S) in [-1, 1] on self.device
    @torch.inference_mode()
    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One batch (B, 3, H, W) in [-1, 1] -> (y_hat, g) at ``image_size`` on ``self.device``
        (g is None for a generator without structure input)."""
        x = _resize(x.to(self.device, torch.float32), (self.image_size, self.image_size))
        g = self.vae(x) if self.vae is not None else None
        y = self.generator(x, g) if self.uses_structure else self.generator(x)
        return y, g

    def _apply(self, images, which: str, batch_size: int):
        x, info = _to_batch(images)
        outs = []
        for start in range(0, x.shape[0], batch_size):
            y, g = self.run(x[start:start + batch_size])
            if which == "structure":
                if g is None:
                    raise ValueError("this model has no structure image (generator trained without VAE)")
                y = g
            outs.append(y.float().cpu() if info["kind"] != "tensor" else y)
        return _from_batch(torch.cat(outs), info)

    def deocclude(self, images, batch_size: int = 32):
        """De-occluded faces ``G(x, V(x))``, in the input's kind (see the module docstring)."""
        return self._apply(images, "output", batch_size)

    def structure(self, images, batch_size: int = 32):
        """Facial structure images ``g = V(x)``, in the input's kind."""
        return self._apply(images, "structure", batch_size)


# ---------------------------------------------------------------- face cropping

def crop_faces(images: Sequence, image_size: int = 128, crop: str = "lfw") -> list[torch.Tensor]:
    """Crop photos to face crops exactly as the data pipeline does -> (3, S, S) in [-1, 1].

    images: PIL images or uint8 (H, W, 3) arrays.
    crop: a key of ``fsggan.data.DEFAULT_CROPS``: "lfw" (LFW-like framing, 250x250
        reference box scaled to the photo's size), "celeba" (CelebA aligned 178x218),
        "folder" (the largest centred square).
    """
    from fsggan.data import DEFAULT_CROPS
    from fsggan.data.images import crop_resize, to_tensor

    if crop not in DEFAULT_CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose from {', '.join(DEFAULT_CROPS)}")
    box_of = DEFAULT_CROPS[crop]
    out = []
    for img in images:
        arr = np.asarray(img.convert("RGB"), dtype=np.uint8) if isinstance(img, Image.Image) else np.asarray(img)
        h, w = arr.shape[:2]
        out.append(to_tensor(crop_resize(arr, box_of.box_for(w, h), image_size)))
    return out


def _read_input(path: Path, *, aligned: bool, crop: str, image_size: int) -> torch.Tensor:
    """One input file -> (3, S, S) in [-1, 1] (raises with the file's name when unreadable)."""
    from fsggan.data import read_rgb

    arr, _ = read_rgb(path)
    if aligned:
        from fsggan.data.images import to_tensor

        return _resize(to_tensor(arr).unsqueeze(0), (image_size, image_size))[0]
    return crop_faces([arr], image_size, crop)[0]


# ---------------------------------------------------------------- CLI

def _collect_inputs(inputs: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(list_images(p))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise ValueError(f"two inputs would write the same output name {f.stem}.png: {stems[f.stem]} and {f}")
        stems[f.stem] = f
    return files


def _batches(files: list[Path], size: int) -> Iterator[list[Path]]:
    for i in range(0, len(files), size):
        yield files[i:i + size]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fsggan-deocclude",
        description="De-occlude face images with trained FSG-GAN checkpoints (128x128 faces out).")
    p.add_argument("inputs", nargs="+", help="image files and/or folders of images "
                   f"({', '.join(IMAGE_EXTENSIONS)})")
    p.add_argument("--gan", required=True, help="Stage II checkpoint (.pt) or run directory")
    p.add_argument("--vae", default=None, help="Stage I checkpoint or run directory (default: the VAE stored "
                   "in the Stage II checkpoint, else the one its config names)")
    p.add_argument("--out", required=True, help="output folder: <name>.png per input")
    p.add_argument("--aligned", action="store_true",
                   help="inputs are already aligned face crops (only resized); default: crop as the data pipeline does")
    p.add_argument("--crop", default="lfw", choices=("lfw", "celeba", "folder"),
                   help="face box for uncropped photos, as fsggan-prepare-data: lfw (LFW-like framing, default), "
                        "celeba (CelebA aligned), folder (largest centred square)")
    p.add_argument("--structure", action="store_true", help="also write g = V(x) to OUT/structure/")
    p.add_argument("--strip", action="store_true", help="also write input | g | output strips to OUT/strip/")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``fsggan-deocclude``: image files or folders in, de-occluded faces out. Returns 0, 1 when
    some inputs could not be read (listed), 2 for a wrong checkpoint or input path."""
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    try:
        files = _collect_inputs(args.inputs)
        model = FSGGAN.from_checkpoints(vae=args.vae, gan=args.gan, device=args.device)
    except (FileNotFoundError, ValueError) as exc:  # CheckpointError is a ValueError
        print(f"fsggan-deocclude: error: {exc}", file=sys.stderr)
        return 2
    if not files:
        print("fsggan-deocclude: no images found in the inputs", file=sys.stderr)
        return 1
    if (args.structure or args.strip) and not model.uses_structure:
        print("note: this generator has no structure input; --structure/--strip show no g", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    with tqdm(total=len(files), desc="de-occluding", unit="img") as bar:
        for chunk in _batches(files, args.batch_size):
            xs, ok = [], []
            for f in chunk:
                try:
                    x = _read_input(f, aligned=args.aligned, crop=args.crop, image_size=model.image_size)
                except Exception as exc:  # report, go on with the rest
                    failed.append(f"{f}: {exc}")
                    continue
                xs.append(x)
                ok.append(f)
            if xs:
                x = torch.stack(xs)
                y, g = model.run(x)
                for i, f in enumerate(ok):
                    save_image(y[i], out / f"{f.stem}.png")
                    if args.structure and g is not None:
                        save_image(g[i], out / "structure" / f"{f.stem}.png")
                    if args.strip:
                        parts = [x[i].to(y.device)] + ([g[i]] if g is not None else []) + [y[i]]
                        save_image(torch.cat(parts, dim=-1), out / "strip" / f"{f.stem}.png")
            bar.update(len(chunk))
    print(f"wrote {len(files) - len(failed)} image(s) to {out}")
    if failed:
        print(f"{len(failed)} input(s) could not be read:", file=sys.stderr)
        for line in failed:
            print("  " + line, file=sys.stderr)
        return 1
    return 0
