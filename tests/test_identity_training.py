"""Identity options beyond the paper, off in the paper configs: the identity-weight ramp;
and validation's judge cosines (the training recogniser next to the independent one)."""

from __future__ import annotations

import json

import pytest
import torch

from fsggan.config import load_config
from fsggan.losses import ramp
from fsggan.train import gan
from fsggan.train.config import TrainGANConfig

from helpers.files import SHARED, need
from helpers.training import gan_config

pytestmark = pytest.mark.usefixtures("one_thread")
MOBILEFACENET = SHARED / "weights" / "mobilefacenet_casia_068.ckpt"


def test_identity_ramp():
    assert [ramp(s, (0, 0)) for s in (0, 5)] == [1.0, 1.0]
    assert [ramp(s, (10, 20)) for s in (0, 9, 10, 15, 20, 30)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]


def test_paper_configs_keep_identity_options_off():
    for path in ("configs/gan.yaml", "configs/lfw_gan.yaml"):
        loss = load_config(TrainGANConfig, path, []).loss
        assert tuple(loss.identity_ramp) == (0, 0)


def test_train_gan_logs_training_and_independent_judge_cosines(data_config, stage1, tmp_path):
    """With the identity loss on MobileFaceNet and a ramp: validation logs the mean
    output-to-clean cosine of MobileFaceNet (train_) and of dlib's recogniser (judge_)."""
    need(MOBILEFACENET, "pretrained MobileFaceNet weights")
    from fsggan.models.identity.dlib_resnet import packaged_weights

    if packaged_weights() is None:
        pytest.skip("face-recognition-models is not installed (a dependency of fsggan)")
    run = tmp_path / "id"
    cfg = gan_config(data_config, run, stage1, "loss.identity=50.0", "loss.identity_net=mobilefacenet",
                     f"loss.identity_weights={MOBILEFACENET}",
                     "loss.identity_ramp=[1,3]", "train.steps=4", "train.log_every=1", "train.val_every=4")
    gan.train_gan(**vars(cfg))
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    ident = [s["g/identity"] for s in stats if "g/identity" in s]
    # ramp [1, 3] over 0-based steps 0..3: weights 0, 0, 0.5, 1 - F is skipped while the weight is 0
    assert len(ident) == 2 and all(0.0 <= v <= 2.0 for v in ident)
    val = [s for s in stats if "val/output_cos_judge_dlib" in s]
    assert val, "validation did not log the independent judge"
    for key in ("val/output_cos_judge_dlib", "val/input_cos_judge_dlib", "val/output_cos_train_mobilefacenet"):
        assert -1.0 <= val[-1][key] <= 1.0, key


def test_init_generator_starts_g_from_another_runs_g_and_checks_its_shape(data_config, stage1, tmp_path):
    """gan.init_generator (the 128 px recipe starts G from the 64 px run's): G begins as the
    source's EMA weights; a G built differently is a one-line error before anything runs."""
    from fsggan.checkpoint import CheckpointError, load_checkpoint

    src = tmp_path / "src"
    gan.train_gan(**vars(gan_config(data_config, src, stage1, "train.steps=2", "train.ema=0.5")))
    dst = tmp_path / "dst"
    gan.train_gan(**vars(gan_config(data_config, dst, stage1, "train.steps=1", "optim.lr=1.0e-9",
                                    f"gan.init_generator={src / 'checkpoints' / 'last.pt'}")))
    a = load_checkpoint(src / "checkpoints" / "last.pt")["models"]["generator_ema"]
    b = load_checkpoint(dst / "checkpoints" / "last.pt")["models"]["generator"]
    weights = [k for k in a if "running" not in k and "num_batches" not in k]   # BN statistics move in train mode
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in weights)          # lr 1e-9: G is still the source's
    gan.train_gan(**vars(gan_config(data_config, tmp_path / "bilinear", stage1, "train.steps=1",   # no weights:
                                    "generator.upsample=bilinear",                                # allowed to differ
                                    f"gan.init_generator={src / 'checkpoints' / 'last.pt'}")))
    with pytest.raises(CheckpointError, match="gan.init_generator"):
        gan.train_gan(**vars(gan_config(data_config, tmp_path / "bad", stage1, "train.steps=1",
                                        "generator.base_channels=8",
                                        f"gan.init_generator={src / 'checkpoints' / 'last.pt'}")))


def test_identity_ramp_values_are_checked_when_the_config_loads():
    from fsggan.config import ConfigError

    with pytest.raises(ConfigError, match="identity_ramp"):
        load_config(TrainGANConfig, "configs/cpu/quickstart_gan.yaml", ["loss.identity_ramp=[300,100]"])
    assert tuple(load_config(TrainGANConfig, "configs/cpu/quickstart_gan.yaml",
                             ["loss.identity_ramp=[100,300]"]).loss.identity_ramp) == (100, 300)


def test_the_identity_term_needs_the_identity_network():
    from fsggan.losses import GeneratorLoss, LossWeights

    with pytest.raises(ValueError, match="identity network"):
        GeneratorLoss(LossWeights(identity=1.0))
    GeneratorLoss(LossWeights(identity=0.0))
