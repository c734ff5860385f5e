"""Identity options beyond the paper, off in the paper configs: the identity term on
random views of both faces, the identity-weight ramp, feature matching on F's layers, the
identity terms on every k-th step; and validation's judge cosines (the training recogniser
next to the independent one)."""

from __future__ import annotations

import json

import pytest
import torch

from fsggan.config import load_config
from fsggan.losses import ramp, random_views
from fsggan.train import gan
from fsggan.train.config import TrainGANConfig

from conftest import SHARED, need
from test_train import data_config, gan_config, stage1, vae_config  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")
MOBILEFACENET = SHARED / "weights" / "mobilefacenet_casia_068.ckpt"


def test_random_views_transform_every_batch_alike_and_pass_gradients():
    torch.manual_seed(0)
    a = (torch.rand(4, 3, 32, 32) * 2 - 1).requires_grad_(True)
    b = a.detach().clone()
    va, vb = random_views(a, b, generator=torch.Generator().manual_seed(1))
    assert va.shape == a.shape and torch.allclose(va, vb)          # the same view of equal images
    assert not torch.allclose(va, a)                                 # ... and not the identity map
    va.square().mean().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    # seeded: the same generator state gives the same view
    again, _ = random_views(a.detach(), b, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, va.detach())


def test_random_views_without_jitter_are_the_image_or_its_mirror():
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    (v,) = random_views(x, shift=0.0, scale=(1.0, 1.0), blur=0.0, down=(1.0, 1.0),
                        generator=torch.Generator().manual_seed(0))
    for i in range(len(x)):
        assert torch.allclose(v[i], x[i], atol=1e-5) or torch.allclose(v[i], x[i].flip(-1), atol=1e-5)


def test_identity_ramp():
    assert [ramp(s, (0, 0)) for s in (0, 5)] == [1.0, 1.0]
    assert [ramp(s, (10, 20)) for s in (0, 9, 10, 15, 20, 30)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]


def test_paper_configs_keep_identity_options_off():
    for path in ("configs/gan.yaml", "configs/lfw_gan.yaml"):
        loss = load_config(TrainGANConfig, path, []).loss
        assert not loss.identity_views and tuple(loss.identity_ramp) == (0, 0) and loss.identity_blur == 0
        assert loss.identity_layers == 0 and loss.identity_every == 1


def test_train_gan_logs_training_and_independent_judge_cosines(data_config, stage1, tmp_path):  # noqa: F811
    """With the identity loss on MobileFaceNet, views and a ramp: validation logs the mean
    output-to-clean cosine of MobileFaceNet (train_) and of dlib's recogniser (judge_)."""
    need(MOBILEFACENET, "pretrained MobileFaceNet weights")
    from fsggan.models.identity.dlib_resnet import packaged_weights

    if packaged_weights() is None:
        pytest.skip("face-recognition-models is not installed (a dependency of fsggan)")
    run = tmp_path / "id"
    cfg = gan_config(data_config, run, stage1, "loss.identity=50.0", "loss.identity_net=mobilefacenet",
                     f"loss.identity_weights={MOBILEFACENET}", "loss.identity_views=true",
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


def test_init_generator_starts_g_from_another_runs_g_and_checks_its_shape(data_config, stage1, tmp_path):  # noqa: F811
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


def test_feature_matching_on_f_layers_is_zero_for_the_same_face_and_has_gradients():
    """loss.identity_layers: F's intermediate maps come from the same pass as its embedding;
    the distance is 0 for equal faces, positive and differentiable for different ones."""
    need(MOBILEFACENET, "pretrained MobileFaceNet weights")
    from fsggan.losses import GeneratorLoss, LossWeights, feature_match_loss
    from fsggan.models.identity import build_embedder

    net = build_embedder("mobilefacenet", MOBILEFACENET)
    torch.manual_seed(0)
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    emb, maps = net.embed_with_maps(y, net.feature_layers)
    assert torch.allclose(emb, net(y), atol=1e-6) and len(maps) == len(net.feature_layers) == 4
    assert [m.shape[-2:] for m in maps] == [(56, 48), (28, 24), (14, 12), (7, 6)]
    assert feature_match_loss(maps, maps).item() < 1e-6
    fake = (y + 0.3 * torch.randn_like(y)).clamp(-1, 1).requires_grad_(True)
    terms, total = GeneratorLoss(LossWeights(pixel=0.0, identity=1.0, adversarial=0.0, identity_layers=1.0), net)(
        fake=fake, occ_map=None, y=y)
    assert set(terms) == {"pixel", "identity", "identity_layers"} and 0.0 < terms["identity_layers"].item() <= 4.0
    total.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_feature_matching_needs_a_network_that_names_its_layers():
    from fsggan.losses import GeneratorLoss, LossWeights
    from fsggan.models.identity.base import FaceEmbedder

    with pytest.raises(ValueError, match="feature_layers"):
        GeneratorLoss(LossWeights(identity_layers=1.0), FaceEmbedder(torch.nn.Identity(), dim=3))
    with pytest.raises(ValueError, match="identity network"):
        GeneratorLoss(LossWeights(identity=1.0))


def test_identity_every_k_runs_f_on_one_step_in_k_with_k_times_the_weight():
    from fsggan.losses import GeneratorLoss, LossWeights
    from fsggan.models.identity.base import FaceEmbedder

    class Flat(FaceEmbedder):   # a stand-in F: the flattened image, normalised
        def preprocess(self, x):
            return x.flatten(1)

    torch.manual_seed(0)
    y, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    loss = GeneratorLoss(LossWeights(pixel=0.0, identity=1.0, adversarial=0.0, identity_every=2),
                         Flat(torch.nn.Identity(), dim=192))
    on, total_on = loss(fake=fake, occ_map=None, y=y, step=4)
    off, total_off = loss(fake=fake, occ_map=None, y=y, step=5)
    assert "identity" in on and "identity" not in off
    assert torch.isclose(total_on, 2 * on["identity"]) and total_off.item() == 0.0
    from fsggan.config import ConfigError

    with pytest.raises(ConfigError, match="identity_every"):
        load_config(TrainGANConfig, "configs/cpu/quickstart_gan.yaml", ["loss.identity_every=0"])
