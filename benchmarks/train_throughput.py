"""Training throughput (images / second) of Stage I and Stage II steps.

Runs the real step functions (``fsggan.train.vae.vae_step``, ``fsggan.train.gan.g_step`` +
``d_step``) on random batches at the default widths (VAE 32, G 64, D heads 64), 128x128,
so it measures the networks and optimisers, not data loading (the training log's
``speed/images_per_sec`` includes that). On CPU it runs a few steps in fp32; with CUDA
it also runs bf16 autocast (and channels_last with --channels-last).

    python benchmarks/train_throughput.py                       # CPU, then CUDA if available
    python benchmarks/train_throughput.py --steps 20 --batch-size 32 --identity-net none

The identity network (LightCNN-29v2 by default) has random weights here: speed only.
"""

from __future__ import annotations

import argparse
import time

import torch

from fsggan.losses import LossWeights
from fsggan.models import VAE, MultiRFDiscriminator, UNetGenerator
from fsggan.train.gan import d_step, g_step
from fsggan.train.vae import _Reconstruct, vae_step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(stage: str, device: torch.device, amp: str, args) -> float:
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.rand(args.batch_size, 3, args.image_size, args.image_size, device=device).mul(2).sub(1)
    y = torch.rand_like(x).mul(2).sub(1)
    x, y = x.contiguous(memory_format=fmt), y.contiguous(memory_format=fmt)
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp == "bf16" else (lambda: None)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    v = VAE(base_channels=args.vae_width, image_size=args.image_size).to(device, memory_format=fmt)
    if stage == "vae":
        net = _Reconstruct(v).train()
        opt = torch.optim.Adam(v.parameters(), lr=1e-4, betas=(0.5, 0.999))

        def step():
            vae_step(net, opt, scaler, x=x, y=y, amp=ctx())
    else:
        v.eval().requires_grad_(False)
        gen = UNetGenerator(base_channels=args.gen_width).to(device, memory_format=fmt)
        disc = MultiRFDiscriminator(trunk=v.encoder, trunk_mode="frozen", head_channels=args.head_width).to(device)
        opt_g = torch.optim.Adam(gen.parameters(), lr=1e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=1e-4, betas=(0.5, 0.999))
        ident = None
        if args.identity_net != "none":
            from fsggan.models.identity import build_embedder

            ident = build_embedder(args.identity_net, None).to(device)
        weights = LossWeights(identity=50.0 if ident is not None else 0.0)

        def step():
            with torch.no_grad():
                g = v(x)
            _, fake = g_step(gen, disc, opt_g, scaler, x=x, g=g, y=y, weights=weights, identity_net=ident,
                             amp=ctx())
            d_step(disc, opt_d, scaler, real=y, fake=fake, amp=ctx())

    for _ in range(args.warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--vae-width", type=int, default=32)
    p.add_argument("--gen-width", type=int, default=64)
    p.add_argument("--head-width", type=int, default=64)
    p.add_argument("--identity-net", default="lightcnn29v2", help="an EMBEDDER_NAMES entry, or none")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 3 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--cpu-only", action="store_true")
    args = p.parse_args(argv)

    runs = [(torch.device("cpu"), "none")]
    if torch.cuda.is_available() and not args.cpu_only:
        runs += [(torch.device("cuda"), "none"), (torch.device("cuda"), "bf16")]
    print(f"batch {args.batch_size}, {args.image_size}x{args.image_size}, widths VAE {args.vae_width} / "
          f"G {args.gen_width} / D heads {args.head_width}, identity net {args.identity_net}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'device':<28} {'amp':<5} {'stage I img/s':>14} {'stage II img/s':>15}")
    for device, amp in runs:
        steps = args.steps or (3 if device.type == "cpu" else 20)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        args_run = argparse.Namespace(**{**vars(args), "steps": steps})
        rates = [bench(stage, device, amp, args_run) for stage in ("vae", "gan")]
        print(f"{name:<28} {amp:<5} {rates[0]:>14.1f} {rates[1]:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
