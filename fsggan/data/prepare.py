"""Render the evaluation sets and the recognition protocol (``fsggan-prepare-data``).

For a config (:mod:`fsggan.data.config`) named `<name>`, :func:`prepare_data` writes,
under `output.out`:

    splits-<name>.json       identity lists of train / val / test (+ protocol identities)
    val-<name>/              validation identities (carved from training), seen occluders
    set1-<name>/             test identities, seen occluders   (Set1)
    set2-<name>/             test identities, new occluders    (Set2)
    set3-<name>/             test identities, unseen kinds     (Set3: kinds of object no training
                             pool holds, checked here: `occluders.unseen`)
        occluded/ clean/ mask/   PNGs with identical file names (mask: 0 / 255)
        manifest.json            per image: name, source, identity, occluder, placement, seed
        protocol.json            rank-k protocol (set1/set2 only; same file in both)

Everything is deterministic: the same config gives byte-identical files (each image's
occlusion comes from a Generator seeded by (output.seed, set, crc32(file name)), so it
does not depend on --limit, batching or the machine's thread count).

Relative paths in a config are resolved against the CURRENT directory: run the command
from the repository root (configs use ../shared/data/... for the shared data).

Training does not come here: it builds its faces from the same config with
:mod:`fsggan.data.build` (the identities `splits-<name>.json` lists as train / val).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fsggan.images import ImageError, save_png, to_tensor, to_uint8

from .build import build_occluders, build_splits, face_crop, make_synthesizer
from .config import SET_CODES, PrepareConfig
from .faces import DatasetError, FaceCrop, FaceRecord, load_face, read_dataset
from .landmarks import DlibLandmarker, resolve_landmark_source, template_landmarks
from .occluders import OccluderLibrary, check_pools_disjoint
from .procedural import PROCEDURAL_KINDS
from .splits import Splits, protocol_over_sets
from .synthesis import OcclusionSynthesizer

__all__ = ["prepare_data"]

DESCRIPTIONS = {
    "val": "validation identities (from training), seen occluders",
    "set1": "test identities (never seen in training), seen occluders",
    "set2": "test identities (never seen in training), new occluders",
    "set3": "test identities (never seen in training), kinds of occluder no training pool holds",
}


def prepare_data(
    cfg: PrepareConfig,
    *,
    out: str | Path | None = None,        # output folder (default: cfg.output.out)
    limit: int | None = None,             # at most this many images per set (quick runs)
    sets: Sequence[str] | None = None,    # subset of val, set1, set2, set3 (default: cfg.output.sets)
    contact_sheet: bool = False,          # also write contact_sheet-<set>-<name>.png per set
    progress: bool = True,                # tqdm progress bars
    log=print,                            # where the summary goes
) -> dict:
    """Write the prepared sets of `cfg` (see the module docstring). Returns the summary dict.

    Rendering runs with one torch thread (the per-batch tensors are small; extra threads
    only add synchronisation cost, badly so on a busy machine); the previous setting is
    restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _prepare(cfg, out=out, limit=limit, sets=sets, contact_sheet=contact_sheet, progress=progress, log=log)
    finally:
        torch.set_num_threads(threads)


def _prepare(cfg: PrepareConfig, *, out, limit, sets, contact_sheet, progress, log) -> dict:
    t0 = time.time()
    out = Path(out if out is not None else cfg.output.out)
    sets = list(sets or cfg.output.sets)
    for s in sets:
        if s not in SET_CODES:
            raise ValueError(f"unknown set {s!r}; use val, set1, set2, set3")
    records = read_dataset(cfg.dataset.kind, cfg.dataset.root)
    splits, _ = build_splits(cfg, records)
    faces = _FaceSource.create(cfg, records, log)
    pools = _occluder_pools(cfg, sets)
    plan = _plan(cfg, splits, limit)

    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for s in sets:
        recs, pool = plan[s]
        if not recs:
            raise DatasetError(f"{s}-{cfg.name}: no images to write (check the split settings)")
        results[s] = _write_set(out / f"{s}-{cfg.name}", s, recs, make_synthesizer(cfg, pools[pool]), pool,
                                faces, cfg, progress)

    # recognition protocol over the images actually written (the same for set1, set2 and set3)
    protocol, proto_info = None, {}
    test_sets = [s for s in sets if s in ("set1", "set2", "set3")]
    if test_sets:
        p = cfg.protocol
        protocol, proto_info = protocol_over_sets(
            [results[s].names_by_identity() for s in test_sets], num_identities=p.num_identities,
            min_images=p.min_images, queries_per_identity=p.queries_per_identity, repeats=p.repeats, seed=p.seed,
            log=log)
        for s in test_sets:
            if protocol is not None:
                (results[s].tmp / "protocol.json").write_text(json.dumps(protocol, indent=1) + "\n")

    for s in sets:
        _swap_in(results[s].tmp, out / f"{s}-{cfg.name}")
    _write_split_file(out / f"splits-{cfg.name}.json", cfg, splits, protocol)
    sheets = _contact_sheets(out, cfg.name, sets) if contact_sheet else []
    summary = {
        "out": str(out),
        "splits": splits.summary(),
        "landmark_source": faces.lm_source,
        "occluders": {k: {"objects": len(v), "skipped": [(Path(p).name, r) for p, r, _ in v.skipped],
                          "unanchored": len(v.unanchored)} for k, v in pools.items()},
        "sets": {s: r.summary() for s, r in results.items()},
        "protocol": proto_info,
        "contact_sheets": [str(p) for p in sheets],
        "seconds": round(time.time() - t0, 1),
    }
    _print_summary(summary, log)
    return summary


# ---------------------------------------------------------------- what goes where

def _occluder_pools(cfg: PrepareConfig, sets: Sequence[str]) -> dict[str, OccluderLibrary]:
    """The "seen" pool (val, set1), the "new" pool (set2) and the "unseen" kinds (set3), as far
    as `sets` need them. Set2's and Set3's objects are checked absent from the seen pool (the
    one training draws from), and Set3's procedural kinds absent from its procedural sources."""
    pools = {}
    if any(s in ("val", "set1", "set3") for s in sets):
        pools["seen"] = build_occluders(cfg.occluders.seen, strict=cfg.occluders.strict)
    if "set2" in sets:
        pools["new"] = build_occluders(cfg.occluders.new, strict=cfg.occluders.strict)
        if "seen" in pools:
            check_pools_disjoint(pools["seen"], pools["new"])
    if "set3" in sets:
        check_kinds_unseen(cfg.occluders.seen, cfg.occluders.unseen)
        pools["unseen"] = build_occluders(cfg.occluders.unseen, strict=cfg.occluders.strict)
        check_pools_disjoint(pools["seen"], pools["unseen"], "unseen")
    for pool, lib in pools.items():
        if len(lib) == 0:
            raise DatasetError(f"the {pool} occluder pool is empty; check occluders.{pool} in the config")
    return pools


def _plan(cfg: PrepareConfig, splits: Splits, limit: int | None) -> dict[str, tuple[list[FaceRecord], str]]:
    """set -> (its records, its occluder pool)."""
    test_sel = _select_test(cfg, splits.test)
    val_sel = _seeded_subset(splits.val, cfg.output.val_max_images, (cfg.output.seed, 7))
    if limit is not None:
        test_sel, val_sel = test_sel[:limit], val_sel[:limit]
    return {"val": (val_sel, "seen"), "set1": (test_sel, "seen"), "set2": (test_sel, "new"),
            "set3": (test_sel, "unseen")}


def check_kinds_unseen(seen: Sequence, unseen: Sequence) -> None:
    """Raise DatasetError if a procedural kind of Set3 is also drawn for the seen pool."""
    def kinds(sources) -> set[str]:
        return {k for s in sources if s.path == "procedural" for k in (s.kinds or PROCEDURAL_KINDS)}

    both = sorted(kinds(seen) & kinds(unseen))
    if both:
        raise DatasetError(f"occluders.unseen draws kinds the seen pool also draws ({', '.join(both)}); "
                           "Set3 must hold kinds of object never used in training: remove them from one pool")


def _seeded_subset(records: Sequence[FaceRecord], k: int | None, key: Sequence[int]) -> list[FaceRecord]:
    if k is None or len(records) <= k:
        return list(records)
    rng = np.random.default_rng(list(key))
    pick = sorted(rng.choice(len(records), size=k, replace=False))
    return [records[i] for i in pick]


def _select_test(cfg: PrepareConfig, test: Sequence[FaceRecord]) -> list[FaceRecord]:
    by_id: dict[str, list[FaceRecord]] = defaultdict(list)
    for r in test:
        by_id[r.identity].append(r)
    out = []
    for ident in sorted(by_id):
        out += _seeded_subset(by_id[ident], cfg.output.max_images_per_identity, (cfg.output.seed, zlib.crc32(ident.encode())))
    return out


def _file_names(records: Sequence[FaceRecord]) -> dict[str, str]:
    """PNG file name per record: '<stem>.png', or '<identity>__<stem>.png' when stems collide."""
    stems = [Path(r.path).stem for r in records]
    unique = len(set(stems)) == len(stems)

    def safe(s: str) -> str:
        return "".join(c if (c.isalnum() or c in "-_.") else "_" for c in s)

    return {
        str(r.path): safe(st if unique else f"{r.identity}__{st}") + ".png" for r, st in zip(records, stems)
    }


# ---------------------------------------------------------------- faces

@dataclass
class _FaceSource:
    """How faces of this config are cut out: crop, landmark source, file names."""

    crop: FaceCrop
    lm_source: str
    landmarker: DlibLandmarker | None
    template: np.ndarray
    names: dict[str, str]  # record path -> PNG file name

    @classmethod
    def create(cls, cfg: PrepareConfig, records: Sequence[FaceRecord], log) -> _FaceSource:
        crop = face_crop(cfg)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lm_source = resolve_landmark_source(records, cfg.dataset.landmarks)
        for w in caught:
            log(str(w.message))
        return cls(crop=crop, lm_source=lm_source, landmarker=DlibLandmarker() if lm_source == "dlib" else None,
                   template=template_landmarks(cfg.dataset.kind, crop=crop, image_size=cfg.dataset.image_size),
                   names=_file_names(records))


# ---------------------------------------------------------------- one set

@dataclass
class _SetWriter:
    """One set being rendered into `tmp` (swapped into place once everything is written)."""

    tmp: Path
    root: Path  # dataset root: manifest sources are relative to it
    skipped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: Counter = field(default_factory=Counter)
    lm_used: Counter = field(default_factory=Counter)
    coverage: list[float] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)

    def write(self, recs, names, seeds, lms, clean: torch.Tensor, res) -> None:
        """Save one synthesised batch (occluded, clean, mask PNGs) and its manifest entries."""
        occ_u8, clean_u8 = to_uint8(res.occluded), to_uint8(clean)
        mask_u8 = (res.mask[:, 0] > 0.5).numpy().astype(np.uint8) * 255
        for k, r in enumerate(recs):
            save_png(self.tmp / "occluded" / names[k], occ_u8[k])
            save_png(self.tmp / "clean" / names[k], clean_u8[k])
            save_png(self.tmp / "mask" / names[k], mask_u8[k])
            cov = float(mask_u8[k].mean() / 255.0)
            self.coverage.append(cov)
            info = res.info[k]
            try:
                source = Path(r.path).relative_to(self.root).as_posix()
            except ValueError:
                source = Path(r.path).as_posix()
            self.entries.append({
                "name": names[k],
                "source": source,
                "identity": r.identity,
                "occluder": "+".join(i["occluder"] for i in info),
                "placement": info[0] if len(info) == 1 else info,
                "seed": seeds[k],
                "coverage": round(cov, 4),
                "landmarks": [[round(float(v), 2) for v in pt] for pt in lms[k]],
            })

    def names_by_identity(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for e in self.entries:
            out[e["identity"]].append(e["name"])
        return dict(out)

    def summary(self) -> dict:
        return {
            "written": len(self.entries),
            "skipped": {k: len(v) for k, v in self.skipped.items()},
            "skipped_examples": {k: v[:3] for k, v in self.skipped.items()},
            "conversions": dict(self.notes),
            "landmarks": dict(self.lm_used),
            "occluded_area": _histogram(self.coverage),
            "mean_occluded_area": float(np.mean(self.coverage)) if self.coverage else 0.0,
        }


def _load_batch(chunk: Sequence[FaceRecord], faces: _FaceSource, cfg: PrepareConfig, code: int, w: _SetWriter):
    """Read and crop the faces of `chunk` (bad files counted in `w.skipped`); returns
    (records, file names, seeds, landmarks, per-image generators, clean faces)."""
    recs, names, seeds, lms, rngs, clean = [], [], [], [], [], []
    for r in chunk:
        try:
            face, lm, note = load_face(r, crop=faces.crop, image_size=cfg.dataset.image_size,
                                       min_size=cfg.dataset.min_source_size, landmarker=faces.landmarker)
        except ImageError as e:
            w.skipped[e.reason].append(str(r.path))
            continue
        if note:
            w.notes[note] += 1
        if lm is None:
            w.lm_used["template" if faces.lm_source != "dlib" else "template (no face found by dlib)"] += 1
            lm = faces.template
        else:
            w.lm_used[faces.lm_source] += 1
        name = faces.names[str(r.path)]
        seed = int(np.random.SeedSequence([cfg.output.seed, code, zlib.crc32(name.encode())]).generate_state(1)[0])
        recs.append(r)
        names.append(name)
        seeds.append(seed)
        lms.append(lm)
        rngs.append(np.random.default_rng(seed))
        clean.append(to_tensor(face))
    return recs, names, seeds, lms, rngs, clean


def _write_set(folder: Path, set_name: str, records: Sequence[FaceRecord], synth: OcclusionSynthesizer, pool: str,
               faces: _FaceSource, cfg: PrepareConfig, progress: bool) -> _SetWriter:
    """Render one set into a temporary folder next to `folder` (swapped in by the caller)."""
    tmp = folder.parent / f".{folder.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    for sub in ("occluded", "clean", "mask"):
        (tmp / sub).mkdir(parents=True)
    w = _SetWriter(tmp=tmp, root=Path(cfg.dataset.root))
    bs = max(1, cfg.output.batch_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(records), desc=folder.name, unit="img", file=sys.stderr)
    for start in range(0, len(records), bs):
        chunk = records[start : start + bs]
        recs, names, seeds, lms, rngs, clean = _load_batch(chunk, faces, cfg, SET_CODES[set_name], w)
        if bar is not None:
            bar.update(len(chunk))
        if recs:
            clean = torch.stack(clean)
            w.write(recs, names, seeds, lms, clean, synth(clean, lms, rngs))
    if bar is not None:
        bar.close()
    manifest = {
        "version": 1,
        "name": folder.name,
        "dataset": cfg.name,
        "set": set_name,
        "description": DESCRIPTIONS[set_name],
        "image_size": cfg.dataset.image_size,
        "dataset_root": cfg.dataset.root,
        "crop": list(faces.crop.box) if faces.crop.box is not None else None,
        "occluder_pool": pool,
        "occluders": synth.library.names,
        "landmark_source": faces.lm_source,
        "seed": cfg.output.seed,
        "num_images": len(w.entries),
        "skipped": {k: len(v) for k, v in sorted(w.skipped.items())},
        "images": w.entries,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return w


# ---------------------------------------------------------------- files around the sets

def _swap_in(tmp: Path, final: Path) -> None:
    old = final.parent / f".{final.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _write_split_file(path: Path, cfg: PrepareConfig, splits: Splits, protocol: dict | None) -> None:
    split_json = {
        "version": 1,
        "dataset": cfg.name,
        "seed": cfg.split.seed,
        **splits.to_json(),
        "protocol_identities": sorted(protocol["repeats"][0]["gallery"]) if protocol else [],
    }
    path.write_text(json.dumps(split_json, indent=1) + "\n")


def _contact_sheets(out: Path, name: str, sets: Sequence[str]) -> list[Path]:
    from .contact import contact_sheet

    return [contact_sheet([out / f"{s}-{name}"], out / f"contact_sheet-{s}-{name}.png") for s in sets]


# ---------------------------------------------------------------- summary

def _histogram(values: Sequence[float]) -> list[tuple[str, int]]:
    edges = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 1.0001]
    counts = np.histogram(np.asarray(values, np.float64), bins=edges)[0] if len(values) else np.zeros(len(edges) - 1, int)
    return [(f"{edges[i] * 100:.0f}-{min(edges[i + 1], 1.0) * 100:.0f}%", int(c)) for i, c in enumerate(counts)]


def _print_summary(summary: dict, log) -> None:
    log("")
    log(f"== fsggan-prepare-data summary ({summary['seconds']} s) -> {summary['out']}")
    sp = summary["splits"]
    log("splits (identities / images): " + ", ".join(f"{k} {v['identities']}/{v['images']}" for k, v in sp.items()))
    for pool, o in summary["occluders"].items():
        extra = f", skipped {len(o['skipped'])}: {o['skipped'][:3]}" if o["skipped"] else ""
        log(f"occluders[{pool}]: {o['objects']} objects ({o['unanchored']} placed by category only){extra}")
    for s, r in summary["sets"].items():
        sk = ", ".join(f"{k} {v}" for k, v in r["skipped"].items()) or "none"
        log(f"{s}: {r['written']} images written; skipped: {sk}")
        for k, ex in r["skipped_examples"].items():
            log(f"    {k}: e.g. {', '.join(ex)}")
        if r["conversions"]:
            log("    converted: " + ", ".join(f"{k} {v}" for k, v in r["conversions"].items()))
        log("    landmarks: " + ", ".join(f"{k} {v}" for k, v in r["landmarks"].items()))
        total = max(1, r["written"])
        log(f"    occluded area (mean {r['mean_occluded_area'] * 100:.1f}%):")
        for label, c in r["occluded_area"]:
            log(f"      {label:>8} {c:6d} {'#' * int(round(40 * c / total))}")
    p = summary["protocol"]
    if p:
        log(
            f"protocol: {p['identities']} identities of {p['test_identities']} test identities "
            f"({p['identities_with_too_few_images']} have fewer images than the protocol needs)"
        )
    for c in summary["contact_sheets"]:
        log(f"contact sheet: {c}")
