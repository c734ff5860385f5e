"""MobileFaceNet speed on this machine: the identity loss of Stage II and the rank-k judge.

For each layout of the frozen network prints images/s of

* ``infer``: embedding a batch of 64 faces of 64x64 (evaluation: gallery, inputs, outputs);
* ``train``: forward + backward to the input, batch 16 (the identity term of a G step).

Layouts: ``plain`` (the network as published: conv -> BatchNorm -> PReLU, contiguous
memory), ``folded`` (BatchNorm folded into the convolutions, what
``MobileFaceNetEmbedder`` builds), ``folded_cl`` (folded + channels_last, what
``FaceEmbedder.place`` gives on a CPU).

    python -m benchmarks.identity_net            # real weights from ../shared/data if there
    python -m benchmarks.identity_net --repeats 5

Run it on an otherwise idle machine; the layouts are measured alternately.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from fsggan.models.identity import MobileFaceNet, build_embedder

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "weights" / "mobilefacenet_casia_068.ckpt"


def layouts(weights: Path | None) -> dict:
    folded = build_embedder("mobilefacenet", weights)
    plain = build_embedder("mobilefacenet", weights)
    plain.net = MobileFaceNet()  # un-folded copy with the same weights
    if weights is not None:
        sd = torch.load(weights, map_location="cpu", weights_only=True)["net_state_dict"]
        plain.net.load_state_dict(sd)
    plain.requires_grad_(False).eval()
    folded_cl = build_embedder("mobilefacenet", weights).place("cpu")
    return {"plain": plain, "folded": folded, "folded_cl": folded_cl}


def rate(fn, images: int, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return images * repeats / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the layouts")
    args = ap.parse_args(argv)
    weights = WEIGHTS if WEIGHTS.is_file() else None
    torch.manual_seed(0)
    x_eval = torch.rand(64, 3, 64, 64) * 2 - 1
    x_train = torch.rand(16, 3, 64, 64) * 2 - 1
    nets = layouts(weights)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, weights: {weights or 'random'}")

    def infer(net):
        with torch.inference_mode():
            net(x_eval)

    def train(net):
        x = x_train.clone().requires_grad_()
        net(x).sum().backward()

    results = {name: {"infer": [], "train": []} for name in nets}
    for _ in range(args.rounds):
        for name, net in nets.items():
            results[name]["infer"].append(rate(lambda: infer(net), 64, args.repeats))
            results[name]["train"].append(rate(lambda: train(net), 16, args.repeats))
    print(f"{'layout':<10} {'infer img/s':>12} {'train img/s':>12}")
    for name, r in results.items():
        print(f"{name:<10} {max(r['infer']):>12.1f} {max(r['train']):>12.1f}")


if __name__ == "__main__":
    main()
