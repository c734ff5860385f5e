"""The data configuration (``configs/data/*.yaml``): one dataclass per YAML section.

One config is the single source of a dataset, its identity split, the recognition
protocol, the "seen" and "new" occluder pools and the occlusion settings, so that training
(:mod:`fsggan.data.build`) and the prepared evaluation sets (:mod:`fsggan.data.prepare`)
can never disagree. ``synthesis`` is :class:`fsggan.data.synthesis.Placement` itself.

Relative paths are resolved against the CURRENT directory: run from the repository root
(configs use ../shared/data/... for the shared data). Without a config, the dataset root is
``lfw`` in the data folder of :func:`fsggan.datadir.data_root` (``FSGGAN_DATA``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from fsggan.config import load_config
from fsggan.datadir import data_root
from fsggan.images import MIN_FACE_SIZE

from .synthesis import Placement

__all__ = [
    "SET_CODES",
    "DataSection",
    "SplitSection",
    "ProtocolSection",
    "OccluderSource",
    "OccluderSection",
    "OutputSection",
    "PrepareConfig",
    "load_data_config",
]

SET_CODES = {"val": 0, "set1": 1, "set2": 2, "set3": 3}  # rendered sets; the code seeds each set's occlusions


def _at_least(section, least: int, *names: str) -> None:
    """ValueError starting with the key (``name=value: ...``) when a count is below ``least``."""
    for name in names:
        value = getattr(section, name)
        if value is not None and value < least:
            raise ValueError(f"{name}={value}: must be >= {least}")


@dataclass
class DataSection:
    kind: Literal["lfw", "celeba", "folder"] = "lfw"  # reader
    root: str = field(default_factory=lambda: str(data_root() / "lfw"))  # dataset folder (relative: to the current directory)
    crop: list[float] | None = None  # [left, top, right, bottom] source px; null: dataset default
    crop_reference_size: list[int] | None = None  # [W, H] the crop refers to; null: dataset default
    image_size: int = 128  # output faces are image_size x image_size
    min_source_size: int = MIN_FACE_SIZE  # 32: smaller source images are skipped ("too_small")
    landmarks: Literal["auto", "file", "dlib", "template"] = "auto"  # landmark source

    def __post_init__(self):
        _at_least(self, 8, "image_size")
        _at_least(self, 1, "min_source_size")


@dataclass
class SplitSection:
    seed: int = 0  # shuffles identities
    test_fraction: float = 0.1  # of identities (when no test list / protocol decides)
    val_fraction: float = 0.05  # of the training identities
    test_list: str | None = None  # file: 'image_id identity' lines (CelebA_test.txt) or 'identity'
    test_from_protocol: bool = False  # LFW: test identities = the recognition-protocol identities

    def __post_init__(self):
        for name in ("test_fraction", "val_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)}: must be in [0, 1)")


@dataclass
class ProtocolSection:
    num_identities: int = 200  # identities in the rank-k protocol
    min_images: int = 7  # "more than 6 images"
    queries_per_identity: int = 5
    repeats: int = 5
    seed: int = 0

    def __post_init__(self):
        _at_least(self, 1, "num_identities", "min_images", "queries_per_identity", "repeats")


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
    unseen: list[OccluderSource] = field(default_factory=list)  # Set3: kinds of object no training pool holds
    strict: bool = False  # raise on a bad occluder PNG instead of skipping it
    canvas_size: int = 128  # occluder bank resolution
    supersample: int = 2  # anti-aliasing factor when warping
    num_occluders: list[int] = field(default_factory=lambda: [1, 1])  # [min, max] per image

    def __post_init__(self):
        _at_least(self, 1, "canvas_size", "supersample")


@dataclass
class OutputSection:
    out: str = "data/prepared"  # output folder
    sets: list[str] = field(default_factory=lambda: ["val", "set1", "set2"])
    seed: int = 1234  # occlusions of the rendered sets
    max_images_per_identity: int | None = None  # cap per test identity (seeded choice)
    val_max_images: int | None = 1000  # cap on the validation set (seeded choice)
    batch_size: int = 32

    def __post_init__(self):
        _at_least(self, 1, "max_images_per_identity", "val_max_images", "batch_size")


@dataclass
class PrepareConfig:
    name: str = "lfw"  # folder suffix: set1-<name>
    dataset: DataSection = field(default_factory=DataSection)
    split: SplitSection = field(default_factory=SplitSection)
    protocol: ProtocolSection = field(default_factory=ProtocolSection)
    occluders: OccluderSection = field(default_factory=OccluderSection)
    synthesis: Placement = field(default_factory=Placement)  # random placement ranges of the occluders
    output: OutputSection = field(default_factory=OutputSection)

    def __post_init__(self):
        bad = [s for s in self.output.sets if s not in SET_CODES]
        if bad:
            raise ValueError(f"output.sets: unknown set {bad[0]!r}; use val, set1, set2, set3")
        if "set3" in self.output.sets and not self.occluders.unseen:
            raise ValueError("output.sets names set3 but occluders.unseen is empty; list the unseen kinds' "
                             "sources there (see configs/data/lfw.yaml) or drop set3")
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
    return load_config(PrepareConfig, path, overrides)
