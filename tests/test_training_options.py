"""Options beyond the paper, all off in the paper configs: the blended output
head, the occluded-region pixel loss and the mask loss, EMA of G, the learning-rate
schedule. Shapes, gradients, exact pass-through, and a short training run that uses them."""

from __future__ import annotations

import math

import pytest
import torch

from fsggan.config import load_config
from fsggan.losses import GeneratorLoss, LossWeights, map_bce_loss, masked_pixel_loss
from fsggan.models import MultiRFDiscriminator, UNetGenerator, VAE
from fsggan.train import gan
from fsggan.train.config import TrainGANConfig
from fsggan.train.state import EMA
from fsggan.train.runtime import lr_factor

from helpers.training import fixed_batch, gan_config

pytestmark = pytest.mark.usefixtures("one_thread")


def blend_gen(**kw) -> UNetGenerator:
    torch.manual_seed(0)
    return UNetGenerator(base_channels=4, output="blend", **kw)


def set_mask_logit(gen: UNetGenerator, value: float) -> None:
    """Make the mask channel a constant logit: weights 0, bias ``value``."""
    with torch.no_grad():
        gen.out.weight[-1].zero_()
        gen.out.bias[-1].fill_(value)


def test_blend_passes_visible_pixels_through_exactly_when_mask_is_zero():
    gen = blend_gen().eval()
    x, g = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    set_mask_logit(gen, -200.0)          # sigmoid(-200) is exactly 0 in float32
    out, m = gen(x, g, return_mask=True)
    assert m.shape == (2, 1, 32, 32) and torch.all(m == 0)
    assert torch.equal(out, x)
    set_mask_logit(gen, 200.0)           # m = 1: the synthesised face everywhere
    out, m = gen(x, g, return_mask=True)
    assert torch.all(m == 1)
    assert not torch.equal(out, x) and out.abs().max() <= 1


def test_blend_shapes_range_and_every_parameter_gets_a_gradient():
    gen = blend_gen()
    x, g = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    out, m = gen(x, g, return_mask=True)
    assert out.shape == x.shape and m.shape == (2, 1, 32, 32)
    assert out.min() >= -1 and out.max() <= 1 and m.min() > 0 and m.max() < 1
    (out.square().mean() + m.mean()).backward()
    missing = [n for n, p in gen.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    # the paper's head: one tensor back, no mask
    direct = UNetGenerator(base_channels=4)
    assert isinstance(direct(x, g), torch.Tensor)
    assert direct(x, g, return_mask=True)[1] is None


def test_generator_output_option_is_checked():
    with pytest.raises(ValueError, match="output must be one of"):
        UNetGenerator(base_channels=4, output="mix")
    with pytest.raises(ValueError, match="needs x among the inputs"):
        UNetGenerator(in_channels=2, base_channels=4, output="blend")


def test_masked_pixel_loss_averages_over_the_occluded_pixels_only():
    y = torch.zeros(1, 3, 4, 4)
    pred = torch.zeros(1, 3, 4, 4)
    pred[..., :2, :] = 2.0               # wrong inside the mask
    pred[..., 2:, :] = 5.0               # wrong outside it: must not count
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    assert masked_pixel_loss(y, pred, mask).item() == pytest.approx(2.0)
    assert masked_pixel_loss(y, pred, torch.zeros_like(mask)).item() == 0.0


def test_map_bce_loss_is_binary_cross_entropy():
    p = torch.tensor([0.9, 0.2]).view(1, 1, 1, 2)
    t = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    expected = -(math.log(0.9) + math.log(0.8)) / 2
    assert map_bce_loss(p, t).item() == pytest.approx(expected, rel=1e-5)
    assert map_bce_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item() < 1e-5   # finite at p = 0


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 100) == 1.0 and lr_factor(99, 100, decay="none") == 1.0
    assert lr_factor(0, 100, warmup_steps=10) == pytest.approx(0.1)
    assert lr_factor(9, 100, warmup_steps=10) == pytest.approx(1.0)
    assert lr_factor(10, 100, warmup_steps=10, decay="cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, warmup_steps=10, decay="cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, warmup_steps=10, decay="cosine", min_ratio=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        lr_factor(5, 100, decay="step")


def test_ema_follows_the_weights_and_copies_buffers():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(net, decay=0.75)
    before = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net(torch.randn(4, 2))               # train-mode BN updates its running statistics
    ema.update(net)
    for b, a, cur in zip(before, ema.module.parameters(), net.parameters()):
        assert torch.allclose(a, 0.75 * b + 0.25 * cur)
    assert torch.equal(ema.module[1].running_mean, net[1].running_mean)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())


def test_g_step_with_blend_hole_and_mask_terms_reduces_them():
    x, y = fixed_batch()
    mask = (x != y).any(1, keepdim=True).float()
    torch.manual_seed(0)
    gen = UNetGenerator(base_channels=4, output="blend")
    disc = MultiRFDiscriminator(trunk=VAE(base_channels=4, latent_dim=8, image_size=32).encoder, head_channels=4)
    opt = torch.optim.Adam(gen.parameters(), lr=2e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    w = LossWeights(pixel=1.0, identity=0.0, adversarial=0.0, pixel_hole=1.0, map_bce=1.0)
    g = torch.zeros_like(x)
    first = gan.g_step(gen, disc, opt, scaler, x=x, g=g, y=y, loss=GeneratorLoss(w), occ_mask=mask)[0]
    for _ in range(40):
        last = gan.g_step(gen, disc, opt, scaler, x=x, g=g, y=y, loss=GeneratorLoss(w), occ_mask=mask)[0]
    assert {"pixel", "pixel_hole", "map_bce", "total"} <= set(last)
    assert last["pixel_hole"] < first["pixel_hole"] and last["map_bce"] < first["map_bce"]
    with pytest.raises(ValueError, match="need the occlusion mask"):
        gan.g_step(gen, disc, opt, scaler, x=x, g=g, y=y, loss=GeneratorLoss(w))
    with pytest.raises(ValueError, match="generator.output: blend"):
        gan.g_step(UNetGenerator(base_channels=4), disc, opt, scaler, x=x, g=g, y=y,
                   loss=GeneratorLoss(LossWeights(pixel=1.0, identity=0.0, adversarial=0.0, map_bce=1.0)), occ_mask=mask)


def test_train_gan_with_every_option_saves_and_serves_the_ema_generator(data_config, stage1, tmp_path):
    from fsggan.api import FSGGAN
    from fsggan.checkpoint import load_checkpoint

    run = tmp_path / "run"
    cfg = gan_config(data_config, run, stage1, "generator.output=blend", "loss.map_bce=1.0", "loss.pixel_hole=10.0",
                     "train.ema=0.9", "optim.warmup_steps=2", "optim.decay=cosine", "optim.min_lr_ratio=0.1",
                     "gan.structure_passes=2")
    result = gan.train_gan(**vars(cfg))
    assert result["step"] == 6
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert set(ckpt["models"]) == {"vae", "generator", "discriminator", "generator_ema"}
    assert ckpt["config"]["generator"]["output"] == "blend"
    assert not all(torch.equal(ckpt["models"]["generator"][k], ckpt["models"]["generator_ema"][k])
                   for k in ckpt["models"]["generator"])
    stats = (run / "stats.jsonl").read_text()
    assert '"g/map_bce"' in stats and '"g/pixel_hole"' in stats
    model = FSGGAN.from_checkpoints(gan=run / "checkpoints" / "last.pt", device="cpu")
    ema_w = ckpt["models"]["generator_ema"]["out.weight"]
    assert torch.equal(model.generator.out.weight, ema_w)
    assert model.generator.output == "blend" and model.structure_passes == 2  # as trained and validated
    out = model.deocclude(torch.rand(2, 3, 32, 32) * 2 - 1)   # inference needs no mask
    assert out.shape == (2, 3, 32, 32)


def test_paper_configs_keep_the_options_off():
    cfg = load_config(TrainGANConfig, "configs/gan.yaml", [])
    assert cfg.generator.output == "direct"
    assert cfg.loss.pixel_hole == 0 and cfg.loss.map_bce == 0 and cfg.train.ema == 0
    assert cfg.optim.warmup_steps == 0 and cfg.optim.decay == "none" and cfg.data.clean_share == 0
    assert cfg.gan.structure_passes == 1


def test_cpu_bf16_autocast_falls_back_to_fp32_where_bf16_crashes(monkeypatch):
    import subprocess

    from fsggan.train import runtime

    calls = []

    def crashing(cmd, env, **kw):
        calls.append(env.get("ONEDNN_MAX_CPU_ISA"))
        return subprocess.CompletedProcess(cmd, -4)        # SIGILL, as oneDNN's AMX kernels on some VMs

    monkeypatch.setattr(runtime.subprocess, "run", crashing)
    monkeypatch.setattr(runtime, "fast_cpu_bf16", lambda: True)   # as on an AVX512-BF16 CPU
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    runtime.cpu_bf16_usable.cache_clear()
    env = runtime.Env(device=torch.device("cpu"), rank=0, local_rank=0, world_size=1)
    try:
        with pytest.warns(UserWarning, match="training in float32 instead"):
            ctx = runtime.autocast(env, "bf16")
        assert calls == [None, "AVX512_CORE_BF16"]           # tried as is, then without AMX
        with ctx:
            assert torch.nn.Linear(2, 2)(torch.randn(1, 2)).dtype == torch.float32
    finally:
        runtime.cpu_bf16_usable.cache_clear()


@pytest.mark.parametrize("flags, fast", [({"avx512_f": True, "avx512_bf16": False, "amx_bf16": False}, False),
                                         ({"avx2": True}, False),
                                         ({"avx512_f": True, "avx512_bf16": True}, True),
                                         ({"amx_bf16": True}, True)])
def test_fast_cpu_bf16_needs_bf16_instructions(monkeypatch, flags, fast):
    """Plain AVX-512 (oneDNN says "bf16 supported": it emulates) is not fast bf16."""
    from fsggan.train import runtime

    monkeypatch.setattr(runtime, "cpu_capability", lambda: flags)
    assert runtime.fast_cpu_bf16() is fast


def test_cpu_bf16_autocast_is_float32_on_a_cpu_without_bf16(monkeypatch):
    """An AVX2-only CPU emulates bf16 (several times slower): amp=bf16 runs float32 there."""
    from fsggan.train import runtime

    monkeypatch.setattr(runtime, "fast_cpu_bf16", lambda: False)
    runtime.cpu_bf16_usable.cache_clear()
    env = runtime.Env(device=torch.device("cpu"), rank=0, local_rank=0, world_size=1)
    try:
        with pytest.warns(UserWarning, match="no bf16 instructions"):
            ctx = runtime.autocast(env, "bf16")
        with ctx:
            assert torch.nn.Linear(2, 2)(torch.randn(1, 2)).dtype == torch.float32
    finally:
        runtime.cpu_bf16_usable.cache_clear()


def test_clean_share_is_checked_when_the_config_loads():
    from fsggan.config import ConfigError

    with pytest.raises(ConfigError, match=r"clean_share=1.0: give a share in \[0, 1\)"):
        load_config(TrainGANConfig, "configs/cpu/gan128.yaml", ["data.clean_share=1.0"])
    assert load_config(TrainGANConfig, "configs/cpu/gan128.yaml", []).data.clean_share == 0.2   # the 128 px recipe


def test_grey_share_turns_a_reproducible_share_of_faces_grey():
    from fsggan.config import ConfigError
    from fsggan.train.data import grey_batch

    torch.manual_seed(0)
    clean = torch.rand(64, 3, 8, 8) * 2 - 1
    batch = {"clean": clean, "occluded": clean.flip(-1), "mask": torch.rand(64, 1, 8, 8)}
    out = grey_batch(batch, torch.arange(64), seed=3, epoch=1, share=0.5)
    grey = (out["clean"][:, 0] == out["clean"][:, 2]).flatten(1).all(1)
    assert 16 < int(grey.sum()) < 48                                       # about half, drawn per item
    assert torch.equal(grey, (out["occluded"][:, 0] == out["occluded"][:, 1]).flatten(1).all(1))
    lum = (clean * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert torch.allclose(out["clean"][grey, 1], lum[grey], atol=1e-6)
    assert torch.equal(out["clean"][~grey], clean[~grey]) and torch.equal(out["mask"], batch["mask"])
    again = grey_batch(batch, torch.arange(64), seed=3, epoch=1, share=0.5)
    assert torch.equal(again["clean"], out["clean"])                        # the same items every time
    other = grey_batch(batch, torch.arange(64), seed=3, epoch=2, share=0.5)
    assert not torch.equal(other["clean"], out["clean"])                    # new draws each epoch
    assert grey_batch(batch, torch.arange(64), seed=3, epoch=1, share=0.0) is batch
    with pytest.raises(ConfigError, match=r"grey_share=1.5: give a share in \[0, 1\]"):
        load_config(TrainGANConfig, "configs/cpu/gan128.yaml", ["data.grey_share=1.5"])
    assert load_config(TrainGANConfig, "configs/cpu/gan128.yaml", []).data.grey_share == 0.1   # the 128 px recipe
    assert load_config(TrainGANConfig, "configs/cpu/gan128_stage64.yaml", []).data.grey_share == 0.0
