"""Fixtures the test modules share, and the ``cuda`` marker: tests marked ``cuda`` need a
CUDA device and skip, with one reason, where torch sees none (``pytest -m cuda`` selects them;
scripts/gpu_check.py runs them). Helpers that are not fixtures live in tests/helpers/.

- ``one_thread``: torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``);
- ``data_config``: a data-preparation config over synthetic faces (helpers.training), built once per test run;
- ``stage1``: a trained Stage I run of 3 steps (its best.pt), built once per test run;
- ``stage2``: a trained Stage II run of 2 steps on ``stage1`` (its folder), built once per test run;
- ``runs``: untrained tiny Stage I and Stage II run folders, fresh for each test.

The ones built once are read-only: a test that changes a run copies it first.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fsggan.models import VAE, UNetGenerator
from helpers.checkpoints import write_checkpoint
from helpers.training import GEN_KW, VAE_KW, gan_config, torch_threads, vae_config, write_data_config


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one torch thread is faster and steadier on a shared CPU. Module scope,
    so that module-scoped fixtures run under it too."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def data_config(tmp_path_factory) -> Path:
    """A data-preparation config over 10 synthetic identities x 4 images and 2 occluders."""
    return write_data_config(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def stage1(data_config, tmp_path_factory) -> Path:
    """A Stage I run of 3 steps; returns its best checkpoint."""
    from fsggan.train import vae

    run = tmp_path_factory.mktemp("stage1") / "run"
    with torch_threads(1):
        result = vae.train_vae(**vars(vae_config(data_config, run, "train.steps=3")))
    assert result["step"] == 3
    return run / "checkpoints" / "best.pt"


@pytest.fixture(scope="session")
def stage2(data_config, stage1, tmp_path_factory) -> Path:
    """A finished Stage II run of 2 steps on ``stage1``; returns its folder (checkpoints/last.pt
    is a Stage II training checkpoint)."""
    from fsggan.train import gan

    run = tmp_path_factory.mktemp("stage2") / "run"
    with torch_threads(1):
        gan.train_gan(**vars(gan_config(data_config, run, stage1, "train.steps=2")))
    return run


@pytest.fixture
def runs(tmp_path) -> dict:
    """Untrained tiny Stage I and Stage II run folders (32 px, widths 4) in the training
    checkpoint format, and their networks: {"vae", "gen", "vae_run", "gan_run"}."""
    torch.manual_seed(0)
    vae, gen = VAE(**VAE_KW), UNetGenerator(**GEN_KW)
    vae_run, gan_run = tmp_path / "vae_run", tmp_path / "gan_run"
    vae_ckpt = write_checkpoint(vae_run / "checkpoints" / "best.pt", {"vae": vae}, {"vae": VAE_KW})
    write_checkpoint(gan_run / "checkpoints" / "last.pt", {"generator": gen},
                     {"generator": GEN_KW, "vae": VAE_KW, "gan": {"vae_checkpoint": str(vae_ckpt)}})
    return {"vae": vae.eval(), "gen": gen.eval(), "vae_run": vae_run, "gan_run": gan_run}


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
