"""What training needs from a data config: splits, occluder pools, the synthesizer, datasets.

    cfg = load_data_config("configs/data/lfw.yaml")
    train = make_occluded_dataset(cfg, "train", seed=0)    # seen occluders, occluded on the fly
    val = make_occluded_dataset(cfg, "val", seed=12345)

Training gets exactly the identities that ``fsggan-prepare-data`` lists as train / val in
``splits-<name>.json``; the test identities (Set1/Set2, the recognition protocol) are never
loaded. The prepared evaluation sets (:mod:`fsggan.data.prepare`) are built from the same
functions.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

from .config import OccluderSource, PrepareConfig
from .datasets import OccludedFaces
from .faces import DEFAULT_CROPS, FaceCrop, FaceRecord, read_dataset
from .landmarks import detect_landmarks, resolve_landmark_source
from .occluders import OccluderLibrary
from .procedural import procedural_occluders
from .splits import Splits, protocol_identities, read_identity_list, split_identities
from .synthesis import OcclusionSynthesizer

__all__ = ["face_crop", "build_splits", "build_occluders", "make_synthesizer", "make_occluded_dataset"]


def face_crop(cfg: PrepareConfig) -> FaceCrop:
    """The face box of ``cfg.dataset`` (its ``crop``, else the dataset kind's default)."""
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
            lib = lib + OccluderLibrary(procedural_occluders(count=src.count, seed=src.seed, kinds=src.kinds))
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
    """The OcclusionSynthesizer of ``cfg`` (placement ``cfg.synthesis``) over ``library``."""
    o = cfg.occluders
    return OcclusionSynthesizer(
        library,
        image_size=cfg.dataset.image_size,
        canvas_size=o.canvas_size,
        supersample=o.supersample,
        num_occluders=tuple(o.num_occluders),
        placement=cfg.synthesis,
    )


def make_occluded_dataset(cfg: PrepareConfig, split: str = "train", *, seed: int = 0, occlude: bool = True, skip_bad: bool = True,
                          clean_share: float = 0.0):
    """`OccludedFaces` over the `split` ("train" or "val") identities with the SEEN occluders.

    Landmarks come from the same source as in `prepare_data` (`dataset.landmarks`): the
    dataset's landmark file, dlib (detected once here, for the split's images, when that
    is the resolved source) or the mean template.
    """
    if split not in ("train", "val"):
        raise ValueError("make_occluded_dataset: split must be 'train' or 'val' (test sets are prepared on disk)")
    records = read_dataset(cfg.dataset.kind, cfg.dataset.root)
    splits, _ = build_splits(cfg, records)
    if resolve_landmark_source(records, cfg.dataset.landmarks, warn=False) == "dlib":
        detected, _ = detect_landmarks(getattr(splits, split), progress=True)
        setattr(splits, split, detected)
    seen = build_occluders(cfg.occluders.seen, strict=cfg.occluders.strict)
    return OccludedFaces(
        getattr(splits, split),
        make_synthesizer(cfg, seen),
        kind=cfg.dataset.kind,
        crop=face_crop(cfg),
        seed=seed,
        occlude=occlude,
        skip_bad=skip_bad,
        min_source_size=cfg.dataset.min_source_size,
        clean_share=clean_share,
    )
