"""Tests for fsggan.losses against values worked out by hand from the formulas."""

from __future__ import annotations

import math

import pytest
import torch

from fsggan.losses import (LossWeights, discriminator_loss, generator_adversarial_loss,
                           identity_loss, pixel_loss, total_variation, vae_loss)
from fsggan.models import VAEOutput

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _close(actual: torch.Tensor, expected: float, **kw):
    assert actual.dim() == 0
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), **kw)


def test_loss_weights_defaults():
    w = LossWeights()
    assert (w.pixel, w.identity, w.adversarial, w.tv) == (100.0, 50.0, 1.0, 0.0)


def _tiny_vae_output():
    # batch of 2 "images" of 1 channel x 1 x 2 pixels; latent dim 2
    mean = torch.tensor([0.0, 0.0, 0.5, -0.5]).view(2, 1, 1, 2)
    log_sigma = torch.tensor([0.0, math.log(2.0), -1.0, 0.0]).view(2, 1, 1, 2)
    mu = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [1.0, 0.0]])
    target = torch.tensor([0.5, -0.5, 0.5, 1.0]).view(2, 1, 1, 2)
    return VAEOutput(mean, log_sigma, mu, logvar), target


def test_vae_loss_by_hand():
    out, target = _tiny_vae_output()

    def nll(t, m, ls):
        return ls + 0.5 * ((t - m) / math.exp(ls)) ** 2 + HALF_LOG_2PI

    nll0 = nll(0.5, 0.0, 0.0) + nll(-0.5, 0.0, math.log(2.0))
    nll1 = nll(0.5, 0.5, -1.0) + nll(1.0, -0.5, 0.0)

    def kl(m, lv):
        return 0.5 * (m * m + math.exp(lv) - 1 - lv)

    kl0 = kl(1.0, 0.0) + kl(0.0, math.log(2.0))
    kl1 = kl(0.0, 1.0) + kl(-2.0, 0.0)
    res = vae_loss(out, target, kl_weight=0.5)
    assert set(res) == {"nll", "kl", "total"}
    _close(res["nll"], (nll0 + nll1) / 2)  # summed over pixels, mean over the batch
    _close(res["kl"], (kl0 + kl1) / 2)
    _close(res["total"], (nll0 + nll1) / 2 + 0.5 * (kl0 + kl1) / 2)
    _close(vae_loss(out, target)["total"], (nll0 + nll1 + kl0 + kl1) / 2)


def test_vae_loss_perfect_prediction_is_gaussian_entropy_floor():
    x = torch.zeros(1, 3, 4, 4)
    out = VAEOutput(x, torch.zeros_like(x), torch.zeros(1, 5), torch.zeros(1, 5))
    res = vae_loss(out, x)
    _close(res["nll"], 48 * HALF_LOG_2PI)
    _close(res["kl"], 0.0)


def test_vae_loss_stable_at_extremes():
    target = torch.ones(2, 3, 8, 8)
    mean = torch.full((2, 3, 8, 8), -1.0, requires_grad=True)
    log_sigma = torch.full((2, 3, 8, 8), -30.0, requires_grad=True)  # sigma ~ 1e-13
    mu = torch.full((2, 4), 1e3, requires_grad=True)
    logvar = torch.full((2, 4), 40.0, requires_grad=True)
    res = vae_loss(VAEOutput(mean, log_sigma, mu, logvar), target)
    assert all(torch.isfinite(v) for v in res.values())
    res["total"].backward()
    for t in (mean, log_sigma, mu, logvar):
        assert torch.isfinite(t.grad).all()


def test_vae_loss_bf16_inputs_computed_in_float32():
    out, target = _tiny_vae_output()
    res = vae_loss(VAEOutput(*(t.bfloat16() for t in out)), target.bfloat16())
    assert res["total"].dtype == torch.float32


def test_pixel_loss():
    target = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    pred = torch.zeros(2, 2)
    _close(pixel_loss(target, pred), (1 + 2 + 0 + 1) / 4)


def test_identity_loss():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0], [3.0, 3.0]])  # cos = 0, 1, 1/sqrt(2)
    _close(identity_loss(a, b), ((1 - 0) + (1 - 1) + (1 - 1 / math.sqrt(2))) / 3)
    _close(identity_loss(torch.zeros(1, 4), torch.ones(1, 4)), 1.0)  # no NaN on a zero vector


def test_adversarial_losses():
    p_real = torch.tensor([0.5, 0.25])
    p_fake = torch.tensor([0.1, 0.8])
    _close(generator_adversarial_loss(p_fake.log()), -(math.log(0.1) + math.log(0.8)) / 2)
    expected = (-math.log(0.5) - math.log(1 - 0.1) - math.log(0.25) - math.log(1 - 0.8)) / 2
    _close(discriminator_loss(p_real.log(), torch.log1p(-p_fake)), expected)


def test_total_variation():
    img = torch.tensor([[0.0, 1.0], [3.0, 5.0]]).view(1, 1, 2, 2)
    # vertical diffs |3-0|, |5-1| -> mean 3.5; horizontal |1-0|, |5-3| -> mean 1.5
    _close(total_variation(img), 5.0)
    _close(total_variation(torch.full((2, 3, 5, 5), 0.7)), 0.0)


@pytest.mark.parametrize("p", [1e-3, 0.3, 0.999])
def test_losses_with_disc_output(p):
    from fsggan.models.discriminator import combine_heads

    d = torch.full((1, 3), p, dtype=torch.float64)
    out = combine_heads(d.log(), torch.log1p(-d), 1.0)
    _close(discriminator_loss(out.log_prob, out.log_one_minus_prob),
           -math.log(p) - math.log(1 - p), rtol=1e-9, atol=1e-9)
