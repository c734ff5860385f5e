"""Training throughput (images / second) of Stage I and Stage II steps.

Runs the real step functions (``fsggan.train.vae.vae_step``, ``fsggan.train.gan.g_step`` +
``d_step``) on random batches at the default widths (VAE 32, G 64, D heads 64), 128x128,
so it measures the networks and optimisers, not data loading (the training log's
``speed/images_per_sec`` includes that). On CPU it runs a few steps in fp32; with CUDA
it also runs bf16 autocast (and channels_last with --channels-last).

    python -m benchmarks.train_throughput                       # CPU, then CUDA if available
    python -m benchmarks.train_throughput --steps 20 --batch-size 32 --identity-net none

The identity network (LightCNN-29v2 by default) has random weights here: speed only.
"""

from __future__ import annotations

import argparse

import torch

from fsggan.train.runtime import Env
from fsggan.train.speed import StepSpec, build_step, seconds_per_step


def bench(stage: str, device: torch.device, amp: str, args) -> float:
    """Images/s of ``args.steps`` timed steps after ``args.warmup`` (fsggan.train.speed)."""
    spec = StepSpec(stage, batch_size=args.batch_size, image_size=args.image_size, vae_width=args.vae_width,
                    gen_width=args.gen_width, head_width=args.head_width,
                    identity_net=None if args.identity_net == "none" else args.identity_net, amp=amp,
                    channels_last=args.channels_last)
    env = Env(device=device)
    return args.batch_size / seconds_per_step(build_step(spec, env), env, warmup=args.warmup, steps=args.steps)


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
