"""The CUDA path: the speed settings training applies (checked on a CPU where they can be)
and, marked ``cuda`` (skipped without a GPU; ``pytest -m cuda``), the steps under fp16 /
bf16 + channels_last and occlusion synthesis on the GPU."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from fsggan.data import OccluderLibrary, OcclusionSynthesizer, item_rng, procedural_occluders, template_landmarks
from fsggan.losses import GeneratorLoss, LossWeights
from fsggan.models import VAE, MultiRFDiscriminator, UNetGenerator
from fsggan.train import gan, runtime
from fsggan.train.config import TrainSection
from fsggan.train.runtime import Env, make_scaler, set_cuda_backends, setup_env, wrap_model
from helpers.files import REPO



@pytest.fixture
def backends():
    """Restore the process-wide backend flags a test changes."""
    saved = (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    yield
    torch.backends.cudnn.benchmark = saved[0]
    torch.set_float32_matmul_precision(saved[1])
    torch.backends.cudnn.allow_tf32 = saved[2]


def flags() -> tuple:
    """The flags as both of torch's TF32 interfaces read them (mixing the two makes the
    older getters raise; torch.compile reads both)."""
    b = torch.backends
    return (b.cudnn.benchmark, b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, torch.get_float32_matmul_precision(),
            b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision)


def test_cuda_speed_settings_are_training_defaults():
    t = TrainSection()
    assert t.cudnn_benchmark and t.tf32
    from fsggan.train.state import RESUMABLE_KEYS

    assert {"train.cudnn_benchmark", "train.tf32"} <= set(RESUMABLE_KEYS)  # how fast, not what


def test_set_cuda_backends_both_ways_and_readable(backends):
    set_cuda_backends(cudnn_benchmark=True, tf32=True)
    assert flags() == (True, True, True, "high", "tf32", "tf32")
    set_cuda_backends(cudnn_benchmark=False, tf32=False)
    assert flags()[:4] == (False, False, False, "highest")
    assert flags()[4] == "ieee"


def test_setup_env_on_cpu_leaves_the_cuda_flags(backends):
    set_cuda_backends(cudnn_benchmark=False, tf32=False)
    before = flags()
    with setup_env("cpu", cudnn_benchmark=True, tf32=True) as env:
        assert env.device.type == "cpu"
    assert flags() == before


def test_training_reads_its_device_as_every_command_does(monkeypatch):
    """train.device goes through fsggan.device.resolve_device (the CLI's and the API's reader):
    the same one-line message for a missing GPU, named by its key; a CUDA device becomes this
    process's own GPU (its LOCAL_RANK, or 0 when it sees a single GPU)."""
    from fsggan.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError) as plain:
        resolve_device("cuda")
    with pytest.raises(runtime.TrainingError) as training:
        setup_env("cuda")
    assert str(training.value) == f"train.{plain.value}"
    assert runtime.train_device("auto") == resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.train_device("auto", local_rank=1) == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert runtime.train_device("cuda", local_rank=1) == torch.device("cuda", 0)


def test_gpu_speed_settings(monkeypatch):
    assert runtime.gpu_speed_settings("cpu") == {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert runtime.gpu_speed_settings("auto") == {"amp": "bf16", "channels_last": True}
    assert runtime.gpu_speed_settings("cpu") == {}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)  # V100, T4
    assert runtime.gpu_speed_settings("cuda") == {}


def test_quickstart_full_takes_the_gpu_speed_settings(monkeypatch, tmp_path):
    from fsggan.quickstart import training_configs

    monkeypatch.chdir(REPO)  # the configs name their data YAML relative to the repository root
    kw = dict(lfw=tmp_path / "lfw", out=tmp_path / "qs", full=True)
    vae_cfg, gan_cfg = training_configs(**kw, device="cpu")
    assert (gan_cfg.train.amp, gan_cfg.train.channels_last, gan_cfg.vae.image_size) == ("none", False, 128)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    for cfg in training_configs(**kw, device="auto"):
        t = cfg.train
        assert (t.amp, t.channels_last, t.cudnn_benchmark, t.tf32, t.compile) == ("bf16", True, True, True, False)


# ----------------------------------------------------------------------- on a GPU

@pytest.mark.cuda
def test_setup_env_on_cuda_applies_the_speed_settings(backends):
    with setup_env("cuda", cudnn_benchmark=False, tf32=False) as env:
        assert env.device.type == "cuda"
        assert flags()[:4] == (False, False, False, "highest")
    with setup_env("cuda"):
        assert flags() == (True, True, True, "high", "tf32", "tf32")


@pytest.mark.cuda
@pytest.mark.parametrize("amp,channels_last", [("fp16", False), ("bf16", True)])
def test_gan_steps_on_cuda_reduce_losses(amp, channels_last):
    env = Env(device=torch.device("cuda"))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    y = (torch.rand(4, 3, 64, 64, device="cuda") * 1.6 - 0.8).contiguous(memory_format=fmt)
    x = y.clone()
    x[:, :, 16:40, 16:48] = 0.9  # an "occluder"
    v = VAE(base_channels=8, latent_dim=16, image_size=64).eval().requires_grad_(False).to("cuda")
    gen = UNetGenerator(base_channels=8)
    disc = MultiRFDiscriminator(trunk=v.encoder, trunk_mode="frozen", head_channels=8)
    gen_net, disc_net = (wrap_model(m, env, channels_last=channels_last) for m in (gen, disc))
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=1e-3) for m in (gen, disc))
    sg, sd = make_scaler(env, amp), make_scaler(env, amp)
    assert sg.is_enabled() == (amp == "fp16")
    with torch.no_grad(), runtime.autocast(env, amp):
        g = v(x)
    g_losses, d_losses = [], []
    for _ in range(10):
        terms, fake = gan.g_step(gen_net, disc, opt_g, sg, x=x, g=g, y=y, loss=GeneratorLoss(LossWeights(identity=0.0)),
                                 cast=runtime.autocast(env, amp))
        g_losses.append(terms["pixel"].item())
        d_terms = gan.d_step(disc_net, opt_d, sd, real=y, fake=fake, cast=runtime.autocast(env, amp))
        d_losses.append(d_terms["loss"].item())
    assert np.isfinite(g_losses).all() and np.isfinite(d_losses).all()
    assert g_losses[-1] < g_losses[0]
    assert all(torch.isfinite(p).all() for p in gen.parameters())


@pytest.mark.cuda
def test_occlusion_on_the_gpu_matches_the_cpu():
    """data.occlude_on: device draws the same occlusions as the loader workers."""
    synth = OcclusionSynthesizer(OccluderLibrary(procedural_occluders(count=12, seed=0)), image_size=64,
                                 canvas_size=64)
    clean = torch.rand(8, 3, 64, 64) * 2 - 1
    lm = np.stack([template_landmarks("lfw", image_size=64)] * 8)
    cpu = synth(clean, lm, [item_rng(0, 0, i) for i in range(8)])
    gpu = synth(clean.cuda(), lm, [item_rng(0, 0, i) for i in range(8)])
    assert gpu.occluded.device.type == "cuda"
    assert (gpu.mask.cpu() == cpu.mask).float().mean() > 0.99
    assert (gpu.occluded.cpu() - cpu.occluded).abs().mean() < 1e-2


@pytest.mark.cuda
def test_stage2_step_with_map_loss_under_bf16_autocast_never_syncs():
    """The map BCE inside CUDA autocast (which refuses binary_cross_entropy), then steps under
    ``set_sync_debug_mode("error")``: G and D steps, fused Adam, the EMA and the loss guard make
    no host synchronisation."""
    from fsggan.train.state import EMA
    from fsggan.train.monitor import LossGuard

    env = Env(device=torch.device("cuda"))
    torch.manual_seed(0)
    y = torch.rand(4, 3, 64, 64, device="cuda") * 1.6 - 0.8
    x, mask = y.clone(), torch.zeros(4, 1, 64, 64, device="cuda")
    x[:, :, 16:40, 16:48], mask[:, :, 16:40, 16:48] = 0.9, 1.0
    v = VAE(base_channels=8, latent_dim=16, image_size=64).eval().requires_grad_(False).to("cuda")
    gen = UNetGenerator(base_channels=8, output="blend")
    disc = MultiRFDiscriminator(trunk=v.encoder, trunk_mode="frozen", head_channels=8)
    gen_net, disc_net = (wrap_model(m, env) for m in (gen, disc))
    adam = dict(lr=1e-3, betas=(0.5, 0.999), weight_decay=0.0, device=env.device)
    opt_g, opt_d = runtime.adam(gen.parameters(), **adam), runtime.adam(disc.parameters(), **adam)
    sg, sd = make_scaler(env, "bf16"), make_scaler(env, "bf16")
    loss = GeneratorLoss(LossWeights(identity=0.0, map_bce=1.0))
    ema, guard = EMA(gen, 0.9), LossGuard(env)

    def step(n):
        cast = runtime.autocast(env, "bf16")
        with torch.no_grad(), cast:
            g = v(x)
        terms, fake = gan.g_step(gen_net, disc, opt_g, sg, x=x, g=g, y=y, loss=loss, occ_mask=mask, cast=cast)
        d_terms = gan.d_step(disc_net, opt_d, sd, real=y, fake=fake, cast=cast)
        ema.update(gen)
        guard.add({**terms, **{f"d/{k}": t for k, t in d_terms.items()}}, n)

    step(1)  # lazy initialisation, cuDNN's algorithm search
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for n in range(2, 5):
            step(n)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    records, stop = guard.check()
    assert len(records) == 4 and not stop and all(np.isfinite(list(r.values())).all() for r in records)
    assert "map_bce" in records[-1]
