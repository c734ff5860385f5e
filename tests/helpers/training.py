"""The tiny training setting of the tests: 10 synthetic identities x 4 images at 32 px, two
drawn box occluders, networks of width 4, a few steps on the CPU."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from fsggan.config import load_config
from fsggan.train.config import TrainGANConfig, TrainVAEConfig

VAE_KW = {"base_channels": 4, "latent_dim": 8, "image_size": 32}   # a tiny V's constructor arguments
GEN_KW = {"base_channels": 4}                                       # a tiny G's

TRAIN = ["train.steps=6", "train.batch_size=4", "train.device=cpu", "train.log_every=2", "train.sample_every=3",
         "train.val_every=3", "train.ckpt_every=3", "train.num_samples=2", "train.progress=false",
         "data.num_workers=0", "data.val_images=4", "optim.lr=1.0e-3"]


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run the block on ``n`` torch threads (small tensors: one thread is faster and steadier
    on a shared CPU), then restore the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_data_config(root: Path) -> Path:
    """Write the synthetic faces, two box occluders and a data-preparation config over them
    under ``root``; returns the config's path."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    for i in range(10):
        base = rng.uniform(0.2, 0.8, size=3)
        for j in range(4):
            img = np.stack([base[c] + 0.3 * (xx - 0.5) * (c - 1) + 0.2 * (yy - 0.5) for c in range(3)], -1)
            img += 0.05 * rng.standard_normal(img.shape)
            (root / "faces" / f"id{i:02d}").mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / "faces" / f"id{i:02d}" / f"{j}.png")
    (root / "occ").mkdir()
    for k, colour in enumerate([(250, 20, 20), (20, 20, 250)]):
        rgba = np.zeros((16, 16, 4), np.uint8)
        rgba[3:13, 2:14] = (*colour, 255)
        Image.fromarray(rgba, "RGBA").save(root / "occ" / f"box{k}.png")
    cfg = {
        "name": "tiny",
        "dataset": {"kind": "folder", "root": str(root / "faces"), "image_size": 32, "landmarks": "template"},
        "split": {"seed": 0, "test_fraction": 0.2, "val_fraction": 0.25},
        "occluders": {"seen": [{"path": str(root / "occ")}], "new": [{"path": str(root / "occ")}],
                      "canvas_size": 32, "supersample": 1},
        "synthesis": {"min_coverage": 0.05, "max_coverage": 0.5},
    }
    path = root / "tiny_data.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def vae_config(data_config: Path, run_dir: Path, *extra: str) -> TrainVAEConfig:
    """A tiny Stage I config over ``data_config`` writing to ``run_dir``; ``extra`` overrides."""
    return load_config(TrainVAEConfig, None, [
        "vae.base_channels=4", "vae.latent_dim=8", "vae.image_size=32", f"data.config={data_config}",
        f"train.run_dir={run_dir}", *TRAIN, *extra])


def gan_config(data_config: Path, run_dir: Path, vae_ckpt: Path, *extra: str) -> TrainGANConfig:
    """A tiny Stage II config (no identity term) on the Stage I checkpoint ``vae_ckpt``."""
    return load_config(TrainGANConfig, None, [
        f"gan.vae_checkpoint={vae_ckpt}", "generator.base_channels=4", "discriminator.head_channels=4",
        "patch_discriminator.base_channels=4", "loss.identity=0", f"data.config={data_config}",
        f"train.run_dir={run_dir}", *TRAIN, *extra])


def same_state(a, b) -> bool:
    """Bitwise equality of nested dicts/lists of tensors and numbers."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    return a == b


def fixed_batch(n: int = 4, size: int = 32):
    """A fixed (occluded, clean) batch in [-1, 1]: random faces with a bright block."""
    g = torch.Generator().manual_seed(0)
    y = torch.rand(n, 3, size, size, generator=g) * 1.6 - 0.8
    x = y.clone()
    x[:, :, 8:20, 8:24] = 0.9  # an "occluder"
    return x, y
