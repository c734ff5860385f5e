"""De-occlusion with trained models: the notebook API (``fsggan-deocclude`` is its command line).

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

Values outside the range of their kind (a tensor in [0, 255], a float array in [0, 255])
raise a ValueError naming the range expected (rounding errors up to 1e-3 are accepted).

Inputs should be face crops like the training data (128x128, aligned as
``fsggan-prepare-data`` does); other sizes are resized to the model's ``image_size``.
For uncropped photos use :func:`crop_faces` first (or ``fsggan-deocclude`` without
``--aligned``), which crops them as the data pipeline does. :func:`deocclude_files`
does files in, files out.

Checkpoints (:mod:`fsggan.checkpoint`; loaded with ``torch.load(weights_only=True)``):
Stage I ``{"models": {"vae": sd}, "config": {"vae": kwargs}}``; Stage II
``{"models": {"generator": sd, ...}, "config": {"generator": kwargs, "vae": kwargs,
"gan": {"vae_checkpoint": path}}}``. A run directory stands for its
``checkpoints/best.pt`` (else ``checkpoints/last.pt``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fsggan.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from fsggan.images import (MIN_FACE_SIZE, ImageError, list_images, pil_to_rgb, read_rgb, save_image, to_float01,
                           to_tensor, to_uint8)

__all__ = ["FSGGAN", "crop_faces", "read_input", "collect_inputs", "deocclude_files", "resolve_device"]


# ---------------------------------------------------------------- checkpoints

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
        if images.dim() not in (3, 4) or images.shape[-3] != 3:
            raise ValueError(f"tensor input must be (3, H, W) or (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        if not images.is_floating_point():  # uint8 / bool / int / complex: not fsggan's convention
            raise ValueError(f"a tensor input must be a float tensor in [-1, 1], got {images.dtype} (from uint8 "
                             "[0, 255] use x.float() / 127.5 - 1)")
        _check_size(tuple(images.shape), "tensor")
        _check_range(images, -1.0, 1.0, "a tensor input", "fsggan's convention; from [0, 1] use x * 2 - 1, "
                     "from [0, 255] x / 127.5 - 1")
        info = {"kind": "tensor", "single": images.dim() == 3, "device": images.device}
        return (images.unsqueeze(0) if images.dim() == 3 else images).float(), info
    if isinstance(images, Image.Image):  # read as the file path reads its file (fsggan.images.pil_to_rgb)
        return to_tensor(images).unsqueeze(0), {"kind": "pil", "single": True}
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            batch, info = _to_batch(list(images))
            info["kind"] = "ndarray_batch"
            return batch, info
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"an image array must be uint8 in [0, 255] or float in [0, 1], got {images.dtype}")
        _check_size(images.shape[:2] if images.ndim >= 2 else images.shape, "array")
        if np.issubdtype(images.dtype, np.floating):
            _check_range(torch.from_numpy(np.asarray(images)), 0.0, 1.0, "a float array",
                         "for [0, 255] pass uint8 arrays")
        return to_tensor(images).unsqueeze(0), {"kind": "ndarray", "single": True, "dtype": images.dtype}
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


def _check_size(shape: tuple, what: str) -> None:
    """ValueError for a batch of no images, or images without pixels."""
    if len(shape) == 4 and shape[0] == 0:
        raise ValueError(f"a {what} batch of 0 images {shape}: nothing to de-occlude")
    if any(int(s) == 0 for s in shape[-2:]):
        raise ValueError(f"a {what} input of shape {shape}: images need at least one pixel (H, W >= 1)")


def _check_range(x: torch.Tensor, lo: float, hi: float, what: str, hint: str, tol: float = 1e-3) -> None:
    """ValueError naming the range when ``x`` holds values outside [lo, hi] (or NaN / inf)."""
    if x.numel() == 0:
        return
    vmin, vmax = float(x.min()), float(x.max())
    if not (lo - tol <= vmin and vmax <= hi + tol):  # also false for NaN
        raise ValueError(f"{what} must hold values in [{lo:g}, {hi:g}] ({hint}); got values in "
                         f"[{vmin:g}, {vmax:g}]")


def _from_batch(out: torch.Tensor, info: dict):
    kind = info["kind"]
    if kind == "tensor":
        out = out.to(info["device"])
        return out[0] if info["single"] else out
    if kind == "pil":
        imgs = [Image.fromarray(to_uint8(o)) for o in out]
        return imgs[0] if info["single"] else imgs
    arrays = [to_uint8(o) if info["dtype"] == np.uint8 else to_float01(o) for o in out]
    if info["single"]:
        return arrays[0]
    return np.stack(arrays) if kind == "ndarray_batch" else arrays


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def resolve_device(device) -> torch.device:
    """"auto" or None -> CUDA when available, else the CPU; "cpu", "cuda", "cuda:N" or a
    torch.device -> that device, when this machine has it. Anything else is a one-line
    ValueError naming the device and the choices."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r}: unknown; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine; use auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r}: fsggan runs on cpu or cuda; use auto, cpu, cuda or cuda:N")
    return dev


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
        self.device = resolve_device(device)
        self.vae = None if vae is None else vae.to(self.device).eval().requires_grad_(False)
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self.uses_structure = getattr(generator, "in_channels", 6) != 3
        if self.uses_structure and self.vae is None:
            raise ValueError("this generator takes the structure image g: a VAE is needed")
        if self.device.type == "cpu":  # oneDNN's fast layout: about 1.3x for G and V on a 2-core CPU
            for net in (self.vae, self.generator):
                if net is not None:
                    net.to(memory_format=torch.channels_last)
        self.image_size = int(image_size or 128)
        self.checkpoints: dict[str, str] = {}
        self.identity_net: str | None = None  # the recogniser of G's identity loss (not a fair judge of G)
        self.data: dict = {}  # the training config's data section (dataset kind, crop): where photos are aligned to

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
        from fsggan.photos.template import data_section

        device = resolve_device(device)  # an unknown or absent device: one line, before any loading
        if gan is None:
            raise ValueError("gan= (the Stage II checkpoint or run directory) is required")
        gckpt = load_checkpoint(gan, stage="gan")
        ema = "generator_ema" in gckpt["models"]  # the EMA weights when trained with them
        generator = model_from_checkpoint(UNetGenerator, gckpt, "generator", state="generator_ema" if ema else None)
        paths = {"gan": gckpt["path"]}
        vae_model, vae_kwargs = None, None
        if vae is not None or getattr(generator, "in_channels", 6) != 3:
            if vae is None and "vae" in gckpt["models"] and isinstance(gckpt["config"].get("vae"), dict):
                vckpt = gckpt
            else:
                vckpt = load_checkpoint(vae if vae is not None else _vae_path_from_gan(gckpt), require="vae")
            vae_kwargs = vckpt["config"]["vae"]
            vae_model = model_from_checkpoint(VAE, vckpt, "vae")
            paths["vae"] = vckpt["path"]
            if vckpt is not gckpt and _differs(vckpt["models"]["vae"], gckpt["models"].get("vae")):
                warnings.warn(f"{vckpt['path']}: this VAE differs from the one stored in {gckpt['path']}, "
                              "which is the one G was trained with (trunk_mode 'tied' updates it); "
                              "leave vae unset to use the stored one", stacklevel=2)
        size = (vae_kwargs or gckpt["config"].get("vae") or {}).get("image_size", 128)
        model = cls(vae_model, generator, device=device, image_size=size)
        model.checkpoints = paths
        loss = gckpt["config"].get("loss") or {}
        model.identity_net = loss.get("identity_net") if loss.get("identity") else None
        model.data = data_section(gckpt)  # the dataset and crop the model was trained on
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
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
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

    def deocclude_photo(self, image, **options):
        """A whole photo (uint8 array or PIL image): every face found, aligned, de-occluded and
        pasted back -> (photo uint8 (H, W, 3), faces); see :mod:`fsggan.photos.deocclude`."""
        from fsggan.photos import deocclude_photo

        return deocclude_photo(self, image, **options)


# ---------------------------------------------------------------- files in, files out

def crop_faces(images: Sequence, image_size: int = 128, crop: str = "lfw") -> list[torch.Tensor]:
    """Crop photos to face crops exactly as the data pipeline does -> (3, S, S) in [-1, 1].

    images: PIL images or uint8 (H, W, 3) arrays.
    crop: a key of ``fsggan.data.DEFAULT_CROPS``: "lfw" (LFW-like framing, 250x250
        reference box scaled to the photo's size), "celeba" (CelebA aligned 178x218),
        "folder" (the largest centred square).
    """
    from fsggan.data import DEFAULT_CROPS
    from fsggan.images import crop_resize

    if crop not in DEFAULT_CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose from {', '.join(DEFAULT_CROPS)}")
    box_of = DEFAULT_CROPS[crop]
    out = []
    for img in images:
        arr = pil_to_rgb(img)[0] if isinstance(img, Image.Image) else np.asarray(img)
        h, w = arr.shape[:2]
        out.append(to_tensor(crop_resize(arr, box_of.box_for(w, h), image_size)))
    return out


def read_input(path: Path, *, aligned: bool, crop: str, image_size: int) -> torch.Tensor:
    """One input file -> (3, S, S) in [-1, 1]: an aligned crop resized, or a photo cropped
    like the data pipeline (raises ImageError naming the file when it is unreadable or its
    shorter side is under MIN_FACE_SIZE = 32 px, the limit of fsggan-prepare-data)."""
    arr, _ = read_rgb(path, min_size=MIN_FACE_SIZE)
    if aligned:
        return _resize(to_tensor(arr).unsqueeze(0), (image_size, image_size))[0]
    return crop_faces([arr], image_size, crop)[0]


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files and folders of images -> the image files; two files that would write
    the same output name (same stem) are an error."""
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


def deocclude_files(
    model: FSGGAN,
    files: Sequence[Path],
    out: str | Path,
    *,
    aligned: bool = False,       # inputs are aligned face crops (only resized); else cropped as the data pipeline
    crop: str = "lfw",           # face box for uncropped photos (see crop_faces)
    structure: bool = False,     # also write g = V(x) to out/structure/
    strip: bool = False,         # also write input | g | output strips to out/strip/
    batch_size: int = 32,
    progress: bool = True,       # tqdm progress bar
) -> list[str]:
    """Write ``out/<stem>.png`` per input file; returns "<file>: <error>" for each input that
    could not be read (the others are written)."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    with tqdm(total=len(files), desc="de-occluding", unit="img", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            xs, ok = [], []
            for f in chunk:
                try:
                    x = read_input(f, aligned=aligned, crop=crop, image_size=model.image_size)
                except Exception as exc:  # report, go on with the rest
                    failed.append(str(exc) if isinstance(exc, ImageError) else f"{f}: {exc}")  # named once
                    continue
                xs.append(x)
                ok.append(f)
            if xs:
                x = torch.stack(xs)
                y, g = model.run(x)
                for i, f in enumerate(ok):
                    save_image(y[i], out / f"{f.stem}.png")
                    if structure and g is not None:
                        save_image(g[i], out / "structure" / f"{f.stem}.png")
                    if strip:
                        parts = [x[i].to(y.device)] + ([g[i]] if g is not None else []) + [y[i]]
                        save_image(torch.cat(parts, dim=-1), out / "strip" / f"{f.stem}.png")
            bar.update(len(chunk))
    return failed
