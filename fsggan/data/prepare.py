"""`fsggan-prepare-data`: render the evaluation sets and the recognition protocol.

    fsggan-prepare-data --config configs/data/lfw.yaml [--set key=value ...] [--out DIR]
                        [--limit N] [--sets set1,set2] [--contact-sheet] [--quiet]

For a config named `<name>` it writes, under `output.out`:

    splits-<name>.json       identity lists of train / val / test (+ protocol identities)
    val-<name>/              validation identities (carved from training), seen occluders
    set1-<name>/             test identities, seen occluders   (Set1)
    set2-<name>/             test identities, new occluders    (Set2)
        occluded/ clean/ mask/   PNGs with identical file names (mask: 0 / 255)
        manifest.json            per image: name, source, identity, occluder, placement, seed
        protocol.json            rank-k protocol (set1/set2 only; same file in both)

Everything is deterministic: the same config gives byte-identical files (each image's
occlusion comes from a Generator seeded by (output.seed, set, crc32(file name)), so it
does not depend on --limit, batching or the machine's thread count).

Relative paths in a config are resolved against the CURRENT directory: run the command
from the repository root (configs use ../shared/data/... for the shared data).

Training uses the same config: `load_data_config(path)` and `make_occluded_dataset(cfg,
split="train")` give the training faces (seen occluders, occluded on the fly) of exactly
the identities `splits-<name>.json` lists as train.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from .faces import DEFAULT_CROPS, DatasetError, FaceCrop, FaceRecord, load_face, read_dataset
from .images import ImageError, save_png, to_tensor, to_uint8
from .landmarks import DlibLandmarker, resolve_landmark_source, template_landmarks
from .occluders import OccluderLibrary, check_pools_disjoint
from .splits import (
    SplitError,
    Splits,
    make_protocol,
    protocol_identities,
    read_identity_list,
    split_identities,
)
from .synthesis import OcclusionSynthesizer, Placement

__all__ = [
    "DataSection",
    "SplitSection",
    "ProtocolSection",
    "OccluderSource",
    "OccluderSection",
    "SynthesisSection",
    "OutputSection",
    "PrepareConfig",
    "load_data_config",
    "build_splits",
    "build_occluders",
    "make_synthesizer",
    "make_occluded_dataset",
    "prepare_data",
    "prepare_data_main",
]

SET_CODES = {"val": 0, "set1": 1, "set2": 2}


# ====================================================================== config
@dataclass
class DataSection:
    kind: Literal["lfw", "celeba", "folder"] = "lfw"  # reader
    root: str = "../shared/data/lfw"  # dataset folder (relative to the current directory)
    crop: list[float] | None = None  # [left, top, right, bottom] source px; null: dataset default
    crop_reference_size: list[int] | None = None  # [W, H] the crop refers to; null: dataset default
    image_size: int = 128  # output faces are image_size x image_size
    min_source_size: int = 32  # smaller source images are skipped ("too_small")
    landmarks: Literal["auto", "file", "dlib", "template"] = "auto"  # landmark source


@dataclass
class SplitSection:
    seed: int = 0  # shuffles identities
    test_fraction: float = 0.1  # of identities (when no test list / protocol decides)
    val_fraction: float = 0.05  # of the training identities
    test_list: str | None = None  # file: 'image_id identity' lines (CelebA_test.txt) or 'identity'
    test_from_protocol: bool = False  # LFW: test identities = the recognition-protocol identities


@dataclass
class ProtocolSection:
    num_identities: int = 200  # identities in the rank-k protocol
    min_images: int = 7  # "more than 6 images"
    queries_per_identity: int = 5
    repeats: int = 5
    seed: int = 0


@dataclass
class OccluderSource:
    path: str = "procedural"  # folder of RGBA PNGs, or "procedural" for built-in drawn occluders
    anchors: str | None = None  # anchor file (OCFR .csv / our .yaml); null: auto-detect in folder
    category: str = "anywhere"  # category of objects without anchors/category
    include: list[str] = field(default_factory=list)  # glob patterns (relative paths) to keep
    exclude: list[str] = field(default_factory=list)  # glob patterns to drop
    count: int = 24  # procedural only: number of objects
    seed: int = 0  # procedural only
    kinds: list[str] | None = None  # procedural only: kinds to draw (null: all)


@dataclass
class OccluderSection:
    seen: list[OccluderSource] = field(default_factory=lambda: [OccluderSource(seed=0, kinds=["sunglasses", "mask", "hand", "bar", "polygon"])])
    new: list[OccluderSource] = field(default_factory=lambda: [OccluderSource(seed=1, kinds=["round_glasses", "scarf", "blob", "stripes", "ellipse"])])
    strict: bool = False  # raise on a bad occluder PNG instead of skipping it
    canvas_size: int = 128  # occluder bank resolution
    supersample: int = 2  # anti-aliasing factor when warping
    num_occluders: list[int] = field(default_factory=lambda: [1, 1])  # [min, max] per image


@dataclass
class SynthesisSection:
    scale_jitter: float = 0.15
    rotation_jitter: float = 10.0  # degrees
    anywhere_rotation: float = 45.0  # degrees, objects without a natural place
    offset_jitter: float = 0.12  # x eye distance
    aspect_jitter: float = 0.1
    flip: bool = True
    anywhere_size: list[float] = field(default_factory=lambda: [1.1, 2.2])  # sqrt(area) / eye distance
    min_coverage: float = 0.04
    max_coverage: float = 0.6
    max_tries: int = 6
    mask_threshold: float = 0.5


@dataclass
class OutputSection:
    out: str = "data/prepared"  # output folder
    sets: list[str] = field(default_factory=lambda: ["val", "set1", "set2"])
    seed: int = 1234  # occlusions of the rendered sets
    max_images_per_identity: int | None = None  # cap per test identity (seeded choice)
    val_max_images: int | None = 1000  # cap on the validation set (seeded choice)
    batch_size: int = 32


@dataclass
class PrepareConfig:
    name: str = "lfw"  # folder suffix: set1-<name>
    dataset: DataSection = field(default_factory=DataSection)
    split: SplitSection = field(default_factory=SplitSection)
    protocol: ProtocolSection = field(default_factory=ProtocolSection)
    occluders: OccluderSection = field(default_factory=OccluderSection)
    synthesis: SynthesisSection = field(default_factory=SynthesisSection)
    output: OutputSection = field(default_factory=OutputSection)

    def __post_init__(self):
        bad = [s for s in self.output.sets if s not in SET_CODES]
        if bad:
            raise ValueError(f"output.sets: unknown set {bad[0]!r}; use val, set1, set2")
        cap = self.output.max_images_per_identity
        if cap is not None and cap < self.protocol.min_images:
            raise ValueError(
                f"output.max_images_per_identity={cap} is below protocol.min_images={self.protocol.min_images}"
            )
        n = self.occluders.num_occluders
        if len(n) != 2 or not 0 <= n[0] <= n[1] or n[1] < 1:
            raise ValueError(f"occluders.num_occluders must be [min, max] with 0 <= min <= max, max >= 1; got {n}")


def load_data_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> PrepareConfig:
    """Load a data config (configs/data/*.yaml) with `key=value` overrides."""
    from fsggan.config import load_config

    return load_config(PrepareConfig, path, overrides)


# ====================================================================== building blocks
def _crop(cfg: PrepareConfig) -> FaceCrop:
    d = cfg.dataset
    if d.crop is None:
        return DEFAULT_CROPS[d.kind]
    if len(d.crop) != 4 or not (d.crop[2] > d.crop[0] and d.crop[3] > d.crop[1]):
        raise ValueError(f"dataset.crop must be [left, top, right, bottom] with right > left, bottom > top; got {d.crop}")
    ref = d.crop_reference_size or DEFAULT_CROPS[d.kind].reference_size
    return FaceCrop(box=tuple(float(v) for v in d.crop), reference_size=tuple(ref) if ref else None)


def build_splits(cfg: PrepareConfig, records: Sequence[FaceRecord]) -> tuple[Splits, list[str] | None]:
    """The identity-disjoint splits of `records` for this config (deterministic).

    Returns (splits, protocol identities or None). With `split.test_from_protocol` the test
    identities are the protocol identities (chosen by image count); with `split.test_list`
    they come from the file (and when it lists images, only those images are test images).
    """
    s, p = cfg.split, cfg.protocol
    proto_ids = None
    test_ids = None
    listed_images = None
    if s.test_from_protocol and s.test_list:
        raise ValueError("split.test_from_protocol and split.test_list exclude each other")
    if s.test_from_protocol:
        counts = Counter(r.identity for r in records)
        proto_ids = protocol_identities(counts, num_identities=p.num_identities, min_images=p.min_images, seed=p.seed)
        test_ids = proto_ids
    elif s.test_list:
        test_ids, listed_images = read_identity_list(s.test_list)
    splits = split_identities(
        records, test_fraction=s.test_fraction, val_fraction=s.val_fraction, seed=s.seed, test_identities=test_ids
    )
    if listed_images is not None:
        splits.test = [r for r in splits.test if Path(r.path).name in listed_images]
    splits.check()
    return splits, proto_ids


def build_occluders(sources: Sequence[OccluderSource], *, strict: bool = False) -> OccluderLibrary:
    """An OccluderLibrary from config sources (folders and/or procedural)."""
    lib = OccluderLibrary([])
    for src in sources:
        if src.path == "procedural":
            lib = lib + OccluderLibrary.procedural(count=src.count, seed=src.seed, kinds=src.kinds)
        else:
            folder = Path(src.path)
            prefix = "/".join(folder.parts[-2:]) if len(folder.parts) >= 2 else folder.name
            lib = lib + OccluderLibrary.from_folder(
                folder,
                anchors=src.anchors,
                category=src.category,
                include=src.include,
                exclude=src.exclude,
                strict=strict,
                prefix=prefix,
            )
    return lib


def make_synthesizer(cfg: PrepareConfig, library: OccluderLibrary) -> OcclusionSynthesizer:
    sy = cfg.synthesis
    placement = Placement(
        scale_jitter=sy.scale_jitter,
        rotation_jitter=sy.rotation_jitter,
        anywhere_rotation=sy.anywhere_rotation,
        offset_jitter=sy.offset_jitter,
        aspect_jitter=sy.aspect_jitter,
        flip=sy.flip,
        anywhere_size=tuple(sy.anywhere_size),
        min_coverage=sy.min_coverage,
        max_coverage=sy.max_coverage,
        max_tries=sy.max_tries,
        mask_threshold=sy.mask_threshold,
    )
    o = cfg.occluders
    return OcclusionSynthesizer(
        library,
        image_size=cfg.dataset.image_size,
        canvas_size=o.canvas_size,
        supersample=o.supersample,
        num_occluders=tuple(o.num_occluders),
        placement=placement,
    )


def make_occluded_dataset(cfg: PrepareConfig, split: str = "train", *, seed: int = 0, occlude: bool = True, skip_bad: bool = True):
    """`OccludedFaces` over the `split` ("train" or "val") identities with the SEEN occluders.

    Landmarks come from the same source as in `prepare_data` (`dataset.landmarks`): the
    dataset's landmark file, dlib (detected once here, for the split's images, when that
    is the resolved source) or the mean template.
    """
    from .datasets import OccludedFaces
    from .landmarks import detect_landmarks

    if split not in ("train", "val"):
        raise ValueError("make_occluded_dataset: split must be 'train' or 'val' (test sets are prepared on disk)")
    records = read_dataset(cfg.dataset.kind, cfg.dataset.root)
    splits, _ = build_splits(cfg, records)
    if resolve_landmark_source(records, cfg.dataset.landmarks, warn=False) == "dlib":
        detected, _ = detect_landmarks(getattr(splits, split), progress=True)
        setattr(splits, split, detected)
    seen = build_occluders(cfg.occluders.seen, strict=cfg.occluders.strict)
    synth = make_synthesizer(cfg, seen)
    o = cfg.occluders
    return OccludedFaces(
        getattr(splits, split),
        seen,
        cfg.dataset.image_size,
        kind=cfg.dataset.kind,
        crop=_crop(cfg),
        seed=seed,
        placement=synth.placement,
        canvas_size=o.canvas_size,
        supersample=o.supersample,
        num_occluders=tuple(o.num_occluders),
        occlude=occlude,
        skip_bad=skip_bad,
        min_source_size=cfg.dataset.min_source_size,
    )


def _file_names(records: Sequence[FaceRecord]) -> dict[str, str]:
    """PNG file name per record: '<stem>.png', or '<identity>__<stem>.png' when stems collide."""
    stems = [Path(r.path).stem for r in records]
    unique = len(set(stems)) == len(stems)

    def safe(s: str) -> str:
        return "".join(c if (c.isalnum() or c in "-_.") else "_" for c in s)

    return {
        str(r.path): safe(st if unique else f"{r.identity}__{st}") + ".png" for r, st in zip(records, stems)
    }


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


# ====================================================================== rendering
def _histogram(values: Sequence[float]) -> list[tuple[str, int]]:
    edges = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 1.0001]
    counts = np.histogram(np.asarray(values, np.float64), bins=edges)[0] if len(values) else np.zeros(len(edges) - 1, int)
    return [(f"{edges[i] * 100:.0f}-{min(edges[i + 1], 1.0) * 100:.0f}%", int(c)) for i, c in enumerate(counts)]


def _write_set(
    *,
    folder: Path,
    set_name: str,
    records: Sequence[FaceRecord],
    names: dict[str, str],
    synth: OcclusionSynthesizer,
    cfg: PrepareConfig,
    pool: str,
    crop: FaceCrop,
    template: np.ndarray,
    lm_source: str,
    landmarker,
    progress: bool,
) -> dict:
    """Render one set into `folder` (written to a temporary folder, then swapped in)."""
    tmp = folder.parent / f".{folder.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    for sub in ("occluded", "clean", "mask"):
        (tmp / sub).mkdir(parents=True)
    root = Path(cfg.dataset.root)
    code = SET_CODES[set_name]
    skipped: dict[str, list[str]] = defaultdict(list)
    notes: Counter = Counter()
    lm_used: Counter = Counter()
    coverage: list[float] = []
    entries: list[dict] = []
    bs = max(1, cfg.output.batch_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(records), desc=folder.name, unit="img", file=sys.stderr)
    for start in range(0, len(records), bs):
        chunk = records[start : start + bs]
        faces, lms, rngs, recs, seeds = [], [], [], [], []
        for r in chunk:
            try:
                face, lm, note = load_face(
                    r,
                    crop=crop,
                    image_size=cfg.dataset.image_size,
                    min_size=cfg.dataset.min_source_size,
                    landmarker=landmarker,
                )
            except ImageError as e:
                skipped[e.reason].append(str(r.path))
                continue
            if note:
                notes[note] += 1
            if lm is None:
                lm_used["template" if lm_source != "dlib" else "template (no face found by dlib)"] += 1
                lm = template
            else:
                lm_used[lm_source] += 1
            name = names[str(r.path)]
            seed = int(np.random.SeedSequence([cfg.output.seed, code, zlib.crc32(name.encode())]).generate_state(1)[0])
            faces.append(to_tensor(face))
            lms.append(lm)
            rngs.append(np.random.default_rng(seed))
            recs.append(r)
            seeds.append(seed)
        if bar is not None:
            bar.update(len(chunk))
        if not recs:
            continue
        clean = torch.stack(faces)
        res = synth(clean, lms, rngs)
        occ_u8, clean_u8 = to_uint8(res.occluded), to_uint8(clean)
        mask_u8 = (res.mask[:, 0] > 0.5).numpy().astype(np.uint8) * 255
        for k, r in enumerate(recs):
            name = names[str(r.path)]
            save_png(tmp / "occluded" / name, occ_u8[k])
            save_png(tmp / "clean" / name, clean_u8[k])
            save_png(tmp / "mask" / name, mask_u8[k])
            cov = float(mask_u8[k].mean() / 255.0)
            coverage.append(cov)
            info = res.info[k]
            try:
                source = Path(r.path).relative_to(root).as_posix()
            except ValueError:
                source = Path(r.path).as_posix()
            entries.append(
                {
                    "name": name,
                    "source": source,
                    "identity": r.identity,
                    "occluder": "+".join(i["occluder"] for i in info),
                    "placement": info[0] if len(info) == 1 else info,
                    "seed": seeds[k],
                    "coverage": round(cov, 4),
                    "landmarks": [[round(float(v), 2) for v in pt] for pt in lms[k]],
                }
            )
    if bar is not None:
        bar.close()
    manifest = {
        "version": 1,
        "name": folder.name,
        "dataset": cfg.name,
        "set": set_name,
        "description": {
            "val": "validation identities (from training), seen occluders",
            "set1": "test identities (never seen in training), seen occluders",
            "set2": "test identities (never seen in training), new occluders",
        }[set_name],
        "image_size": cfg.dataset.image_size,
        "dataset_root": cfg.dataset.root,
        "crop": list(crop.box) if crop.box is not None else None,
        "occluder_pool": pool,
        "occluders": synth.library.names,
        "landmark_source": lm_source,
        "seed": cfg.output.seed,
        "num_images": len(entries),
        "skipped": {k: len(v) for k, v in sorted(skipped.items())},
        "images": entries,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return {
        "tmp": tmp,
        "written": len(entries),
        "skipped": dict(skipped),
        "notes": dict(notes),
        "landmarks": dict(lm_used),
        "coverage": coverage,
        "names_by_identity": _names_by_identity(entries),
    }


def _names_by_identity(entries: Sequence[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for e in entries:
        out[e["identity"]].append(e["name"])
    return dict(out)


def _swap_in(tmp: Path, final: Path) -> None:
    old = final.parent / f".{final.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def prepare_data(
    cfg: PrepareConfig,
    *,
    out: str | Path | None = None,
    limit: int | None = None,
    sets: Sequence[str] | None = None,
    contact_sheet: bool = False,
    progress: bool = True,
    log=print,
) -> dict:
    """Write the prepared sets of `cfg` (see the module docstring). Returns the summary dict.

    Rendering runs with one torch thread (the per-batch tensors are small; extra threads
    only add synchronisation cost, badly so on a busy machine); the previous setting is
    restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _prepare_data(cfg, out=out, limit=limit, sets=sets, contact_sheet=contact_sheet, progress=progress, log=log)
    finally:
        torch.set_num_threads(threads)


def _prepare_data(cfg, *, out, limit, sets, contact_sheet, progress, log) -> dict:
    t0 = time.time()
    out = Path(out if out is not None else cfg.output.out)
    sets = list(sets or cfg.output.sets)
    for s in sets:
        if s not in SET_CODES:
            raise ValueError(f"unknown set {s!r}; use val, set1, set2")
    records = read_dataset(cfg.dataset.kind, cfg.dataset.root)
    crop = _crop(cfg)
    splits, _ = build_splits(cfg, records)
    names = _file_names(records)

    # landmarks
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lm_source = resolve_landmark_source(records, cfg.dataset.landmarks)
    for w in caught:
        log(str(w.message))
    landmarker = DlibLandmarker() if lm_source == "dlib" else None
    template = template_landmarks(cfg.dataset.kind, crop=crop, image_size=cfg.dataset.image_size)

    # occluder pools
    pools = {}
    if any(s in ("val", "set1") for s in sets):
        pools["seen"] = build_occluders(cfg.occluders.seen, strict=cfg.occluders.strict)
    if "set2" in sets:
        pools["new"] = build_occluders(cfg.occluders.new, strict=cfg.occluders.strict)
    if "seen" in pools and "new" in pools:
        check_pools_disjoint(pools["seen"], pools["new"])
    for pool, lib in pools.items():
        if len(lib) == 0:
            raise DatasetError(f"the {pool} occluder pool is empty; check occluders.{pool} in the config")

    # what goes in each set
    test_sel = _select_test(cfg, splits.test)
    val_sel = _seeded_subset(splits.val, cfg.output.val_max_images, (cfg.output.seed, 7))
    if limit is not None:
        test_sel, val_sel = test_sel[:limit], val_sel[:limit]
    plan = {"val": (val_sel, "seen"), "set1": (test_sel, "seen"), "set2": (test_sel, "new")}

    out.mkdir(parents=True, exist_ok=True)
    split_file = out / f"splits-{cfg.name}.json"
    results = {}
    for s in sets:
        recs, pool = plan[s]
        if not recs:
            raise DatasetError(f"{s}-{cfg.name}: no images to write (check the split settings)")
        synth = make_synthesizer(cfg, pools[pool])
        results[s] = _write_set(
            folder=out / f"{s}-{cfg.name}",
            set_name=s,
            records=recs,
            names=names,
            synth=synth,
            cfg=cfg,
            pool=pool,
            crop=crop,
            template=template,
            lm_source=lm_source,
            landmarker=landmarker,
            progress=progress,
        )

    # recognition protocol over the images actually written (same for set1 and set2)
    protocol, proto_info = None, {}
    test_sets = [s for s in sets if s in ("set1", "set2")]
    if test_sets:
        p = cfg.protocol
        avail = None
        for s in test_sets:
            nb = results[s]["names_by_identity"]
            avail = nb if avail is None else {i: sorted(set(avail.get(i, [])) & set(n)) for i, n in nb.items()}
        counts = {i: len(n) for i, n in avail.items()}
        short = sorted(i for i, n in counts.items() if n < p.min_images)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ids = protocol_identities(counts, num_identities=p.num_identities, min_images=p.min_images, seed=p.seed)
            for w in caught:
                log(f"warning: {w.message}")
            protocol = make_protocol(
                {i: avail[i] for i in ids}, queries_per_identity=p.queries_per_identity, repeats=p.repeats, seed=p.seed
            )
        except SplitError as e:
            log(f"warning: no recognition protocol written: {e}")
        proto_info = {
            "identities": protocol["num_identities"] if protocol else 0,
            "test_identities": len(counts),
            "identities_with_too_few_images": len(short),
        }
        for s in test_sets:
            if protocol is not None:
                (results[s]["tmp"] / "protocol.json").write_text(json.dumps(protocol, indent=1) + "\n")

    for s in sets:
        _swap_in(results[s]["tmp"], out / f"{s}-{cfg.name}")
    split_json = {
        "version": 1,
        "dataset": cfg.name,
        "seed": cfg.split.seed,
        **splits.to_json(),
        "protocol_identities": sorted(protocol["repeats"][0]["gallery"]) if protocol else [],
    }
    split_file.write_text(json.dumps(split_json, indent=1) + "\n")

    sheets = []
    if contact_sheet:
        from .contact import contact_sheet as make_sheet

        for s in sets:
            sheets.append(make_sheet([out / f"{s}-{cfg.name}"], out / f"contact_sheet-{s}-{cfg.name}.png"))

    summary = {
        "out": str(out),
        "splits": splits.summary(),
        "landmark_source": lm_source,
        "occluders": {k: {"objects": len(v), "skipped": [(Path(p).name, r) for p, r, _ in v.skipped], "unanchored": len(v.unanchored)} for k, v in pools.items()},
        "sets": {
            s: {
                "written": r["written"],
                "skipped": {k: len(v) for k, v in r["skipped"].items()},
                "skipped_examples": {k: v[:3] for k, v in r["skipped"].items()},
                "conversions": r["notes"],
                "landmarks": r["landmarks"],
                "occluded_area": _histogram(r["coverage"]),
                "mean_occluded_area": float(np.mean(r["coverage"])) if r["coverage"] else 0.0,
            }
            for s, r in results.items()
        },
        "protocol": proto_info,
        "contact_sheets": [str(p) for p in sheets],
        "seconds": round(time.time() - t0, 1),
    }
    _print_summary(summary, log)
    return summary


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


# ====================================================================== CLI
def prepare_data_main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `fsggan-prepare-data`."""
    from fsggan.config import ConfigError

    ap = argparse.ArgumentParser(
        prog="fsggan-prepare-data",
        description="Render the occluded evaluation sets (val, Set1, Set2) and the recognition protocol. "
        "Relative paths in the config are resolved against the current directory (run from the repo root).",
    )
    ap.add_argument("--config", required=True, help="configs/data/<name>.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value (repeatable), e.g. --set output.seed=7")
    ap.add_argument("--out", default=None, help="output folder (default: output.out of the config)")
    ap.add_argument("--limit", type=int, default=None, help="write at most N images per set (quick runs)")
    ap.add_argument("--sets", default=None, help="comma-separated subset of val,set1,set2")
    ap.add_argument("--contact-sheet", action="store_true", help="also write contact_sheet-<set>-<name>.png per set")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        cfg = load_data_config(args.config, args.overrides)
        prepare_data(
            cfg,
            out=args.out,
            limit=args.limit,
            sets=args.sets.split(",") if args.sets else None,
            contact_sheet=args.contact_sheet,
            progress=not args.quiet,
        )
    except (ConfigError, DatasetError, SplitError, ValueError, ImportError, OSError) as e:
        print(f"fsggan-prepare-data: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(prepare_data_main())
