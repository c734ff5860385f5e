"""De-occlusion with trained models: the notebook API (``fsggan-deocclude`` is its command line).

    from fsggan import FSGGAN
    m = FSGGAN.from_checkpoints(vae="runs/vae", gan="runs/gan")   # run dirs or .pt files
    m = FSGGAN.from_pretrained("fsggan-lfw128")   # a model folder (fsggan-export; docs/model_file.md)
    out = m.deocclude(images)        # y_hat = G(x, V(x)) (structure_passes: fsggan.models.deoccluder)
    out = m.deocclude(images, mask=masks)   # fill the user's masks (white = occluded), see deocclude
    g = m.structure(images)          # g = V(x), the blurry facial structure

``images`` may be (the output has the same kind):

* a PIL image or a list of them -> PIL image(s), RGB, ``image_size`` x ``image_size``;
* a numpy array (H, W, 3) or a batch (B, H, W, 3), or a list of arrays: uint8 in
  [0, 255] -> uint8; float in [0, 1] -> float32 in [0, 1];
* a torch tensor (3, H, W) or (B, 3, H, W), float in [-1, 1] (fsggan's convention) ->
  a tensor of the same rank in [-1, 1], on the input's device.

Values outside the range of their kind (a tensor in [0, 255], a float array in [0, 255])
raise a ValueError naming the range expected (rounding errors up to 1e-3 are accepted).

Inputs are face crops like the training data, at the model's ``image_size`` (e.g. 128x128,
aligned as ``fsggan-prepare-data`` cuts them). Any other size is a ValueError saying so, never
a silent resize: a whole photo squeezed into a face crop would come back as a squashed face.
Give whole photos to :meth:`FSGGAN.deocclude_photo`; resize crops of another size first.
Whole photos (faces found, aligned, de-occluded and pasted back): :meth:`FSGGAN.deocclude_photo`
and :mod:`fsggan.photos`; crop files in, crop files out: :mod:`fsggan.crops`.

Checkpoints (:mod:`fsggan.checkpoint`; loaded with ``torch.load(weights_only=True)``):
Stage I ``{"models": {"vae": sd}, "config": {"vae": kwargs}}``; Stage II
``{"models": {"generator": sd, ...}, "config": {"generator": kwargs, "vae": kwargs,
"gan": {"vae_checkpoint": path}}}``. A run directory stands for its
``checkpoints/best.pt`` (else ``checkpoints/last.pt``).
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
from torch import nn

from fsggan.checkpoint import load_checkpoint, model_from_checkpoint, state_dicts_differ, vae_path_of_gan
from fsggan.device import resolve_device
from fsggan.images import from_batch, resize_batch, to_batch
from fsggan.models.deoccluder import check_structure_passes, deocclude

__all__ = ["FSGGAN", "AMP_DTYPES", "amp_dtype"]

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``amp`` (None, "bf16", "fp16") on ``device``, or a one-line
    ValueError: float16 autocast is for GPUs (cuda, mps); the CPU gets bf16."""
    if amp in (None, "none", "fp32"):
        return None
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp {amp!r}: unknown; use bf16 or fp16 (or leave it unset for float32)")
    if amp == "fp16" and device.type == "cpu":
        raise ValueError("amp 'fp16': float16 autocast needs a GPU (cuda or mps); on the CPU use bf16")
    return AMP_DTYPES[amp]


class FSGGAN:
    """Trained FSG-GAN for inference: Stage I VAE ``V`` and Stage II generator ``G``.

    vae: the VAE (``None`` only for a generator trained without structure input,
        ``in_channels == 3``, the "w/o VAE" ablation).
    generator: the U-Net generator; ``G(x, V(x))``.
    device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", or a torch.device.
    image_size: the size the models work at (default: the VAE's, else 128).
    amp: None (float32), "bf16" (autocast, CPU or GPU) or "fp16" (autocast, GPU only).
    structure_passes: how often V sees the face, the first time as given, then as G's output
        (:mod:`fsggan.models.deoccluder`); 1 = the paper. ``from_checkpoints`` and
        ``from_pretrained`` take the value the model was trained with unless one is given.
    """

    def __init__(self, vae: nn.Module | None, generator: nn.Module, device="auto", image_size: int | None = None,
                 amp: str | None = None, structure_passes: int = 1):
        self.device = resolve_device(device)
        self.amp = amp_dtype(amp, self.device)  # checked before the weights move
        self.structure_passes = check_structure_passes(structure_passes)
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
        self.kwargs: dict = {}  # {"generator": ..., "vae": ...}: the networks' constructor arguments (fsggan-export)
        self.provenance: dict = {}  # the training step and config the weights come from (fsggan-export)

    @classmethod
    def from_checkpoints(cls, vae: str | Path | None = None, gan: str | Path | None = None,
                         device="auto", amp: str | None = None, structure_passes: int | None = None) -> FSGGAN:
        """Build from a Stage II checkpoint (``gan``) and a Stage I checkpoint (``vae``).

        Each is a ``.pt`` file or a run directory (``checkpoints/best.pt`` preferred).
        ``vae=None`` (recommended): the VAE saved inside the Stage II checkpoint - the V
        that G was trained with, which differs from Stage I's after ``trunk_mode: tied`` -
        else the file its ``config["gan"]["vae_checkpoint"]`` names. An explicit ``vae``
        that differs from the stored one gives a warning. ``amp``: see the class;
        ``structure_passes``: the class's, default the Stage II config's ``gan.structure_passes``.
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
                vckpt = load_checkpoint(vae if vae is not None else vae_path_of_gan(gckpt), require="vae")
            vae_kwargs = vckpt["config"]["vae"]
            vae_model = model_from_checkpoint(VAE, vckpt, "vae")
            paths["vae"] = vckpt["path"]
            if vckpt is not gckpt and state_dicts_differ(vckpt["models"]["vae"], gckpt["models"].get("vae")):
                warnings.warn(f"{vckpt['path']}: this VAE differs from the one stored in {gckpt['path']}, "
                              "which is the one G was trained with (trunk_mode 'tied' updates it); "
                              "leave vae unset to use the stored one", stacklevel=2)
        size = (vae_kwargs or gckpt["config"].get("vae") or {}).get("image_size", 128)
        if structure_passes is None:
            structure_passes = (gckpt["config"].get("gan") or {}).get("structure_passes", 1)
        model = cls(vae_model, generator, device=device, image_size=size, amp=amp, structure_passes=structure_passes)
        model.checkpoints = paths
        loss = gckpt["config"].get("loss") or {}
        model.identity_net = loss.get("identity_net") if loss.get("identity") else None
        model.data = data_section(gckpt)  # the dataset and crop the model was trained on
        model.kwargs = {"generator": dict(gckpt["config"]["generator"]), "vae": vae_kwargs}
        model.provenance = {"step": gckpt.get("step"), "ema": ema, "config": gckpt["config"],
                            "data_yaml": gckpt.get("data_yaml")}
        return model

    @classmethod
    def from_pretrained(cls, folder: str | Path, device="auto", amp: str | None = None,
                        structure_passes: int | None = None) -> FSGGAN:
        """Build from a model folder that ``fsggan-export`` wrote (safetensors weights and
        model.json; no training state, no pickle). Every weight file is checked against the
        sha256 model.json records; a missing or altered file is a one-line
        :class:`fsggan.export.ModelFolderError` naming it. Outputs equal those of the run the
        folder was exported from, bit for bit on the CPU. ``structure_passes``: the class's,
        default model.json's."""
        from fsggan.export import load_model_folder

        device = resolve_device(device)
        vae, generator, meta = load_model_folder(folder)
        if structure_passes is None:
            structure_passes = meta.get("structure_passes", 1)
        model = cls(vae, generator, device=device, image_size=meta["image_size"], amp=amp,
                    structure_passes=structure_passes)
        model.checkpoints = {"model": str(Path(folder))}
        model.identity_net = meta.get("identity_net")
        model.data = dict(meta.get("data") or {})
        model.kwargs = dict(meta["networks"])
        return model

    # -- tensors in, tensors out (B, 3, S, S) in [-1, 1] on self.device
    @torch.inference_mode()
    def run(self, x: torch.Tensor, mask: torch.Tensor | None = None,
            mask_mode: str = "replace") -> tuple[torch.Tensor, torch.Tensor | None]:
        """One batch (B, 3, H, W) in [-1, 1] -> (y_hat, g) at ``image_size`` on ``self.device``
        (g: the structure G filled from, None for a generator without structure input), float32
        (also under ``amp``).

        ``mask`` (B, 1, H, W) in [0, 1], 1 = occluded: the region G fills
        (:meth:`fsggan.models.UNetGenerator.forward`, ``fill_mask``; ``mask_mode`` "replace"
        or "union"); resized with x when x is."""
        size = (self.image_size, self.image_size)
        x = resize_batch(x.to(self.device, torch.float32), size)
        fill = None if mask is None else resize_batch(mask.to(self.device, torch.float32), size).clamp(0.0, 1.0)
        cast = (torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None
                else contextlib.nullcontext())
        with cast:
            y, g, _ = deocclude(self.vae, self.generator, x, structure_passes=self.structure_passes,
                                fill_mask=fill, mask_mode=mask_mode)
        return y.float(), (None if g is None else g.float())

    def _apply(self, images, which: str, batch_size: int, mask=None, mask_mode: str = "replace"):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        _check_crop_size(images, self.image_size)
        x, info = to_batch(images)
        if mask is not None:
            from fsggan.masks import to_mask_batch

            mask = to_mask_batch(mask, (x.shape[0], *x.shape[-2:]))
        outs = []
        for start in range(0, x.shape[0], batch_size):
            part = None if mask is None else mask[start:start + batch_size]
            y, g = self.run(x[start:start + batch_size], part, mask_mode)
            if which == "structure":
                if g is None:
                    raise ValueError("this model has no structure image (generator trained without VAE)")
                y = g
            outs.append(y.float().cpu() if info["kind"] != "tensor" else y)
        return from_batch(torch.cat(outs), info)

    def deocclude(self, images, batch_size: int = 32, mask=None, mask_mode: str = "replace"):
        """De-occluded faces ``G(x, V(x))``, in the input's kind (see the module docstring).

        ``mask``: the user's occlusion masks, white / 1 = occluded, at the images' size (one for
        all or one per image; :func:`fsggan.masks.to_mask_batch`). ``mask_mode="replace"``: G
        fills exactly the mask and every pixel outside it comes back unchanged; ``"union"``: G
        fills the mask and what its own map finds occluded."""
        return self._apply(images, "output", batch_size, mask, mask_mode)

    def structure(self, images, batch_size: int = 32):
        """Facial structure images ``g = V(x)``, in the input's kind (with ``structure_passes``
        above 1, the structure of the last pass: V of the pass before's output)."""
        return self._apply(images, "structure", batch_size)

    def deocclude_photo(self, image, mask=None, mask_mode: str = "replace", **options):
        """A whole photo (uint8 array or PIL image): every face found, aligned, de-occluded and
        pasted back -> (photo uint8 (H, W, 3), faces); see :mod:`fsggan.photos.deocclude`.
        ``mask``: the user's mask of the photo (white = occluded), warped with each face."""
        from fsggan.photos import deocclude_photo

        if mask is not None:
            options["masks"] = [mask]
        return deocclude_photo(self, image, mask_mode=mask_mode, **options)


def _image_sizes(images) -> set[tuple[int, int]]:
    """(height, width) of every image of a notebook-API input (a PIL image, an array (H, W, C)
    or a batch (B, H, W, C), a tensor (..., H, W), or a list of them)."""
    from PIL import Image

    if isinstance(images, Image.Image):
        return {(images.height, images.width)}
    if isinstance(images, torch.Tensor):
        return {tuple(int(v) for v in images.shape[-2:])} if images.dim() >= 2 else set()
    if isinstance(images, (list, tuple)):
        return set().union(*(_image_sizes(im) for im in images)) if images else set()
    shape = getattr(images, "shape", ())
    if len(shape) in (3, 4):
        return {tuple(int(v) for v in shape[-3:-1])}
    return {tuple(int(v) for v in shape[:2])} if len(shape) == 2 else set()


def _check_crop_size(images, size: int) -> None:
    """ValueError when an input is not a ``size`` x ``size`` face crop (see the module docstring)."""
    other = sorted(s for s in _image_sizes(images) if s != (size, size) and 0 not in s)
    if other:
        h, w = other[0]
        raise ValueError(f"deocclude takes face crops of the model's size, {size}x{size}; got {w}x{h}: for a whole "
                         f"photo use deocclude_photo (faces found, aligned, pasted back), or resize aligned crops "
                         f"to {size}x{size}")

