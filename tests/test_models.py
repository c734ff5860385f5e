"""Tests for fsggan.models: shapes, ranges, gradients, trunk sharing, receptive fields."""

from __future__ import annotations

import io
import math

import pytest
import torch

from fsggan.losses import discriminator_loss, vae_loss
from fsggan.models import (TRUNK_MODES, VAE, DownSample, GlobalDiscriminator, HDCModule, MultiRFDiscriminator,
                           PatchDiscriminator, UNetGenerator, UpSample, VAEOutput, deocclude)
from fsggan.models.discriminator import combine_heads, patch_log_probs
from fsggan.models.vae import LOG_SIGMA_RANGE


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: threads only add contention


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


def test_generator_upsample_modes_share_weights():
    """upsample: bilinear has the same parameters as nearest (a nearest-trained G loads into
    it), every up-sampling unit uses it, and the output differs."""
    torch.manual_seed(0)
    near = UNetGenerator(base_channels=4).eval()
    bil = UNetGenerator(base_channels=4, upsample="bilinear").eval()
    bil.load_state_dict(near.state_dict())
    assert [m.mode for m in bil.modules() if isinstance(m, UpSample)] == ["bilinear"] * 3
    x, g = _img(2, 32), _img(2, 32, seed=1)
    assert not torch.allclose(near(x, g), bil(x, g))
    with pytest.raises(ValueError, match="upsample"):
        UNetGenerator(base_channels=4, upsample="bicubic")


def test_structure_passes_give_v_the_previous_output_and_g_the_original_face():
    """deocclude: one pass is G(x, V(x)); two passes fill x again from V of the first output;
    a user's map is used in every pass; a generator without structure input runs once."""
    vae, x = _vae().eval(), _img(2, 32)
    torch.manual_seed(1)
    gen = UNetGenerator(base_channels=4, output="blend").eval()
    with torch.no_grad():
        y1, g1, m1 = deocclude(vae, gen, x)
        assert torch.equal(y1, gen(x, vae(x))) and torch.equal(g1, vae(x))
        y2, g2, m2 = deocclude(vae, gen, x, structure_passes=2)
        assert torch.equal(g2, vae(y1)) and torch.equal(y2, gen(x, vae(y1)))
        assert not torch.equal(g2, g1) and not torch.equal(y2, y1)  # a second pass, from another structure
        assert m2.shape == (2, 1, 32, 32)
        fill = torch.zeros(2, 1, 32, 32)
        fill[..., 8:16, 8:16] = 1
        y, _, m = deocclude(vae, gen, x, structure_passes=3, fill_mask=fill)
        assert torch.equal(m, fill) and torch.equal(y[..., :8, :], x[..., :8, :])  # outside the map: x, bit for bit
        plain = UNetGenerator(in_channels=3, base_channels=4).eval()
        y, g, _ = deocclude(None, plain, x, structure_passes=2)
        assert g is None and torch.equal(y, plain(x))
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="structure_passes=.*integer >= 1"):
            deocclude(vae, gen, x, structure_passes=bad)
    with pytest.raises(ValueError, match="a VAE is needed"):
        deocclude(None, gen, x)


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
    """Height and width (px) of the input region that one centre unit of the generator's
    encoder ``block`` depends on, and the fraction of that box with non-zero gradient."""
    x = torch.randn(1, 6, size, size, dtype=torch.float64, requires_grad=True)
    return _field_of(x, gen.encode(x)[block])


def _field_of(x: torch.Tensor, out: torch.Tensor):
    """Height and width (px) of the region of the float64 input ``x`` (which requires grad)
    that the centre unit of the (B, C, N, N) map ``out`` depends on, measured by
    back-propagation (exactly zero outside the theoretical field), and the fraction of that
    box with non-zero gradient."""
    out[0, :, out.shape[-2] // 2, out.shape[-1] // 2].sum().backward()
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
    for levels in ((), (0, 1), (1, 5), (3, 1), (2, 2)):
        with pytest.raises(ValueError, match="levels"):
            MultiRFDiscriminator(vae.encoder, levels=levels)
    with pytest.raises(ValueError, match="whole-face"):  # the bare body has no H/16 level
        MultiRFDiscriminator(vae.encoder.body, levels=(1, 2, 3, 4))
    assert len(MultiRFDiscriminator(vae.encoder.body, levels=(1, 2, 3)).heads) == 3


@pytest.mark.parametrize("levels", [(1, 2, 3, 4), (1, 2, 3), (2, 4)])
@pytest.mark.parametrize("mode", TRUNK_MODES)
def test_disc_output(mode, levels):
    _, disc = _disc(mode, levels=levels)
    n = len(levels)
    assert [tuple(lg.shape) for lg in disc.head_logits(_img(3))] == [
        (3, 1, 32 >> lv, 32 >> lv) if lv < 4 else (3, 1, 1, 1) for lv in levels]
    out = disc(_img(3))
    assert out.prob.shape == out.log_prob.shape == out.log_one_minus_prob.shape == (3,)
    assert out.head_probs.shape == out.weights.shape == (3, n)
    assert ((out.prob > 0) & (out.prob < 1)).all()
    torch.testing.assert_close(out.weights.sum(1), torch.ones(3))
    torch.testing.assert_close(out.log_prob, out.prob.log())
    torch.testing.assert_close(out.log_one_minus_prob, torch.log1p(-out.prob))
    # d_u = sum softmax(lam d)_i d_i with lam = 1, recomputed from the heads
    w = torch.softmax(out.head_probs, 1)
    torch.testing.assert_close(out.weights, w)
    torch.testing.assert_close(out.prob, (w * out.head_probs).sum(1))


def test_disc_default_has_whole_face_head():
    _, disc = _disc("frozen")
    assert disc.levels == (1, 2, 3, 4) and len(disc.heads) == 4
    assert "levels=(1, 2, 3, 4)" in repr(disc)


def test_disc_head_receptive_fields():
    """Measured by back-propagation at 128x128 (float64, eval mode): the patch heads on the
    H/2, H/4, H/8 levels see 17, 41 and 89 px; the H/16 head's logit sees the whole face."""
    vae = VAE(base_channels=4, latent_dim=8, image_size=128).double().eval()
    fields = []
    for i in range(4):
        torch.manual_seed(0)
        disc = MultiRFDiscriminator(vae.encoder, head_channels=4).double().eval()
        x = torch.randn(1, 3, 128, 128, dtype=torch.float64, requires_grad=True)
        fields.append(_field_of(x, disc.head_logits(x)[i]))
    sides = [h for h, w, _ in fields]
    assert all(h == w for h, w, _ in fields)
    assert sides == [17, 41, 89, 128]
    assert fields[3][2] == 1.0  # every pixel reaches the whole-face logit
    assert max(sides[:3]) < 0.75 * 128  # without level 4, nothing sees the whole face


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
    enc = [*vae.encoder.body.parameters(), *vae.encoder.down.parameters()]
    enc_grads = [p.grad for p in enc]
    if mode == "frozen":
        assert all(g is None for g in enc_grads)
        assert all(p.requires_grad for p in vae.parameters())  # VAE flags untouched
        assert {id(p) for p in disc.parameters()} == {id(p) for p in disc.heads.parameters()}
    elif mode == "tied":
        assert all(g is not None for g in enc_grads)
        assert vae.encoder.to_latent.weight.grad is None  # the latent head is not part of D
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
    trunk_ids = {id(p) for p in [*vae.encoder.body.parameters(), *vae.encoder.down.parameters()]}
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


def _bn_pairs(vae, disc):
    """(V's BN buffer, D's trunk BN buffer) for every running statistic of the trunk."""
    pairs = []
    for name in ("trunk", "trunk_down"):
        src = {"trunk": vae.encoder.body, "trunk_down": vae.encoder.down}[name]
        theirs, ours = dict(src.named_buffers()), dict(getattr(disc, name).named_buffers())
        pairs += [(theirs[k], ours[k]) for k in theirs]
    return pairs


@pytest.mark.parametrize("order", ["vae_first", "disc_first"])
def test_disc_tied_survives_dtype_conversion(order):
    vae, disc = _disc("tied")
    for m in ((vae, disc) if order == "vae_first" else (disc, vae)):
        m.double()
    assert disc.trunk.stem[0].weight is vae.encoder.body.stem[0].weight
    assert disc.trunk_down[0].weight is vae.encoder.down[0].weight
    assert all(a is b and a.dtype in (torch.float64, torch.int64) for a, b in _bn_pairs(vae, disc))
    assert disc(_img().double()).prob.dtype == torch.float64
    assert "trunk_mode='tied'" in repr(disc)


def _bn_buffers(module):
    return [b.clone() for n, b in module.named_buffers() if "running" in n]


@pytest.mark.parametrize("mode", TRUNK_MODES)
def test_disc_train_mode_and_vae_bn_stats(mode):
    vae, disc = _disc(mode)
    vae.train()
    disc.train()
    before, before_dec = _bn_buffers(vae.encoder), _bn_buffers(vae.decoder)
    disc(_img())
    changed = [not torch.equal(a, b) for a, b in zip(before, _bn_buffers(vae.encoder))]
    # tied: the encoder's running statistics ARE D's and its train-mode pass updates them
    assert changed and (all(changed) if mode == "tied" else not any(changed))
    assert all(torch.equal(a, b) for a, b in zip(before_dec, _bn_buffers(vae.decoder)))
    assert vae.encoder.training and all(m.training for m in vae.encoder.modules())
    if mode != "frozen":  # D's trunk BN buffers are in train mode and do update
        disc_bufs = [b for n, b in disc.named_buffers() if "running_mean" in n]
        assert disc_bufs and all(b.abs().sum() > 0 for b in disc_bufs)
    disc.eval()
    vae.eval()
    disc(_img())
    assert not vae.encoder.training
    disc.train()
    assert not vae.encoder.training  # D's mode never switches V's


@pytest.mark.parametrize("mode", TRUNK_MODES)
def test_structure_g_after_d_training(mode):
    """What g = V(x) does while D trains (V in eval mode, as in Stage II): frozen and copy
    leave V alone; tied moves V's weights AND its BN statistics together - V and D's trunk
    hold the same buffers, so V never normalises with statistics of weights that are gone."""
    vae, disc = _disc(mode)
    vae.eval()
    x = _img(4, seed=5)
    with torch.no_grad():
        g0 = vae(x)
    stats0 = _bn_buffers(vae)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    disc.train()
    for step in range(3):
        opt.zero_grad()
        discriminator_loss(disc(_img(seed=10 + step)).log_prob,
                           disc(_img(seed=20 + step)).log_one_minus_prob).mean().backward()
        opt.step()
    with torch.no_grad():
        g1 = vae(x)
    stats_moved = any(not torch.equal(a, b) for a, b in zip(stats0, _bn_buffers(vae)))
    if mode != "tied":
        assert torch.equal(g0, g1) and not stats_moved
        return
    assert not torch.equal(g0, g1) and stats_moved
    assert all(a is b for a, b in _bn_pairs(vae, disc))
    # D's trunk in eval mode computes exactly V's encoder features: one network, one set of statistics
    disc.eval()
    with torch.no_grad():
        mu, logvar, feats = vae.encoder(x)
        feats = [*feats, vae.encoder.down(feats[-1])]
        for a, b in zip(disc.features(x), feats):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the statistics follow the current weights: more train-mode passes on one batch pull
    # the first BN's running mean to that batch's mean under the CURRENT stem weights
    disc.train()
    batch = _img(8, seed=7)
    with torch.no_grad():
        for _ in range(60):
            disc.features(batch)
        pre_bn = torch.nn.functional.conv2d(batch, vae.encoder.body.stem[0].weight, padding=1)
        torch.testing.assert_close(vae.encoder.body.stem[1].running_mean, pre_bn.mean((0, 2, 3)),
                                   rtol=0, atol=1e-4)


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
    assert any(k.startswith("trunk_down.") for k in sd) == (mode != "frozen")
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
    if mode == "tied":  # loading wrote into the shared parameters and statistics
        for k, v in vae.encoder.state_dict().items():
            if not k.startswith("to_latent"):
                torch.testing.assert_close(vae2.encoder.state_dict()[k], v)


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


@pytest.mark.parametrize("mode", TRUNK_MODES)
def test_disc_three_head_checkpoints(mode):
    """A D saved before the whole-face head (three heads) fails to load into the default
    D naming the setting that loads it, and loads with levels=(1, 2, 3)."""
    vae, old = _disc(mode, levels=(1, 2, 3))
    sd = old.state_dict()
    assert not any(k.startswith(("heads.3", "trunk_down")) for k in sd)
    _, new = _disc(mode, vae=vae)
    with pytest.raises(RuntimeError, match=r"levels=\(1, 2, 3\)"):
        new.load_state_dict(sd)
    _, again = _disc(mode, vae=vae, levels=(1, 2, 3))
    again.load_state_dict(sd)
    old.eval(), again.eval(), vae.eval()
    torch.testing.assert_close(again(_img()).prob, old(_img()).prob)


def _set_head_biases(disc, values):
    with torch.no_grad():
        for head, v in zip(disc.heads, values, strict=True):
            head[-1].weight.mul_(1e-4)
            head[-1].bias.fill_(v)


def test_disc_lam_zero_is_mean_and_large_is_max():
    vae = _vae(32)
    x = _img()
    outs = {}
    for lam in (0.0, 1.0, 1e3):
        _, disc = _disc("frozen", vae=vae, lam=lam)
        _set_head_biases(disc, (-2.0, 0.0, 1.0, 2.0))
        outs[lam] = disc(x)
    d = outs[0.0].head_probs
    assert (d.diff(dim=1) > 0).all()
    torch.testing.assert_close(outs[0.0].prob, d.mean(1))
    torch.testing.assert_close(outs[0.0].weights, torch.full_like(d, 1 / 4))
    torch.testing.assert_close(outs[1e3].prob, d.max(1).values, atol=1e-5, rtol=0)
    assert (outs[0.0].prob < outs[1.0].prob).all() and (outs[1.0].prob < outs[1e3].prob).all()


@pytest.mark.parametrize("bias", [1e4, -1e4, 40.0, -40.0])
def test_disc_log_probs_finite_when_saturated(bias):
    vae, disc = _disc("copy")
    _set_head_biases(disc, (bias,) * 4)
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


# ---------------------------------------------------------------- single-head critics

def _check_single_head(out, b=2):
    assert out.prob.shape == (b,) and out.head_probs.shape == out.weights.shape == (b, 1)
    assert torch.equal(out.weights, torch.ones(b, 1))
    torch.testing.assert_close(out.prob, out.head_probs[:, 0])
    torch.testing.assert_close(out.log_prob, out.prob.log())
    torch.testing.assert_close(out.log_one_minus_prob, torch.log1p(-out.prob))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("critic", ["global", "patch"])
def test_single_head_critics(critic, train):
    torch.manual_seed(0)
    disc = (GlobalDiscriminator(base_channels=4) if critic == "global"
            else PatchDiscriminator(base_channels=4, n_layers=3)).train(train)
    x = _img().requires_grad_(True)
    out = disc(x)
    _check_single_head(out)
    discriminator_loss(out.log_prob, disc(_img(seed=1)).log_one_minus_prob).backward()
    _assert_all_grads(disc)
    assert x.grad.abs().sum() > 0


def test_global_critic_any_size_and_validation():
    disc = GlobalDiscriminator(base_channels=4)
    for size in (32, 64, 128):
        _check_single_head(disc(_img(2, size)))
    assert disc.linear.in_features == 16 * 8 * 8  # 4C channels on the 8x8 grid
    with pytest.raises(ValueError):
        GlobalDiscriminator(n_layers=0)


def test_critic_receptive_fields():
    """The paper's regular D judges the whole image: its one logit depends on every pixel
    (each unit of its last map sees 61 px, DeepFill's 4 x conv5x5/2); PatchGAN's patch
    logits see 70 px each."""
    torch.manual_seed(0)
    glob = GlobalDiscriminator(base_channels=4).double().eval()
    x = torch.randn(1, 3, 128, 128, dtype=torch.float64, requires_grad=True)
    assert _field_of(x, glob.logit(x).view(1, 1, 1, 1)) == (128, 128, 1.0)
    x = torch.randn(1, 3, 128, 128, dtype=torch.float64, requires_grad=True)
    assert _field_of(x, glob.features(x))[:2] == (61, 61)
    patch = PatchDiscriminator(base_channels=4).double().eval()
    x = torch.randn(1, 3, 128, 128, dtype=torch.float64, requires_grad=True)
    assert _field_of(x, patch.net(x))[:2] == (70, 70)


def test_critic_capacity_matches_multi_rf_heads():
    """The regular-D ablation compares designs, not sizes: at the default widths the global
    critic's trainable parameters are within 2x of the multi-RF D's heads (PatchGAN: >10x)."""
    def n(m):
        return sum(p.numel() for p in m.parameters() if p.requires_grad)

    with torch.device("meta"):
        heads = n(MultiRFDiscriminator(VAE().encoder))
        glob, patch = n(GlobalDiscriminator()), n(PatchDiscriminator())
    assert 0.5 < glob / heads < 2.0
    assert patch / heads > 10


def test_critics_work_with_the_training_steps():
    """``d_step`` / ``g_step`` only read DiscOutput fields: the global critic runs in them."""
    from fsggan.losses import GeneratorLoss, LossWeights
    from fsggan.train.gan import d_step, g_step

    torch.manual_seed(0)
    gen, disc = UNetGenerator(base_channels=4), GlobalDiscriminator(base_channels=4)
    x, y = _img(), _img(seed=1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=1e-3) for m in (gen, disc))
    w0 = disc.linear.weight.detach().clone()
    g_terms, fake = g_step(gen, disc, opt_g, scaler, x=x, g=_img(seed=2), y=y, loss=GeneratorLoss(LossWeights(identity=0.0)))
    assert torch.equal(w0, disc.linear.weight) and torch.isfinite(g_terms["adversarial"])
    d_terms = d_step(disc, opt_d, scaler, real=y, fake=fake)
    assert {"loss", "real_d1", "fake_w1"} <= set(d_terms) and "real_d2" not in d_terms
    assert not torch.equal(w0, disc.linear.weight)


# ---------------------------------------------------------------- CUDA mixed precision

@pytest.mark.cuda
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
