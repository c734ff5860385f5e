"""Parameter counts, forward FLOPs (128x128, batch 1) and receptive fields (G's encoder, D's heads).

    python -m benchmarks.model_stats

FLOPs come from torch.utils.flop_counter.FlopCounterMode (a multiply-add counts as 2).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from fsggan.models import VAE, GlobalDiscriminator, MultiRFDiscriminator, PatchDiscriminator, UNetGenerator

SIZE = 128


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def gflops(fn, *args) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() / 1e9


def receptive_fields(gen: UNetGenerator, size: int = SIZE, mass: float = 0.9, trials: int = 4):
    """Per encoder block: theoretical field (side of the box where d unit / d input != 0) and an
    "effective" one (side of the centred square holding ``mass`` of |grad|, Luo et al. 2016),
    for the centre unit, random weights and inputs, eval mode, float64."""
    gen = gen.double().eval()
    out = []
    for block in range(3):
        grad = torch.zeros(size, size, dtype=torch.float64)
        for _ in range(trials):
            x = torch.randn(1, gen.in_channels, size, size, dtype=torch.float64, requires_grad=True)
            f = gen.encode(x)[block]
            f[0, :, f.shape[-2] // 2, f.shape[-1] // 2].sum().backward()
            grad += x.grad.abs().sum((0, 1))
        rows = (grad > 0).any(1).nonzero().squeeze(1)
        theoretical = int(rows.max() - rows.min() + 1)
        cy, cx = (grad > 0).nonzero().float().mean(0).round().long().tolist()
        total, side = grad.sum(), 1
        while side < size and grad[max(cy - side // 2, 0):cy + (side + 1) // 2,
                                   max(cx - side // 2, 0):cx + (side + 1) // 2].sum() < mass * total:
            side += 1
        out.append((theoretical, side))
    return out


def disc_head_fields(size: int = SIZE) -> list[tuple[int, float]]:
    """Per multi-RF D head: side of the input box that its centre logit depends on, and the
    fraction of that box with non-zero gradient (random weights, eval mode, float64)."""
    vae = VAE(base_channels=4, latent_dim=8, image_size=size).double().eval()
    disc = MultiRFDiscriminator(trunk=vae.encoder, head_channels=4).double().eval()
    out = []
    for i in range(len(disc.heads)):
        x = torch.randn(1, 3, size, size, dtype=torch.float64, requires_grad=True)
        logits = disc.head_logits(x)[i]
        logits[0, 0, logits.shape[-2] // 2, logits.shape[-1] // 2].backward()
        hit = x.grad.abs().sum((0, 1)) > 0
        rows = hit.any(1).nonzero().squeeze(1)
        cols = hit.any(0).nonzero().squeeze(1)
        box = hit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        out.append((int(rows.max() - rows.min() + 1), box.double().mean().item()))
    return out


def main() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    vae, gen = VAE().eval(), UNetGenerator().eval()
    gen_plain = UNetGenerator(hdc=False).eval()
    disc = MultiRFDiscriminator(trunk=vae.encoder).eval()
    disc_copy = MultiRFDiscriminator(trunk=vae.encoder, trunk_mode="copy").eval()
    disc3 = MultiRFDiscriminator(trunk=vae.encoder, levels=(1, 2, 3)).eval()
    glob = GlobalDiscriminator().eval()
    patch = PatchDiscriminator().eval()

    rows = [
        ("VAE (base 32, latent 256)", n_params(vae), gflops(vae.reconstruct, x, False)),
        ("  encoder", n_params(vae.encoder), gflops(vae.encoder, x)),
        ("  encoder body (D trunk)", n_params(vae.encoder.body), gflops(vae.encoder.body, x)),
        ("G, HDC U-Net (base 64)", n_params(gen), gflops(gen, x, x)),
        ("G w/o HDC (base 64)", n_params(gen_plain), gflops(gen_plain, x, x)),
        ("D multi-RF, 4 heads only (frozen/tied trainables)", n_params(disc), float("nan")),
        ("D multi-RF, 4 heads + trunk (forward)", n_params(disc_copy), gflops(disc, x)),
        ("D multi-RF levels 1-3: heads (GFLOPs with trunk)", n_params(disc3), gflops(disc3, x)),
        ("D global, DeepFill v1 (base 16, 4 layers)", n_params(glob), gflops(glob, x)),
        ("D PatchGAN (base 64, 3 layers)", n_params(patch), gflops(patch, x)),
    ]
    try:
        from fsggan.models.identity import EMBEDDER_NAMES, build_embedder
    except ImportError as exc:
        rows.append((f"identity nets: n/a ({exc})", None, None))
    else:
        for name in EMBEDDER_NAMES:
            try:
                net = build_embedder(name)
            except Exception as exc:  # e.g. weights required; report and go on
                rows.append((f"identity {name}: n/a ({type(exc).__name__})", None, None))
                continue
            rows.append((f"identity {name}", n_params(net), gflops(net, x)))

    print(f"{'model':52s} {'params':>12s} {'GFLOPs@128':>11s}")
    for name, n, f in rows:
        n_s = f"{n:,}" if n is not None else "n/a"
        f_s = f"{f:.3f}" if f is not None and f == f else "-"
        print(f"{name:52s} {n_s:>12s} {f_s:>11s}")

    print(f"\nMulti-RF D head receptive fields at {SIZE}x{SIZE} (px, centre logit; levels H/2, H/4, H/8, H/16):")
    print("  " + "  ".join(f"head{i + 1}: {side:3d} ({side / SIZE:.2f}, {cover:.0%} of the box)"
                           for i, (side, cover) in enumerate(disc_head_fields())))

    print(f"\nGenerator encoder receptive fields at {SIZE}x{SIZE} (px; paper: ~1/4, ~1/2, whole):")
    for label, hdc in (("HDC", True), ("w/o HDC", False)):
        g = UNetGenerator(base_channels=8, hdc=hdc)  # fields do not depend on width
        fields = receptive_fields(g)
        print(f"  {label:8s}" + "  ".join(
            f"block{i + 1}: {t:3d} ({t / SIZE:.2f}) eff90 {e:3d} ({e / SIZE:.2f})"
            for i, (t, e) in enumerate(fields)))


if __name__ == "__main__":
    main()
