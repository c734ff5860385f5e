#!/usr/bin/env python
"""CPU images/s of one model three ways: PyTorch float32, PyTorch with bf16 autocast (--amp bf16)
and onnxruntime on the exported model.onnx; with how far each output lies from float32's.

    python -m benchmarks.onnx_speed                        # the paper widths at 128 px, untrained
    python -m benchmarks.onnx_speed --model fsggan-lfw128  # an exported model folder (its weights)
    python -m benchmarks.onnx_speed --preset cpu64 --threads 2 --batch 16

Times ``--repeats`` batches of ``--batch`` random faces in [-1, 1] after one warm-up batch
(median batch time -> images/s), each runtime with ``--threads`` threads (torch's
``set_num_threads``, onnxruntime's ``intra_op_num_threads``). The distances: max |difference|
to float32, and PSNR against float32 (outputs in [-1, 1], peak-to-peak 2). Untrained weights
time the same as trained ones; their outputs' distances are only indicative. Run on an idle
machine, or say it was shared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fsggan.onnx_export import export_onnx
from fsggan.api import FSGGAN


def build(args) -> FSGGAN:
    if args.model:
        return FSGGAN.from_pretrained(args.model, device="cpu")
    from benchmarks.model_file import PRESETS
    from fsggan.models import VAE, UNetGenerator

    torch.manual_seed(0)
    vae_kw, gen_kw = PRESETS[args.preset]
    return FSGGAN(VAE(**vae_kw), UNetGenerator(**gen_kw), device="cpu", image_size=vae_kw["image_size"])


def images_per_s(fn, x: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    out = fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return len(x) / statistics.median(times), out


def distance(a: np.ndarray, ref: np.ndarray) -> str:
    mse = float(np.mean((a.astype(np.float64) - ref) ** 2))
    psnr = "inf" if mse == 0 else f"{10 * np.log10(4.0 / mse):.1f}"
    return f"max |diff| {np.abs(a - ref).max():.2e}, PSNR {psnr} dB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a model folder (fsggan-export); default: untrained networks of --preset")
    ap.add_argument("--preset", choices=("paper128", "cpu64"), default="paper128")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    model = build(args)
    size = model.image_size
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch, 3, size, size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def torch_run(batch):
        return model.run(torch.from_numpy(batch))[0].numpy()

    rate32, ref = images_per_s(torch_run, x, args.repeats)
    model.amp = torch.bfloat16
    rate16, out16 = images_per_s(torch_run, x, args.repeats)
    model.amp = None
    rate_ort, out_ort = images_per_s(lambda b: sess.run(["deoccluded"], {"occluded": b})[0], x, args.repeats)
    print(f"{size}x{size} px, batch {args.batch}, {args.threads} thread(s), torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}")
    print(f"  PyTorch float32       {rate32:8.1f} images/s")
    print(f"  PyTorch bf16 autocast {rate16:8.1f} images/s   {distance(out16, ref)}")
    print(f"  onnxruntime float32   {rate_ort:8.1f} images/s   {distance(out_ort, ref)}")


if __name__ == "__main__":
    main()
