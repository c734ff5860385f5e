"""torch Datasets: faces occluded on the fly (training) and prepared sets on disk (evaluation).

OccludedFaces    clean faces, new occlusions every epoch (`set_epoch`), reproducible from
                 (seed, epoch, index); items {"occluded", "clean", "mask", "index"}.
                 With `occlude=False` items are {"clean", "landmarks", "index"} so that the
                 training loop can occlude whole batches on the GPU with
                 `dataset.synthesizer(clean, landmarks, [item_rng(seed, epoch, i) ...])`
                 - the same result as in the workers, image for image.
PreparedSet      a folder written by `fsggan-prepare-data`: items {"occluded", "clean",
                 "mask", "name"}; `.protocol` holds protocol.json (or None).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from fsggan.images import ImageError, is_image, read_rgb, to_tensor

from .faces import DEFAULT_CROPS, DatasetError, FaceCrop, FaceRecord, load_face
from .landmarks import template_landmarks
from .occluders import OccluderLibrary
from .synthesis import OcclusionSynthesizer, item_rng

__all__ = ["OccludedFaces", "PreparedSet"]


_TEMPLATE_WARNED: set[str] = set()   # dataset kinds whose missing landmarks were already reported


class OccludedFaces(Dataset):
    """Faces from `records`, cropped to `image_size` and occluded on the fly.

    records:        FaceRecords (e.g. `split_identities(...).train`).
    occluders:      the OcclusionSynthesizer that occludes them (built once, e.g. by
                    `fsggan.data.build.make_synthesizer`), or an OccluderLibrary (the "seen"
                    pool for training) for a synthesizer with default settings; None only
                    with occlude=False.
    image_size:     output size (square); default: the synthesizer's, else 128.
    kind:           "lfw", "celeba" or "folder": picks the default crop and landmark template.
    crop:           FaceCrop overriding the default crop of `kind`.
    seed:           base seed; item i of epoch e uses `item_rng(seed, e, i)`.
    occlude:        False: return clean faces and landmarks only (occlude batches on the GPU).
    skip_bad:       True: an unreadable image is replaced by the next readable one (with a
                    warning); False: raise ImageError naming the file.
    min_source_size: smaller source images are bad images.
    clean_share:    (beyond the paper) this share of the items, drawn per (seed, epoch, index)
                    apart from the occlusion's own draws, comes back un-occluded (occluded =
                    clean, empty mask), so a model learns to leave a clean face alone.
    Records without landmarks use the mean template of `kind` (a warning says how many).
    """

    def __init__(
        self,
        records: Sequence[FaceRecord],
        occluders: OcclusionSynthesizer | OccluderLibrary | None,
        image_size: int | None = None,
        *,
        kind: str = "folder",
        crop: FaceCrop | None = None,
        seed: int = 0,
        occlude: bool = True,
        skip_bad: bool = False,
        min_source_size: int = 32,
        clean_share: float = 0.0,
    ):
        if not 0.0 <= clean_share < 1.0:
            raise ValueError(f"clean_share must be in [0, 1), got {clean_share}")
        if not records:
            raise DatasetError("OccludedFaces: no records")
        if occlude and occluders is None:
            raise ValueError("OccludedFaces(occlude=True) needs an occluder library")
        if isinstance(occluders, OccluderLibrary):
            occluders = OcclusionSynthesizer(occluders, image_size=image_size or 128)
        if occluders is not None and image_size is not None and image_size != occluders.image_size:
            raise ValueError(f"OccludedFaces: image_size {image_size} differs from the synthesizer's "
                             f"{occluders.image_size}")
        self.records = list(records)
        self.synthesizer = occluders
        self.image_size = int(image_size or (occluders.image_size if occluders is not None else 128))
        self.crop = crop or DEFAULT_CROPS.get(kind, DEFAULT_CROPS["folder"])
        self.template = template_landmarks(kind, crop=crop, image_size=self.image_size).astype(np.float32)
        self.seed = int(seed)
        self.epoch = 0
        self.occlude = occlude
        self.skip_bad = skip_bad
        self.min_source_size = min_source_size
        self.clean_share = float(clean_share)
        missing = sum(r.landmarks is None for r in self.records)
        if missing and kind not in _TEMPLATE_WARNED:  # once per process: every split and stage would repeat it
            _TEMPLATE_WARNED.add(kind)
            warnings.warn(
                f"OccludedFaces: {missing} of {len(self.records)} records have no landmarks; "
                f"using the mean '{kind}' landmark template for them (said once per process)"
            )

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the occlusions of `epoch` (call before each epoch; works with workers
        because the DataLoader re-pickles the dataset each epoch unless persistent_workers)."""
        self.epoch = int(epoch)

    def kept_clean(self, index: int, epoch: int | None = None) -> bool:
        """Whether item `index` of `epoch` (default: the current one) stays un-occluded."""
        if self.clean_share <= 0.0:
            return False
        e = self.epoch if epoch is None else epoch
        return bool(np.random.default_rng([self.seed, int(e), int(index), 0xC1EA]).random() < self.clean_share)

    def load(self, index: int) -> tuple[torch.Tensor, np.ndarray]:
        """Clean face (3, S, S) in [-1, 1] and its landmarks (5, 2) in face pixels."""
        rec = self.records[index]
        face, lm, _ = load_face(rec, crop=self.crop, image_size=self.image_size, min_size=self.min_source_size)
        return to_tensor(face), (self.template if lm is None else lm)

    def __getitem__(self, index: int) -> dict:
        n = len(self.records)
        for k in range(n if self.skip_bad else 1):
            i = (index + k) % n
            try:
                clean, lm = self.load(i)
                break
            except ImageError as e:
                if not self.skip_bad:
                    raise
                warnings.warn(f"skipping unreadable image: {e}")
        else:
            raise DatasetError("OccludedFaces: no readable image at all")
        if not self.occlude:
            return {"clean": clean, "landmarks": torch.from_numpy(np.asarray(lm, np.float32)), "index": index}
        if self.kept_clean(index):
            return {"occluded": clean.clone(), "clean": clean, "mask": torch.zeros_like(clean[:1]), "index": index}
        res = self.synthesizer(clean[None], [lm], [item_rng(self.seed, self.epoch, index)])
        return {"occluded": res.occluded[0], "clean": clean, "mask": res.mask[0], "index": index}


class PreparedSet(Dataset):
    """A prepared evaluation set folder (`occluded/`, `clean/`, `mask/`, `manifest.json`).

    Items: {"occluded": (3,H,W) [-1,1], "clean": (3,H,W) [-1,1], "mask": (1,H,W) {0,1},
    "name": file name}; with `masks=False` no mask is read (nor needed). `names` lists
    file names in manifest order (without a manifest.json: the images in clean/, sorted);
    `manifest` is the parsed manifest.json (or None); `protocol` the parsed protocol.json
    or None. A missing folder, or a name without its files, raises FileNotFoundError; an
    empty set ValueError.
    """

    def __init__(self, folder: str | Path, *, masks: bool = True):
        self.folder = Path(folder)
        self.subs = ("occluded", "clean", "mask") if masks else ("occluded", "clean")
        for sub in self.subs:
            if not (self.folder / sub).is_dir():
                raise FileNotFoundError(f"{self.folder}: not a prepared set (no {sub}/ folder); make one with "
                                        "fsggan-prepare-data --config configs/data/<name>.yaml")
        mf = self.folder / "manifest.json"
        self.manifest = json.loads(mf.read_text()) if mf.is_file() else None
        if self.manifest is not None:
            self.names = [e["name"] for e in self.manifest.get("images", [])]
        else:
            self.names = sorted(p.name for p in (self.folder / "clean").iterdir() if is_image(p))
        missing = [n for n in self.names if not all((self.folder / sub / n).is_file() for sub in self.subs)]
        if missing:
            raise FileNotFoundError(f"{self.folder}: {len(missing)} image(s) of the set lack "
                                    f"{' or '.join(s + '/' for s in self.subs)} files, e.g. {missing[:5]}")
        if not self.names:
            raise ValueError(f"{self.folder}: the set holds no images")
        pf = self.folder / "protocol.json"
        self.protocol = json.loads(pf.read_text()) if pf.is_file() else None

    def __len__(self) -> int:
        return len(self.names)

    def _read(self, sub: str, name: str) -> np.ndarray:
        img, _ = read_rgb(self.folder / sub / name)
        return img

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        item = {"occluded": to_tensor(self._read("occluded", name)), "clean": to_tensor(self._read("clean", name))}
        if "mask" in self.subs:
            mask = self._read("mask", name)[..., :1]
            item["mask"] = torch.from_numpy((mask > 127).astype(np.float32)).permute(2, 0, 1)
        return {**item, "name": name}
