#!/usr/bin/env python
"""Whole photos, round trip: does detection + alignment + paste-back lose anything
against de-occluding the fixed crop?

    python -m benchmarks.photo_roundtrip --set data64/set1-lfw --gan runs/J7_ramp [--limit N] [--out r.json]

For every face of a prepared set (``fsggan-prepare-data``), the occluder is rendered onto the
full LFW photo with the placement the set used, in photo coordinates (the manifest's matrix
maps the cut-out into the crop; the crop box maps the crop into the photo). Then:

- ``--aligned`` path: cut the fixed crop (the set's box, as the data pipeline does) out of
  the occluded photo and de-occlude it;
- photo path: de-occlude the whole occluded photo (detect every face, align, de-occlude,
  paste back), then cut the same fixed crop out of the result; "photo" pastes back keeping the
  photo's detail where the model changed little (the default), "photo_plain" pastes the warped
  output crop as it is (``keep_detail=False``; replaced pixels still reach the crop's edge, the
  library's ``fill_to_edge`` default).

Both are scored against the set's clean crop (PSNR / SSIM of docs/design.md, Metrics; with
``--inner F`` only the central fraction F of it, which tells a loss at the border of the fixed
crop, where a differently framed face crop may not reach, from a loss inside the face). A
photo in which the detector finds no face comes back unchanged; it is scored as it comes
back ("all") and left out in "detected". A face counts as detected when a face's landmarks
lie inside the crop box. The occluded crop's own score is the baseline; the mean absolute
difference between the fixed crop of the rendered photo and the set's occluded crop checks the
rendering (the set rendered at crop resolution, this at photo resolution: not zero).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fsggan.metrics import image_metrics_batch
from fsggan.images import crop_resize, read_rgb, save_png, to_tensor, to_uint8
from fsggan.photos import deocclude_photos
from fsggan.photos.deocclude import paste_faces
from fsggan.photos.paste import feather_mask
from fsggan.api import FSGGAN

from benchmarks.photo_sets import occluder_renderer


def detected(faces, box) -> bool:
    """True when some face's landmark centre lies inside the crop box."""
    for f in faces:
        cx, cy = np.asarray(f.landmarks, np.float64).mean(0)
        if box[0] <= cx <= box[2] and box[1] <= cy <= box[3]:
            return True
    return False


def inner(images: np.ndarray, fraction: float) -> np.ndarray:
    """The central ``fraction`` of each (N, S, S, C) crop (1: all of it)."""
    size = images.shape[1]
    cut = int(round(size * (1 - fraction) / 2))
    return images[:, cut:size - cut, cut:size - cut] if cut else images


def run_chunk(model, items, args, render, set_dir: Path, stats: dict) -> None:
    """Both paths for one chunk of manifest items; appends per-image scores to ``stats``."""
    photos, clean, prepared, box_of = [], [], [], []
    for it in items:
        photo, _ = read_rgb(Path(args.root) / it["source"])
        placements = it["placement"] if isinstance(it["placement"], list) else [it["placement"]]
        photos.append(render(photo, placements))
        clean.append(read_rgb(set_dir / "clean" / it["name"])[0])
        prepared.append(read_rgb(set_dir / "occluded" / it["name"])[0])
        h, w = photo.shape[:2]
        left, top, right, bottom = args.crop
        box_of.append((left * w / 250, top * h / 250, right * w / 250, bottom * h / 250))
    size = model.image_size
    fixed = np.stack([crop_resize(p, b, size) for p, b in zip(photos, box_of)])
    t0 = time.perf_counter()
    y, _ = model.run(torch.stack([to_tensor(x) for x in fixed]))
    stats["time_aligned"] += time.perf_counter() - t0
    aligned = to_uint8(y)
    t0 = time.perf_counter()
    if args.save_photos and not stats["input"]:  # the first chunk
        Path(args.save_photos).mkdir(parents=True, exist_ok=True)
        for it, p in zip(items, photos):
            save_png(Path(args.save_photos) / it["name"], p)
    results = deocclude_photos(model, photos, batch_size=32)
    stats["time_photo"] += time.perf_counter() - t0
    back = np.stack([crop_resize(out, b, size) for (out, _), b in zip(results, box_of)])
    mask = feather_mask(size)
    plain = np.stack([crop_resize(paste_faces(p, faces, mask, keep_detail=False), b, size)
                      for p, (_, faces), b in zip(photos, results, box_of)])
    target = np.stack(clean)
    for name, pred in (("input", fixed), ("aligned", aligned), ("photo", back), ("photo_plain", plain)):
        stats.setdefault(name, [])
        stats[name] += image_metrics_batch(*(inner(a, args.inner) for a in (pred, target)))
    stats["detected"] += [detected(faces, b) for (_, faces), b in zip(results, box_of)]
    stats["faces"] += [len(faces) for _, faces in results]
    stats["render_diff"] += list(np.abs(fixed.astype(float) - np.stack(prepared)).mean(axis=(1, 2, 3)))


def summary(stats: dict) -> dict:
    det = np.array(stats["detected"], bool)
    out = {"images": len(det), "detected": int(det.sum()), "detection_rate": float(det.mean()),
           "mean_faces_per_photo": float(np.mean(stats["faces"]))}
    for subset, keep in (("all", np.ones_like(det)), ("detected", det)):
        for name in ("input", "aligned", "photo", "photo_plain"):
            rows = [r for r, k in zip(stats[name], keep) if k]
            ps = [r["psnr"] for r in rows if math.isfinite(r["psnr"])]
            out[f"{subset}/{name}"] = {"psnr": float(np.mean(ps)), "ssim": float(np.mean([r["ssim"] for r in rows]))}
        a = out[f"{subset}/aligned"]
        for name in ("photo", "photo_plain"):
            p = out[f"{subset}/{name}"]
            out[f"{subset}/{name}-aligned"] = {"psnr": p["psnr"] - a["psnr"], "ssim": p["ssim"] - a["ssim"]}
    out["render_vs_prepared_mean_abs_levels"] = float(np.mean(stats["render_diff"]))
    out["seconds_per_photo"] = {"aligned": stats["time_aligned"] / len(det), "photo": stats["time_photo"] / len(det)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="data64/set1-lfw", help="a prepared set folder (manifest.json, clean/)")
    ap.add_argument("--gan", default="runs/J7_ramp", help="Stage II checkpoint or run directory")
    ap.add_argument("--vae", default=None)
    ap.add_argument("--data-config", default="configs/data/lfw.yaml", help="the data config with the set's occluders")
    ap.add_argument("--root", default=None, help="LFW folder (default: the manifest's dataset_root)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N faces")
    ap.add_argument("--one-per-identity", action="store_true", help="only each identity's first face (before --limit)")
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--inner", type=float, default=1.0, help="score only the central fraction of each crop "
                    "(0.8: a 10 %% border left out), to tell losses at the crop's border from losses in the face")
    ap.add_argument("--out", default=None, help="write the summary as JSON here")
    ap.add_argument("--save-photos", default=None, help="also write the first chunk's occluded photos here (PNG)")
    args = ap.parse_args(argv)
    set_dir = Path(args.set)
    manifest = json.loads((set_dir / "manifest.json").read_text())
    args.root = args.root or manifest["dataset_root"]
    args.crop = manifest["crop"]
    items = manifest["images"]
    if args.one_per_identity:
        firsts = {}
        for it in items:
            firsts.setdefault(it["identity"], it)
        items = list(firsts.values())
    items = items[: args.limit]
    model = FSGGAN.from_checkpoints(gan=args.gan, vae=args.vae, device="cpu")
    render = occluder_renderer(manifest, args.data_config, 250)
    stats = {k: [] for k in ("input", "aligned", "photo", "photo_plain", "detected", "faces", "render_diff")}
    stats |= {"time_aligned": 0.0, "time_photo": 0.0}
    for start in range(0, len(items), args.chunk):
        run_chunk(model, items[start:start + args.chunk], args, render, set_dir, stats)
        print(f"\r{start + len(items[start:start + args.chunk])}/{len(items)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    result = {"set": str(set_dir), "gan": args.gan, **summary(stats)}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
