#!/usr/bin/env python
"""Occlusion-synthesis throughput (images/s at 128x128).

    python -m benchmarks.occlusion_throughput [--occluders procedural|PATH] [--batch 256] [--seconds 3]

Measures, on random "faces" with the mean LFW landmarks:
- CPU, one thread (torch.set_num_threads(1)): what one DataLoader worker can do, for the
  per-item path (OccludedFaces.__getitem__ occludes a batch of one) and for batches;
- GPU (when CUDA is available): whole batches on the device (synthesizer(clean, ...)),
  the path for occluding on the GPU inside the training loop.
Only synthesis is timed (placement sampling + warping + compositing), not JPEG decoding.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fsggan.data import OccluderLibrary, OcclusionSynthesizer, item_rng, procedural_occluders, template_landmarks


def bench(synth, device, batch, seconds):
    clean = torch.rand(batch, 3, 128, 128, device=device) * 2 - 1
    lm = np.stack([template_landmarks("lfw")] * batch)
    synth(clean, lm, [item_rng(0, 0, i) for i in range(batch)])  # warm-up (bank upload, caches)
    if device != "cpu":
        torch.cuda.synchronize()
    n, t0, it = 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds or it < 2:
        synth(clean, lm, [item_rng(0, it, i) for i in range(batch)])
        if device != "cpu":
            torch.cuda.synchronize()
        n += batch
        it += 1
    return n / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description="occlusion-synthesis throughput")
    ap.add_argument("--occluders", default="procedural", help="'procedural' or a folder of RGBA PNGs")
    ap.add_argument("--batch", type=int, default=256, help="GPU batch size")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--supersample", type=int, default=2)
    args = ap.parse_args(argv)
    lib = (
        OccluderLibrary(procedural_occluders(count=40, seed=0))
        if args.occluders == "procedural"
        else OccluderLibrary.from_folder(args.occluders)
    )
    synth = OcclusionSynthesizer(lib, image_size=128, supersample=args.supersample)
    print(f"occluders: {len(lib)} ({args.occluders}), 128x128, supersample {args.supersample}")
    torch.set_num_threads(1)
    for b in (1, 32):
        r = bench(synth, "cpu", b, args.seconds)
        print(f"cpu, 1 thread, batch {b:4d}: {r:8.1f} images/s per core")
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        for b in sorted({64, args.batch}):
            r = bench(synth, "cuda", b, args.seconds)
            print(f"gpu ({name}), batch {b:4d}: {r:8.1f} images/s")
    else:
        print("gpu: CUDA not available")


if __name__ == "__main__":
    main()
