"""Tests for fsggan.models: shapes, ranges, gradients, trunk sharing, receptive fields."""

from __future__ import annotations

import io
import math

import pytest
import torch

from fsggan.losses import discriminator_loss, vae_loss
from fsggan.models import (TRUNK_MODES, VAE, DownSample, HDCModule, MultiRFDiscriminator,
                           PatchDiscriminator, UNetGenerator, UpSample, VAEOutput)
from fsggan.models.discriminator import combine_heads, patch_log_probs
from fsggan.models.vae import LOG_SIGMA_RANGE


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models: intra-op threads only add contention on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _img(b=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 2 - 1


def _vae(size=32, **kw):
    torch.manual_seed(0)
    return VAE(base_channels=4, latent_dim=8, image_size=size, **kw)


def _assert_all_grads(module: torch.nn.Module):
    """timm style: every trainable parameter got a finite, non-zero gradient."""
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    assert names
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


# ---------------------------------------------------------------- blocks

def test_blocks_shapes():
    x = torch.randn(2, 4, 16, 16)
    assert DownSample(4, 6)(x).shape == (2, 6, 8, 8)
    assert UpSample(4, 6)(x).shape == (2, 6, 32, 32)
    hdc = HDCModule(4, 5, rates=(1, 2, 5))
    assert hdc(x).shape == (2, 5, 16, 16)
    assert len(hdc.branches) == 4  # 1x1 + three dilated 3x3
    assert [b[0].dilation for b in hdc.branches] == [(1, 1), (1, 1), (2, 2), (5, 5)]
    assert hdc.branches[0][0].kernel_size == (1, 1)
    with pytest.raises(ValueError):
        HDCModule(4, 4, rates=(0, 2))


# ---------------------------------------------------------------- VAE

@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("sigma", ["pixel", "scalar"])
def test_vae_shapes_and_ranges(size, sigma):
    vae = _vae(size, sigma=sigma)
    x = _img(2, size)
    out = vae.reconstruct(x)
    assert isinstance(out, VAEOutput)
    assert out.mean.shape == out.log_sigma.shape == (2, 3, size, size)
    assert out.mu.shape == out.logvar.shape == (2, 8)
    assert out.mean.abs().max() <= 1
    lo, hi = LOG_SIGMA_RANGE
    assert (out.log_sigma > lo).all() and (out.log_sigma < hi).all()
    mu, logvar, feats = vae.encoder(x)
    assert [f.shape for f in feats] == [
        (2, c, size // s, size // s) for c, s in zip(vae.encoder.feature_channels, (2, 4, 8))]
    vae.eval()
    g = vae(x)
    assert g.shape == (2, 3, size, size) and g.abs().max() <= 1
    assert torch.equal(g, vae(x))  # deterministic: z = mu
    assert torch.equal(g, vae.reconstruct(x, sample=False).mean)
    assert not torch.equal(g, vae.reconstruct(x, sample=True).mean)


def test_vae_rejects_bad_sizes():
    with pytest.raises(ValueError):
        VAE(image_size=40)
    with pytest.raises(ValueError):
        VAE(sigma="bogus", image_size=32)
    with pytest.raises(ValueError, match="32x32"):
        _vae(32)(_img(1, 64))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("sigma", ["pixel", "scalar"])
def test_vae_all_params_get_grad(train, sigma):
    vae = _vae(32, sigma=sigma).train(train)
    vae_loss(vae.reconstruct(_img()), _img(seed=1))["total"].backward()
    _assert_all_grads(vae)


# ---------------------------------------------------------------- generator

@pytest.mark.parametrize("hdc", [True, False])
def test_generator_shapes(hdc):
    torch.manual_seed(0)
    gen = UNetGenerator(base_channels=4, hdc=hdc)
    x, g = _img(2, 32), _img(2, 32, seed=1)
    y = gen(x, g)
    assert y.shape == (2, 3, 32, 32) and y.abs().max() <= 1
    assert torch.equal(gen.eval()(x, g), gen(torch.cat([x, g], 1)))
    assert [f.shape[1:] for f in gen.encode(x, g)] == [(4, 16, 16), (8, 8, 8), (16, 4, 4)]
    assert any(isinstance(m, HDCModule) for m in gen.modules()) == hdc
    with pytest.raises(ValueError):
        gen(x)  # 3 channels only


def test_generator_ablation_same_depth():
    n_blocks = [len(UNetGenerator(base_channels=4, hdc=h).encoders[0]) for h in (True, False)]
    assert n_blocks == [3, 3]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("hdc", [True, False])
def test_generator_all_params_get_grad(train, hdc):
    torch.manual_seed(0)
    gen = UNetGenerator(base_channels=4, hdc=hdc).train(train)
    (gen(_img(), _img(seed=1)) - _img(seed=2)).abs().mean().backward()
    _assert_all_grads(gen)


def _receptive_field(gen, block, size=128):
    """Height and width (px) of the input region that one centre unit of ``block`` depends on,
    measured by back-propagation in float64 (exactly zero outside the theoretical field),
    and the fraction of that box with non-zero gradient."""
    x = torch.randn(1, 6, size, size, dtype=torch.float64, requires_grad=True)
    f = gen.encode(x)[block]
    f[0, :, f.shape[-2] // 2, f.shape[-1] // 2].sum().backward()
    hit = x.grad.abs().sum((0, 1)) > 0
    rows, cols = hit.any(1).nonzero().squeeze(1), hit.any(0).nonzero().squeeze(1)
    h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    box = hit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    return h, w, box.double().mean().item()


def test_generator_receptive_fields_quarter_half_whole():
    """Paper, Stage II: the encoder blocks see about 1/4, 1/2 and all of a 128x128 image."""
    torch.manual_seed(0)
    gen = UNetGenerator(base_channels=4).double().eval()
    (h1, w1, _), (h2, w2, _), (h3, w3, cover3) = (_receptive_field(gen, i) for i in range(3))
    assert h1 == w1 and h2 == w2 and h3 == w3
    assert (h1, h2, h3) == (27, 79, 128)  # the numbers derived in generator.py
    assert 0.18 * 128 <= h1 <= 0.35 * 128    # about a quarter
    assert 0.40 * 128 <= h2 <= 0.70 * 128    # about a half
    assert h3 >= 0.9 * 128 and cover3 == 1.0  # every input pixel reaches the centre unit
    # the ablation (no HDC) has much smaller fields at the same depth
    torch.manual_seed(0)
    plain = UNetGenerator(base_channels=4, hdc=False).double().eval()
    assert _receptive_field(plain, 2)[0] < 0.6 * 128


# ---------------------------------------------------------------- multi-RF discriminator

def _disc(mode, vae=None, **kw):
    vae = vae or _vae(32)
    torch.manual_seed(1)
    return vae, MultiRFDiscriminator(trunk=vae.encoder, trunk_mode=mode, head_channels=4, **kw)


def test_disc_validates_arguments():
    vae = _vae(32)
    with pytest.raises(ValueError):
        MultiRFDiscriminator(vae.encoder, trunk_mode="shared")
    for lam in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            MultiRFDiscriminator(vae.encoder, lam=lam)


@pytest.mark.parametrize("mode", TRUNK_MODES)
def test_disc_output(mode):
    _, disc = _disc(mode)
    out = disc(_img(3))
    assert out.prob.shape == out.log_prob.shape == out.log_one_minus_prob.shape == (3,)
    assert out.head_probs.shape == out.weights.shape == (3, 3)
    assert ((out.prob > 0) & (out.prob < 1)).all()
    torch.testing.assert_close(out.weights.sum(1), torch.ones(3))
    torch.testing.assert_close(out.log_prob, out.prob.log())
    torch.testing.assert_close(out.log_one_minus_prob, torch.log1p(-out.prob))
    # d_u = sum softmax(lam d)_i d_i with lam = 1, recomputed from the heads
    w = torch.softmax(out.head_probs, 1)
    torch.testing.assert_close(out.weights, w)
    torch.testing.assert_close(out.prob, (w * out.head_probs).sum(1))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("mode", TRUNK_MODES)
def test_disc_all_params_get_grad(mode, train):
    vae, disc = _disc(mode)
    vae.train(train)
    disc.train(train)
    real, fake = _img(), _img(seed=1).requires_grad_(True)
    discriminator_loss(disc(real).log_prob, disc(fake).log_one_minus_prob).backward()
    _assert_all_grads(disc)
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # flows to the input (to G)
    enc_grads = [p.grad for p in vae.encoder.body.parameters()]
    if mode == "frozen":
        assert all(g is None for g in enc_grads)
        assert all(p.requires_grad for p in vae.parameters())  # VAE flags untouched
        assert {id(p) for p in disc.parameters()} == {id(p) for p in disc.heads.parameters()}
    elif mode == "tied":
        assert all(g is not None for g in enc_grads)
    else:
        assert all(g is None for g in enc_grads)


@pytest.mark.parametrize("mode", TRUNK_MODES)
def test_disc_trunk_modes_optimizer_step(mode):
    vae, disc = _disc(mode)
    enc_w = vae.encoder.body.stem[0].weight
    before = enc_w.detach().clone()
    same = disc.trunk.stem[0].weight is enc_w
    disc_w_before = disc.trunk.stem[0].weight.detach().clone()
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    discriminator_loss(disc(_img()).log_prob, disc(_img(seed=1)).log_one_minus_prob).backward()
    opt.step()
    changed = not torch.equal(enc_w, before)
    disc_changed = not torch.equal(disc.trunk.stem[0].weight, disc_w_before)
    trunk_ids = {id(p) for p in vae.encoder.body.parameters()}
    disc_ids = {id(p) for p in disc.parameters()}
    if mode == "frozen":
        assert same and not changed and not disc_changed
        assert not trunk_ids & disc_ids
    elif mode == "tied":
        assert same and changed
        assert trunk_ids <= disc_ids
    else:
        assert not same and not changed and disc_changed
        assert not trunk_ids & disc_ids


def test_disc_tied_survives_dtype_conversion():
    vae, disc = _disc("tied")
    vae.double()
    disc.double()
    assert disc.trunk.stem[0].weight is vae.encoder.body.stem[0].weight
    assert disc(_img().double()).prob.dtype == torch.float64
    assert "trunk_mode='tied'" in repr(disc)


def _bn_buffers(module):
    return [b.clone() for n, b in module.named_buffers() if "running" in n]


@pytest.mark.parametrize("mode", TRUNK_MODES)
def test_disc_leaves_vae_bn_stats_and_mode(mode):
    vae, disc = _disc(mode)
    vae.train()
    disc.train()
    before = _bn_buffers(vae)
    disc(_img())
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_buffers(vae)))
    assert vae.encoder.training and all(m.training for m in vae.encoder.modules())
    if mode != "frozen":  # D's own trunk BN buffers are in train mode and do update
        disc_bufs = [b for n, b in disc.trunk.named_buffers() if "running_mean" in n]
        assert any(b.abs().sum() > 0 for b in disc_bufs)
    disc.eval()
    vae.eval()
    disc(_img())
    assert not vae.encoder.training


@pytest.mark.parametrize("mode", TRUNK_MODES)
def test_disc_state_dict_roundtrip(mode):
    vae, disc = _disc(mode)
    opt = torch.optim.SGD(disc.parameters(), lr=0.1)
    discriminator_loss(disc(_img()).log_prob, disc(_img(seed=1)).log_one_minus_prob).backward()
    opt.step()
    disc(_img())  # update BN buffers of D's own trunk
    buf = io.BytesIO()
    torch.save(disc.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    assert any(k.startswith("trunk.") for k in sd) == (mode != "frozen")
    # a fresh VAE with different weights: frozen mode uses it as is, the others restore
    torch.manual_seed(123)
    vae2 = VAE(base_channels=4, latent_dim=8, image_size=32)
    if mode == "frozen":
        vae2.load_state_dict(vae.state_dict())
    disc2 = MultiRFDiscriminator(vae2.encoder, trunk_mode=mode, head_channels=4)
    disc2.load_state_dict(sd)
    disc.eval(), disc2.eval(), vae.eval(), vae2.eval()
    x = _img(seed=3)
    torch.testing.assert_close(disc2(x).prob, disc(x).prob)
    if mode == "tied":  # loading wrote into the shared parameters
        torch.testing.assert_close(vae2.encoder.body.stem[0].weight, vae.encoder.body.stem[0].weight)


def test_disc_state_dict_across_modes():
    _, tied = _disc("tied")
    _, frozen = _disc("frozen")
    frozen.load_state_dict(tied.state_dict())  # trunk entries ignored
    torch.testing.assert_close(frozen.heads[0][0].weight, tied.heads[0][0].weight)
    _, copy_ = _disc("copy")
    with pytest.warns(UserWarning, match="no trunk"):
        copy_.load_state_dict(frozen.state_dict())
    with pytest.raises(RuntimeError), pytest.warns(UserWarning):  # strict still checks the heads
        copy_.load_state_dict({k: v for k, v in frozen.state_dict().items() if "heads.0" not in k})


def _set_head_biases(disc, values):
    with torch.no_grad():
        for head, v in zip(disc.heads, values):
            head[-1].weight.mul_(1e-3)
            head[-1].bias.fill_(v)


def test_disc_lam_zero_is_mean_and_large_is_max():
    vae = _vae(32)
    x = _img()
    outs = {}
    for lam in (0.0, 1.0, 1e3):
        _, disc = _disc("frozen", vae=vae, lam=lam)
        _set_head_biases(disc, (-2.0, 0.0, 2.0))
        outs[lam] = disc(x)
    d = outs[0.0].head_probs
    assert (d[:, 0] < d[:, 1]).all() and (d[:, 1] < d[:, 2]).all()
    torch.testing.assert_close(outs[0.0].prob, d.mean(1))
    torch.testing.assert_close(outs[0.0].weights, torch.full_like(d, 1 / 3))
    torch.testing.assert_close(outs[1e3].prob, d.max(1).values, atol=1e-5, rtol=0)
    assert (outs[0.0].prob < outs[1.0].prob).all() and (outs[1.0].prob < outs[1e3].prob).all()


@pytest.mark.parametrize("bias", [1e4, -1e4, 40.0, -40.0])
def test_disc_log_probs_finite_when_saturated(bias):
    vae, disc = _disc("copy")
    _set_head_biases(disc, (bias,) * 3)
    x = _img().requires_grad_(True)
    out = disc(x)
    assert torch.isfinite(out.log_prob).all() and torch.isfinite(out.log_one_minus_prob).all()
    if bias > 0:
        torch.testing.assert_close(out.log_one_minus_prob, torch.full((2,), -bias), atol=1e-3, rtol=1e-5)
        assert (out.log_prob <= 0).all() and (out.log_prob > -1e-6).all()
    else:
        torch.testing.assert_close(out.log_prob, torch.full((2,), bias), atol=1e-3, rtol=1e-5)
    discriminator_loss(out.log_prob, out.log_one_minus_prob).backward()
    assert all(torch.isfinite(p.grad).all() for p in disc.parameters() if p.grad is not None)
    assert torch.isfinite(x.grad).all()


def test_log_space_formulas_by_hand():
    # one head, two patches with sigmoid 0.5 and 0.75 -> d = 0.625
    logits = torch.tensor([[0.0, math.log(3.0)]]).view(1, 1, 1, 2)
    log_d, log_1md = patch_log_probs(logits)
    torch.testing.assert_close(log_d, torch.tensor([math.log(0.625)]))
    torch.testing.assert_close(log_1md, torch.tensor([math.log(0.375)]))
    # two heads d = (0.2, 0.6), lam = 2: w = softmax(0.4, 1.2)
    d = torch.tensor([[0.2, 0.6]])
    out = combine_heads(d.log(), (1 - d).log(), 2.0)
    w0 = math.exp(0.4) / (math.exp(0.4) + math.exp(1.2))
    du = w0 * 0.2 + (1 - w0) * 0.6
    torch.testing.assert_close(out.prob, torch.tensor([du]))
    torch.testing.assert_close(out.log_one_minus_prob, torch.tensor([math.log(1 - du)]))
    torch.testing.assert_close(out.weights, torch.tensor([[w0, 1 - w0]]))


# ---------------------------------------------------------------- PatchGAN

@pytest.mark.parametrize("train", [True, False])
def test_patch_discriminator(train):
    torch.manual_seed(0)
    disc = PatchDiscriminator(base_channels=4, n_layers=3).train(train)
    x = _img().requires_grad_(True)
    out = disc(x)
    assert out.prob.shape == (2,) and out.head_probs.shape == out.weights.shape == (2, 1)
    assert torch.equal(out.weights, torch.ones(2, 1))
    torch.testing.assert_close(out.prob, out.head_probs[:, 0])
    torch.testing.assert_close(out.log_prob, out.prob.log())
    torch.testing.assert_close(out.log_one_minus_prob, torch.log1p(-out.prob))
    discriminator_loss(out.log_prob, disc(_img(seed=1)).log_one_minus_prob).backward()
    _assert_all_grads(disc)
    assert x.grad.abs().sum() > 0


# ---------------------------------------------------------------- CUDA mixed precision

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_autocast():
    dev = torch.device("cuda")
    vae = _vae(64).to(dev)
    gen = UNetGenerator(base_channels=8).to(dev)
    disc = MultiRFDiscriminator(vae.encoder, "tied", head_channels=8).to(dev)
    x = _img(2, 64).to(dev)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = vae.reconstruct(x)
        losses = vae_loss(out, x)
        g = vae(x)
        y = gen(x, g)
        d_out = disc(y)
    assert losses["total"].dtype == torch.float32 and torch.isfinite(losses["total"])
    assert d_out.log_prob.dtype == torch.float32
    assert torch.isfinite(d_out.log_prob).all() and torch.isfinite(d_out.log_one_minus_prob).all()
    assert y.shape == (2, 3, 64, 64)
    (losses["total"] - d_out.log_prob.mean()).backward()
    _assert_all_grads(gen)
