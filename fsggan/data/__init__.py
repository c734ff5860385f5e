"""Face data: readers, identity-disjoint splits, occluders, occlusion synthesis, prepared sets.

Quick tour (see each module's docstring):

    from fsggan.data import load_data_config, make_occluded_dataset     # what training uses
    train = make_occluded_dataset(load_data_config("configs/data/lfw.yaml"), "train")

    from fsggan.data import read_lfw, split_identities, OccluderLibrary, OccludedFaces, PreparedSet
    from fsggan.datadir import data_root                              # $FSGGAN_DATA (fsggan.datadir)
    records = read_lfw(data_root() / "lfw")
    splits = split_identities(records, test_fraction=0.1, val_fraction=0.05, seed=0)
    seen = OccluderLibrary.from_folder(data_root() / "occluders" / "fsg" / "seen",
                                       anchors="configs/data/anchors/fsg_seen.yaml")
    train = OccludedFaces(splits.train, seen, image_size=128, kind="lfw", seed=0)
    test = PreparedSet("data/prepared/set1-lfw")     # written by fsggan-prepare-data
"""

from fsggan.images import ImageError, read_rgb, read_rgba

from .build import build_occluders, build_splits, make_occluded_dataset, make_synthesizer
from .config import PrepareConfig, load_data_config
from .datasets import OccludedFaces, PreparedSet
from .faces import (
    DEFAULT_CROPS,
    DatasetError,
    FaceCrop,
    FaceRecord,
    load_face,
    read_celeba,
    read_celeba_partition,
    read_dataset,
    read_image_folder,
    read_lfw,
)
from .landmarks import LANDMARK_NAMES, DlibLandmarker, detect_landmarks, dlib_available, template_landmarks
from .occluders import CATEGORIES, Occluder, OccluderError, OccluderLibrary, check_pools_disjoint
from .procedural import NEW_KINDS, PROCEDURAL_KINDS, SEEN_KINDS, procedural_occluders
from .splits import (
    SplitError,
    Splits,
    check_disjoint,
    make_protocol,
    protocol_identities,
    read_identity_list,
    split_identities,
    validate_protocol,
)
from .synthesis import OcclusionSynthesizer, Placement, SynthesisResult, item_rng

__all__ = [
    "CATEGORIES",
    "DEFAULT_CROPS",
    "DatasetError",
    "DlibLandmarker",
    "FaceCrop",
    "FaceRecord",
    "ImageError",
    "LANDMARK_NAMES",
    "NEW_KINDS",
    "OccludedFaces",
    "Occluder",
    "OccluderError",
    "OccluderLibrary",
    "OcclusionSynthesizer",
    "PROCEDURAL_KINDS",
    "Placement",
    "PrepareConfig",
    "PreparedSet",
    "SEEN_KINDS",
    "SplitError",
    "Splits",
    "SynthesisResult",
    "build_occluders",
    "build_splits",
    "check_disjoint",
    "check_pools_disjoint",
    "detect_landmarks",
    "dlib_available",
    "item_rng",
    "load_data_config",
    "load_face",
    "make_occluded_dataset",
    "make_protocol",
    "make_synthesizer",
    "procedural_occluders",
    "protocol_identities",
    "read_celeba",
    "read_celeba_partition",
    "read_dataset",
    "read_identity_list",
    "read_image_folder",
    "read_lfw",
    "read_rgb",
    "read_rgba",
    "split_identities",
    "template_landmarks",
    "validate_protocol",
]
