"""Occluded WHOLE LFW photos, placed exactly as the prepared Set1 / Set2 crops are.

``fsggan-prepare-data`` cuts the face box out of each 250x250 LFW photo (``FaceCrop.box_for``),
resizes it to ``image_size`` and occludes the crop. Here the same synthesizer, with the same
per-image seed (``output.seed``, set code, crc32 of the file name), the same landmark source and
the same occluder pool, draws the placement in crop coordinates; its matrix is then moved into
photo coordinates (shifted by the box, scaled by box side / image size) and the occluder is
rendered onto the full photo. Cropping the result gives the prepared set's image again, up to
the rounding of the stored matrix.

:func:`render_set` renders the photos of chosen records (benchmarks/detectors.py);
:func:`occluder_renderer` renders a prepared set's own placements, read from its manifest
(benchmarks/photo_roundtrip.py). Run from the repository root (the config's paths are relative
to it).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsggan.data.build import build_occluders, build_splits, face_crop, make_synthesizer
from fsggan.data.config import SET_CODES, PrepareConfig, load_data_config
from fsggan.data.faces import FaceRecord, landmarks_to_crop, read_dataset
from fsggan.data.landmarks import DlibLandmarker, resolve_landmark_source, template_landmarks
from fsggan.data.synthesis import OcclusionSynthesizer
from fsggan.images import crop_resize, read_rgb, to_tensor

POOLS = {"set1": "seen", "set2": "new"}


@dataclass
class OccludedPhoto:
    name: str              # the prepared sets' file name, <stem>.png
    identity: str
    clean: np.ndarray      # (H, W, 3) uint8, the LFW photo
    occluded: np.ndarray   # the same photo with the occluder rendered on it
    box: tuple[float, float, float, float]  # the prepared sets' face box in photo pixels
    occluder: str


def pick_photos(cfg: PrepareConfig, per_identity: int = 1, seed: int = 0, limit: int | None = None) -> list[FaceRecord]:
    """``per_identity`` seeded photos of each test identity (the 200 protocol identities for LFW)."""
    splits, _ = build_splits(cfg, read_dataset(cfg.dataset.kind, cfg.dataset.root))
    by_id: dict[str, list[FaceRecord]] = {}
    for r in splits.test:
        by_id.setdefault(r.identity, []).append(r)
    out = []
    for ident in sorted(by_id)[:limit]:
        recs = by_id[ident]
        rng = np.random.default_rng([seed, zlib.crc32(ident.encode())])
        out += [recs[i] for i in sorted(rng.choice(len(recs), size=min(per_identity, len(recs)), replace=False))]
    return out


def photo_matrix(matrix: list, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """A cut-out -> crop pixels matrix (2x3 rows) as cut-out -> photo pixels (3x3)."""
    m = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    s = (box[2] - box[0]) / size
    return np.array([[s, 0.0, box[0]], [0.0, s, box[1]], [0.0, 0.0, 1.0]]) @ m


def render_set(cfg: PrepareConfig, set_name: str, records: list[FaceRecord]) -> list[OccludedPhoto]:
    """The photos of ``records`` occluded as set ``set_name`` ("set1" or "set2") places them."""
    pool = build_occluders(cfg.occluders.seen if POOLS[set_name] == "seen" else cfg.occluders.new,
                           strict=cfg.occluders.strict)
    synth = make_synthesizer(cfg, pool)
    n, crop = cfg.dataset.image_size, face_crop(cfg)
    source = resolve_landmark_source(records, cfg.dataset.landmarks, warn=False)
    landmarker = DlibLandmarker() if source == "dlib" else None
    template = template_landmarks(cfg.dataset.kind, crop=crop, image_size=n)
    photo_synth: dict[int, OcclusionSynthesizer] = {}
    out = []
    for r in records:
        clean, _ = read_rgb(r.path)
        h, w = clean.shape[:2]
        if h != w:
            raise ValueError(f"{r.path}: {w}x{h}; the photo renderer needs square photos (LFW is 250x250)")
        box = crop.box_for(w, h)
        lm = landmarker(clean) if landmarker is not None else None
        lm = template if lm is None else landmarks_to_crop(lm, box, n)
        name = Path(r.path).stem + ".png"
        s = int(np.random.SeedSequence([cfg.output.seed, SET_CODES[set_name], zlib.crc32(name.encode())]).generate_state(1)[0])
        res = synth(to_tensor(crop_resize(clean, box, n))[None], [lm], [np.random.default_rng(s)])
        if w not in photo_synth:
            photo_synth[w] = OcclusionSynthesizer(pool, image_size=w, canvas_size=synth.canvas_size,
                                                  supersample=synth.supersample, placement=synth.placement)
        occluded = photo_synth[w].occlude_photo(clean, [
            {"index": pool.names.index(placed["occluder"]), "matrix": photo_matrix(placed["matrix"], box, n)}
            for placed in res.info[0]])
        out.append(OccludedPhoto(name, r.identity, clean, occluded, box, "+".join(i["occluder"] for i in res.info[0])))
    return out


def occluder_renderer(manifest: dict, data_config: str, photo_size: int):
    """``(photo uint8, placement dicts) -> occluded photo``: a prepared set's occluders rendered
    at photo resolution, its placements (``manifest.json``) mapped into photo coordinates."""
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
