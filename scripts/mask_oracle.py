#!/usr/bin/env python
"""How much does the blended head's predicted mask cost? (a diagnostic, `generator.output: blend`)

Scores one Stage II model on a prepared set three ways:

* ``as_is``: the model's output ``m * G_rgb + (1 - m) * x``;
* ``true_mask``: its output inside the set's true synthesis mask M, the input outside
  (``out * M + x * (1 - M)``): what a perfect mask would give with the same fill;
* ``hard_mask``: ``G_rgb`` where the predicted ``m > 0.5``, the input elsewhere.

    python scripts/mask_oracle.py runs/cpu_gan data64/set1-lfw --out diag/ \
        --recognizer-weights ../shared/data/weights/mobilefacenet_casia_068.ckpt

Prints PSNR / SSIM / MobileFaceNet rank-1 per variant; the predictions stay in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fsggan.data import PreparedSet
from fsggan.eval.evaluate import evaluate_set
from fsggan.eval.recognition import build_recognizer
from fsggan.images import quantize, save_image
from fsggan.pipeline import FSGGAN


@torch.inference_mode()
def write_variants(model: FSGGAN, set_dir: Path, out: Path) -> dict[str, Path]:
    if model.generator.output != "blend":
        raise SystemExit(f"{model.checkpoints.get('gan')}: this generator has no predicted mask (output: "
                         f"{model.generator.output}); the diagnostic needs generator.output: blend")
    dirs = {k: out / k for k in ("as_is", "true_mask", "hard_mask")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for batch in DataLoader(PreparedSet(set_dir), batch_size=64):
        x, true_mask = batch["occluded"].to(model.device), batch["mask"].to(model.device)
        y, m = model.generator(x, model.vae(x), return_mask=True)
        rgb = ((y - (1 - m) * x) / m.clamp_min(1e-6)).clamp(-1, 1)  # G_rgb, exact where m > 0
        variants = {"as_is": y, "true_mask": y * true_mask + x * (1 - true_mask),
                    "hard_mask": torch.where(m > 0.5, rgb, x)}
        for key, images in variants.items():
            for name, img in zip(batch["name"], quantize(images.float()).cpu()):
                save_image(img, dirs[key] / name)
    return dirs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gan", help="Stage II checkpoint or run directory (blended output head)")
    ap.add_argument("set_dir", type=Path, help="a prepared set (with mask/)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the three prediction folders")
    ap.add_argument("--recognizer-weights", default=None,
                    help="MobileFaceNet weights: its rank-1 is added (the training loss's network: not independent)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    model = FSGGAN.from_checkpoints(gan=args.gan, device=args.device)
    dirs = write_variants(model, args.set_dir, args.out)
    recs = {"dlib_resnet": build_recognizer("dlib_resnet").place(model.device)}
    if args.recognizer_weights:
        recs["mobilefacenet"] = build_recognizer("mobilefacenet", args.recognizer_weights).place(model.device)
    print("| variant | PSNR | SSIM | " + " | ".join(f"{n} rank-1 (%)" for n in recs) + " |\n|---|---|---|"
          + "---|" * len(recs))
    for key, folder in dirs.items():
        r = evaluate_set(args.set_dir, method=key, predictions=folder, recognizers=recs, device=model.device,
                         progress=False)
        q = r["quality"][key]
        rank1 = " | ".join(f"{100 * r['recognition'][n][key]['rank1']['mean']:.1f}" for n in recs)
        print(f"| {key} | {q['psnr']['mean']:.2f} | {q['ssim']['mean']:.4f} | {rank1} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
