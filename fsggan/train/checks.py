"""The values each training config section can take, checked when a config loads.

:mod:`fsggan.train.config`'s dataclasses call these from ``__post_init__``, so a value the
models, the losses or the loop cannot take is a one-line :class:`fsggan.config.ConfigError`
naming the key - when the YAML is read, before any run directory, file or step - and not
a traceback from inside a constructor or the first step. Messages start with the key
(``image_size=60: ...``); :func:`fsggan.config.from_dict` puts the section in front.

* :func:`check_section`: one section alone (ranges, the values a constructor accepts);
* :func:`check_run`: the options of a whole run that depend on each other (G's input is
  the RGB face and V's structure image; ``loss.map_bce`` needs the blend head; PatchGAN
  depth against the image size, ...).
"""

from __future__ import annotations

import math

__all__ = ["check_section", "check_run", "RGB"]

RGB = 3             # training faces: RGB
D_LEVELS = (1, 2, 3, 4)


def _at_least(section, least: int, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value < least:
            raise ValueError(f"{name}={value}: must be >= {least}")


def _finite(section, names, least: float = 0.0) -> None:
    for name in names:
        value = getattr(section, name)
        if not (math.isfinite(value) and value >= least):
            raise ValueError(f"{name}={value}: must be a finite number >= {least:g}")


def check_section(section) -> None:
    """Raise ValueError (starting with the key) when a section holds a value its model,
    loss or loop cannot take."""
    kind = type(section).__name__
    if kind == "VAEKwargs":
        _at_least(section, 1, "in_channels", "base_channels", "latent_dim")
        if section.image_size < 16 or section.image_size % 16:
            raise ValueError(f"image_size={section.image_size}: V halves the image 4 times, so it must be a "
                             f"multiple of 16 (e.g. 32, 64, 128)")
    elif kind == "GeneratorKwargs":
        _at_least(section, 1, "in_channels", "out_channels", "base_channels")
        rates = tuple(section.hdc_rates)
        if section.hdc and (not rates or min(rates) < 1):
            raise ValueError(f"hdc_rates={list(rates)}: give one or more dilation rates >= 1 (the paper's "
                             f"[1, 2, 5]), or hdc: false")
        if section.output == "blend" and section.in_channels < section.out_channels:
            raise ValueError(f"output=blend: needs the face x among G's inputs (in_channels "
                             f"{section.in_channels} >= out_channels {section.out_channels})")
        if section.erase and section.output != "blend":
            raise ValueError(f"erase=true: erases the blend head's predicted map; needs output: blend "
                             f"(got {section.output})")
    elif kind == "MultiRFKwargs":
        _at_least(section, 1, "head_channels")
        _finite(section, ("lam",))
        levels = tuple(section.levels)
        if not levels or levels != tuple(sorted(set(levels))) or not set(levels) <= set(D_LEVELS):
            raise ValueError(f"levels={list(levels)}: give distinct levels from {list(D_LEVELS)} in increasing "
                             f"order (1-3: patch heads, 4: the whole-face head)")
    elif kind in ("GlobalKwargs", "PatchKwargs"):
        _at_least(section, 1, "in_channels", "base_channels", "n_layers")
    elif kind == "VAELossSection":
        _finite(section, ("kl_weight",))
    elif kind == "GANLossSection":
        _finite(section, ("pixel", "identity", "adversarial", "tv", "pixel_hole", "map_bce"))
        start, end = section.identity_ramp
        if not 0 <= start <= end:
            raise ValueError(f"identity_ramp={list(section.identity_ramp)}: give [start, end] steps with "
                             f"0 <= start <= end ([0, 0]: the full weight from the first step)")
    elif kind == "TrainDataSection":
        _at_least(section, 0, "num_workers")
        _at_least(section, 1, "val_images")
        if section.max_images is not None:
            _at_least(section, 1, "max_images")
        if not 0.0 <= section.clean_share < 1.0:
            raise ValueError(f"clean_share={section.clean_share}: give a share in [0, 1) of the training faces "
                             "to leave un-occluded (0: every face occluded, the paper)")
    elif kind == "OptimSection":
        if not all(0.0 <= b < 1.0 for b in section.betas):
            raise ValueError(f"betas={list(section.betas)}: Adam's betas must be in [0, 1)")
        _finite(section, ("weight_decay",))


def check_run(cfg) -> None:
    """Raise ValueError (starting with the key) for options of a whole run that do not go
    together. ``cfg``: a TrainVAEConfig or TrainGANConfig."""
    if cfg.vae.in_channels != RGB:
        raise ValueError(f"vae.in_channels={cfg.vae.in_channels}: the training faces are RGB; use {RGB}")
    if not hasattr(cfg, "generator"):
        return
    g, size = cfg.generator, cfg.vae.image_size
    if g.in_channels != 2 * RGB:
        raise ValueError(f"generator.in_channels={g.in_channels}: Stage II feeds G the face x and V's structure "
                         f"image g (3 + 3 channels); use 6")
    if g.out_channels != RGB:
        raise ValueError(f"generator.out_channels={g.out_channels}: G draws an RGB face; use 3")
    if cfg.loss.map_bce and g.output != "blend":
        raise ValueError(f"loss.map_bce={cfg.loss.map_bce:g}: this term trains the blend head's occlusion map; set "
                         f"generator.output: blend, or loss.map_bce: 0")
    d_arch = cfg.gan.d_arch
    if d_arch in ("global", "patch"):
        d = cfg.global_discriminator if d_arch == "global" else cfg.patch_discriminator
        key = "global_discriminator" if d_arch == "global" else "patch_discriminator"
        if d.in_channels != RGB:
            raise ValueError(f"{key}.in_channels={d.in_channels}: D judges RGB faces; use {RGB}")
        if d_arch == "patch" and size // 2 ** d.n_layers - 2 < 1:  # n_layers halvings, then two 4x4 convs
            most = max(n for n in range(1, 12) if size // 2 ** n - 2 >= 1)
            raise ValueError(f"patch_discriminator.n_layers={d.n_layers}: too deep for {size}x{size} faces "
                             f"(vae.image_size), nothing is left to judge; use at most {most}")
