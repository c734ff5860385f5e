"""Training options that were measured and not adopted are gone: the command line names
them as unknown keys (one line, exit 2), and a model trained before their removal, which
stored them switched off, still loads; one trained with them switched on says which commit
can run it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from fsggan.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from fsggan.cli import train_gan
from fsggan.models import VAE, UNetGenerator

from helpers.checkpoints import write_checkpoint
from helpers.files import REPO

pytestmark = pytest.mark.usefixtures("one_thread")
QUICKSTART = str(REPO / "configs" / "cpu" / "quickstart_gan.yaml")
RETIRED = ["loss.identity_blur=1.0", "loss.identity_views=true", "loss.identity_layers=20",
           "loss.identity_every=2", "generator.fill=structure", "train.frame_jitter=0.05",
           "train.frame_jitter_loss=canonical", "gan.refined_share=0.5"]
TINY_VAE = {"base_channels": 4, "latent_dim": 8, "image_size": 16}


def test_the_documented_command_fails_as_an_unknown_key():
    bin_dir = os.path.dirname(sys.executable)
    out = subprocess.run([os.path.join(bin_dir, "fsggan-train-gan"), "--config", "configs/cpu/quickstart_gan.yaml",
                          "--set", "loss.identity_views=2"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "unknown config key loss.identity_views" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.parametrize("override", RETIRED)
def test_each_removed_option_is_an_unknown_key(override, tmp_path, capsys):
    assert train_gan.main(["--config", QUICKSTART, "--run-dir", str(tmp_path / "r"), "--set", override]) == 2
    err = capsys.readouterr().err
    key = override.split("=")[0]
    assert err.count("\n") == 1 and f"unknown config key {key};" in err, err
    assert not (tmp_path / "r").exists()


def _old_checkpoint(path, **generator):
    """A Stage II checkpoint as fsggan wrote it while the options existed."""
    kwargs = {"base_channels": 4, "fill": "free", "erase": False, **generator}
    gen = UNetGenerator(**{k: v for k, v in kwargs.items() if k not in ("fill", "erase")})
    config = {"generator": kwargs,
              "loss": {"identity": 0.0, "identity_blur": 0.0, "identity_views": False, "identity_layers": 0.0,
                       "identity_every": 1},
              "train": {"frame_jitter": 0.0, "frame_jitter_loss": "framed"},
              "data": {"clean_share": 0.2, "synthesis": {"max_coverage": 0.6, "recolour": 0.0, "retexture": 0.0}}}
    write_checkpoint(path, {"generator": gen}, config, step=3)
    return gen


def test_a_model_trained_before_the_removal_still_loads(tmp_path):
    gen = _old_checkpoint(tmp_path / "old.pt")
    ckpt = load_checkpoint(tmp_path / "old.pt", stage="gan")
    assert "fill" not in ckpt["config"]["generator"] and "frame_jitter" not in ckpt["config"]["train"]
    assert set(ckpt["config"]["loss"]) == {"identity"} and "erase" not in ckpt["config"]["generator"]
    assert ckpt["config"]["data"] == {"clean_share": 0.2, "synthesis": {"max_coverage": 0.6, "recolour": 0.0}}  # back
    loaded = model_from_checkpoint(UNetGenerator, ckpt, "generator")
    assert all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(), loaded.state_dict().values()))


def test_a_model_trained_with_a_removed_option_names_the_commit_that_runs_it(tmp_path):
    _old_checkpoint(tmp_path / "fill.pt", fill="structure")
    with pytest.raises(CheckpointError, match="generator.fill='structure'.*commit 9d7745f"):
        load_checkpoint(tmp_path / "fill.pt", stage="gan")
    _old_checkpoint(tmp_path / "erase.pt", erase=True)
    with pytest.raises(CheckpointError, match="generator.erase=True.*commit 5634362"):
        load_checkpoint(tmp_path / "erase.pt", stage="gan")


def test_a_stage_one_model_with_a_retired_loss_term_off_loads_and_one_with_it_on_names_its_commit(tmp_path):
    vae = VAE(**TINY_VAE)
    write_checkpoint(tmp_path / "off.pt", {"vae": vae}, {"vae": TINY_VAE, "loss": {"kl_weight": 1.0, "hole_weight": 0.0}})
    ckpt = load_checkpoint(tmp_path / "off.pt", stage="vae")
    assert ckpt["config"]["loss"] == {"kl_weight": 1.0}
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(),
                                                 model_from_checkpoint(VAE, ckpt, "vae").state_dict().values()))
    write_checkpoint(tmp_path / "on.pt", {"vae": vae}, {"vae": TINY_VAE, "loss": {"kl_weight": 1.0, "hole_weight": 4.0}})
    with pytest.raises(CheckpointError, match="loss.hole_weight=4.0.*commit 033daf3"):
        load_checkpoint(tmp_path / "on.pt", stage="vae")
    write_checkpoint(tmp_path / "latent.pt", {"vae": vae}, {"vae": TINY_VAE, "loss": {"kl_weight": 1.0, "clean_latent": 10.0}})
    with pytest.raises(CheckpointError, match="loss.clean_latent=10.0.*commit d85b4aa"):
        load_checkpoint(tmp_path / "latent.pt", stage="vae")
