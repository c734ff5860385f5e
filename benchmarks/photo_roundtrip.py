#!/usr/bin/env python
"""Whole photos, round trip: does detection + alignment + paste-back lose anything
against de-occluding the fixed crop?

    python benchmarks/photo_roundtrip.py --set data64/set1-lfw --gan runs/J7_ramp [--limit N] [--out r.json]
    python benchmarks/photo_roundtrip.py --set data128/set1-lfw --gan runs/cpu_gan128 --variants detected,fixed,clean,detected@2

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

``--variants`` (comma-separated ``ALIGN[@ERODE][:FLAG...]``) adds photo paths that differ from
the shipped one in one thing each, to find what the round trip loses: ALIGN is how a face's
crop is placed, ``detected`` (the shipped similarity on the detector's five landmarks),
``clean`` (the detector's landmarks on the *clean* photo: what occlusion moves), ``fixed``
(the set's fixed crop itself: what paste-back alone costs), ``eyes``, ``robust``, ``refine``
(other fits, :func:`variant_photos`); ``@ERODE`` the feather's erosion in crop pixels
(:func:`fsggan.photos.paste.feather_mask`). FLAGs: ``plain`` as "photo_plain"; ``edge`` /
``feather``: replaced pixels reach the crop's edge, or fade out with the feather
(``fill_to_edge`` of :func:`fsggan.photos.paste.paste_back`); ``ctxM`` (an experiment, not in
the library: it lost, docs/experiments.md "`fill_to_edge`, ..."): G is given the aligned crop with M more
crop pixels of the photo on each side, so that its output also covers a border the detected crop
misses (:func:`run_with_context`; ``ctxMx``, ``ctxMm``: its other two ways).

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

from fsggan.data import load_data_config
from fsggan.data.build import build_occluders
from fsggan.data.synthesis import OcclusionSynthesizer
from fsggan.metrics import image_metrics_batch
from fsggan.images import crop_resize, read_rgb, save_png, to_tensor, to_uint8
from fsggan.photos import deocclude_photos
from fsggan.photos.align import estimate_similarity, warp_to_crop
from fsggan.photos.deocclude import PhotoFace, model_template, paste_faces, run_faces
from fsggan.photos.paste import feather_mask
from fsggan.pipeline import FSGGAN

from occluded_photos import photo_matrix


def occluder_renderer(manifest: dict, data_config: str, photo_size: int):
    """``(photo uint8, placement dict) -> occluded photo``: the set's occluders rendered at
    photo resolution with the set's placement mapped into photo coordinates."""
    cfg = load_data_config(data_config)
    pool = cfg.occluders.seen if manifest["occluder_pool"] == "seen" else cfg.occluders.new
    library = build_occluders(pool)
    index = {o.name: i for i, o in enumerate(library)}
    synth = OcclusionSynthesizer(library, image_size=photo_size, canvas_size=cfg.occluders.canvas_size,
                                 supersample=cfg.occluders.supersample)
    box, size = manifest["crop"], manifest["image_size"]

    def render(photo: np.ndarray, placements: list[dict]) -> np.ndarray:
        return synth.occlude_photo(photo, [{"index": index[pl["occluder"]], "matrix": photo_matrix(pl["matrix"], box, size)}
                                           for pl in placements])
    return render


def detected(faces, box) -> bool:
    """True when some face's landmark centre lies inside the crop box."""
    for f in faces:
        cx, cy = np.asarray(f.landmarks, np.float64).mean(0)
        if box[0] <= cx <= box[2] and box[1] <= cy <= box[3]:
            return True
    return False


ALIGNS = ("detected", "clean", "fixed", "eyes", "robust", "refine")


def robust_similarity(src, dst, c=0.06, iters=10):
    """Iteratively reweighted (Cauchy weights, scale ``c`` template eye distances)."""
    eye = np.linalg.norm(dst[1] - dst[0])
    w = np.ones(len(src))
    for _ in range(iters):
        m = estimate_similarity(src, dst, w)
        r = np.linalg.norm(src @ m[:, :2].T + m[:, 2] - dst, axis=1) / eye
        w = 1.0 / (1.0 + (r / c) ** 2)
    return m


def inner(images: np.ndarray, fraction: float) -> np.ndarray:
    """The central ``fraction`` of each (N, S, S, C) crop (1: all of it)."""
    size = images.shape[1]
    cut = int(round(size * (1 - fraction) / 2))
    return images[:, cut:size - cut, cut:size - cut] if cut else images


def parse_variant(spec: str) -> dict:
    """``ALIGN[@ERODE][:FLAG...]`` -> {align, erode (None: default), keep, edge (None: default), ctx}."""
    head, *flags = spec.split(":")
    align, _, erode = head.partition("@")
    out = {"align": align, "erode": int(erode) if erode.isdigit() else None, "keep": True, "edge": None, "ctx": 0,
           "ctx_fill": "edge"}
    bad = align not in ALIGNS or (erode and not erode.isdigit())
    for flag in flags:
        if flag == "plain":
            out["keep"] = False
        elif flag in ("edge", "feather"):
            out["edge"] = flag == "edge"
        elif flag.startswith("ctx") and flag[3:].rstrip("xm").isdigit():
            out["ctx"] = int(flag[3:].rstrip("xm"))
            out["ctx_fill"] = {"x": "input", "m": "margin"}.get(flag[-1], "edge")
        else:
            bad = True
    if bad:
        raise SystemExit(f"photo_roundtrip.py: error: variant {spec!r}: give ALIGN[@ERODE][:FLAG...], "
                         f"ALIGN one of {', '.join(ALIGNS)}, FLAG plain, edge, feather or ctxM")
    return out


def run_with_context(model, faces, margin: int, fill: str) -> None:
    """Fill ``output`` of faces whose ``input`` has ``margin`` crop px of the photo around the
    model's crop: V sees the crop; its structure image is edge-padded by ``margin``
    (``fill="edge"``) or surrounded by the input itself (``"input"``); G, fully convolutional,
    de-occludes all of it. ``"margin"``: the edge-padded run's output in the margin only, G's
    output without context inside the crop (blended over 2 px)."""
    size = model.image_size
    inside = (slice(None), slice(None), slice(margin, margin + size), slice(margin, margin + size))
    for start in range(0, len(faces), 32):
        chunk = faces[start:start + 32]
        x = torch.stack([to_tensor(f.input) for f in chunk])
        with torch.inference_mode():
            g = model.vae(x[inside])
            if fill == "input":
                big = x.clone()
                big[inside] = g
            else:
                big = torch.nn.functional.pad(g, (margin,) * 4, mode="replicate")
            y = model.generator(x, big)
            if fill == "margin":
                w = torch.from_numpy(np.pad(feather_mask(size, 2), margin))
                y = w * torch.nn.functional.pad(model.generator(x[inside], g), (margin,) * 4) + (1 - w) * y
        for f, yo in zip(chunk, to_uint8(y)):
            f.output = yo


def variant_photos(model, photos, faces_of, clean_faces_of, box_of, spec: str) -> list[np.ndarray]:
    """The photo path of ``spec`` (see the module docstring) for each photo: the detected
    faces re-aligned as the variant says, de-occluded and pasted back."""
    v = parse_variant(spec)
    align, size, ctx = v["align"], model.image_size, v["ctx"]
    if align == "refine":  # landmarks found again on the first pass's de-occluded photo
        from fsggan.photos.deocclude import face_finder

        first = variant_photos(model, photos, faces_of, clean_faces_of, box_of, spec.replace("refine", "detected"))
        detect = face_finder(None, 20)
        clean_faces_of = [detect(p) for p in first]
        spec, align = spec.replace("refine", "clean"), "clean"
    template = model_template(model)
    per_photo = []
    for photo, faces, clean, box in zip(photos, faces_of, clean_faces_of, box_of):
        out = []
        for f in faces:
            if align == "fixed":  # the fixed crop: photo box -> crop pixels
                k = size / (box[2] - box[0])
                m = np.array([[k, 0.0, -k * box[0]], [0.0, k, -k * box[1]]])
            else:
                lm = f.landmarks
                if align == "clean":  # the clean photo's face nearest to this one
                    near = [c for c in clean if np.abs(np.mean(c.landmarks, 0) - np.mean(lm, 0)).max() < 20]
                    lm = near[0].landmarks if near else lm
                lm = np.asarray(lm, np.float64)
                if align == "eyes":
                    m = estimate_similarity(lm[:2], template[:2])
                elif align == "robust":
                    m = robust_similarity(lm, template)
                else:
                    m = estimate_similarity(lm, template)
            m = m + np.array([[0.0, 0.0, ctx], [0.0, 0.0, ctx]])  # ctx extra crop px on each side
            out.append(PhotoFace(box=f.box, landmarks=f.landmarks, score=f.score, matrix=m,
                                 input=warp_to_crop(photo, m, size + 2 * ctx)))
        per_photo.append(out)
    faces = [f for faces in per_photo for f in faces]
    run_with_context(model, faces, ctx, v["ctx_fill"]) if ctx else run_faces(model, faces, 32)
    mask = feather_mask(size + 2 * ctx, v["erode"])
    edge = {} if v["edge"] is None else {"fill_to_edge": v["edge"]}
    return [paste_faces(p, faces, mask, keep_detail=v["keep"], **edge) for p, faces in zip(photos, per_photo)]


def run_chunk(model, items, args, render, set_dir: Path, stats: dict) -> None:
    """Both paths for one chunk of manifest items; appends per-image scores to ``stats``."""
    photos, clean_photos, clean, prepared, box_of = [], [], [], [], []
    for it in items:
        photo, _ = read_rgb(Path(args.root) / it["source"])
        placements = it["placement"] if isinstance(it["placement"], list) else [it["placement"]]
        clean_photos.append(photo)
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
    variants = []
    if args.variants:
        from fsggan.photos.deocclude import face_finder

        detect = face_finder(None, 20)
        clean_faces = [detect(p) for p in clean_photos] if any("clean" in v for v in args.variants) else [[]] * len(items)
        for spec in args.variants:
            out = variant_photos(model, photos, [f for _, f in results], clean_faces, box_of, spec)
            variants.append((f"photo[{spec}]", np.stack([crop_resize(o, b, size) for o, b in zip(out, box_of)])))
    for name, pred in (("input", fixed), ("aligned", aligned), ("photo", back), ("photo_plain", plain), *variants):
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
        for name in ("input", "aligned", "photo", "photo_plain", *stats["variant_names"]):
            rows = [r for r, k in zip(stats[name], keep) if k]
            ps = [r["psnr"] for r in rows if math.isfinite(r["psnr"])]
            out[f"{subset}/{name}"] = {"psnr": float(np.mean(ps)), "ssim": float(np.mean([r["ssim"] for r in rows]))}
        a = out[f"{subset}/aligned"]
        for name in ("photo", "photo_plain", *stats["variant_names"]):
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
    ap.add_argument("--variants", default="", help="extra photo paths, ALIGN[@ERODE][:plain], comma-separated "
                    "(module docstring)")
    args = ap.parse_args(argv)
    set_dir = Path(args.set)
    manifest = json.loads((set_dir / "manifest.json").read_text())
    args.root = args.root or manifest["dataset_root"]
    args.crop = manifest["crop"]
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        parse_variant(v)
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
    stats |= {"time_aligned": 0.0, "time_photo": 0.0, "variant_names": [f"photo[{v}]" for v in args.variants]}
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
