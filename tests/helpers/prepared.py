"""A tiny prepared evaluation set (SIZE x SIZE faces), laid out as fsggan-prepare-data writes
one: clean/, occluded/, mask/, manifest.json, protocol.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32


def make_prepared_set(root: Path, n_ids: int = 6, per_id: int = 3, repeats: int = 2, seed: int = 0) -> Path:
    """A tiny prepared set: identity = a fixed random 4x4 colour pattern (upsampled) plus
    per-image noise; occluded = a random block pattern over the top three quarters."""
    rng = np.random.default_rng(seed)
    for sub in ("clean", "occluded", "mask"):
        (root / sub).mkdir(parents=True)
    images, by_id = [], {}
    for i in range(n_ids):
        ident = f"person_{i}"
        base = rng.uniform(0, 255, (4, 4, 3))
        base = np.kron(base, np.ones((SIZE // 4, SIZE // 4, 1)))
        for j in range(per_id):
            name = f"{ident}_{j:04d}.png"
            clean = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
            occ, mask = clean.copy(), np.zeros((SIZE, SIZE), np.uint8)
            blocks = np.kron(rng.uniform(0, 255, (3, 4, 3)), np.ones((SIZE // 4, SIZE // 4, 1)))
            occ[: 3 * SIZE // 4], mask[: 3 * SIZE // 4] = blocks.astype(np.uint8), 255  # a random "object"
            Image.fromarray(clean).save(root / "clean" / name)
            Image.fromarray(occ).save(root / "occluded" / name)
            Image.fromarray(mask).save(root / "mask" / name)
            images.append({"name": name, "source": f"src/{name}", "identity": ident, "occluder": "square",
                           "placement": [8, 4], "seed": seed})
            by_id.setdefault(ident, []).append(name)
    (root / "manifest.json").write_text(json.dumps({"images": images}))
    reps = []
    for r in range(repeats):
        gallery, queries = {}, {}
        for ident, names in by_id.items():
            g = names[r % per_id]
            gallery[ident] = g
            queries[ident] = [n for n in names if n != g]
        reps.append({"seed": r, "gallery": gallery, "queries": queries})
    (root / "protocol.json").write_text(json.dumps({"version": 1, "num_identities": n_ids,
                                                    "queries_per_identity": per_id - 1, "repeats": reps}))
    return root


def copy_as_predictions(set_dir: Path, dest: Path, sub: str = "clean") -> Path:
    """Copy a prepared set's ``sub`` images (the clean faces by default) into ``dest``, as a
    model's saved predictions would be."""
    dest.mkdir(parents=True)
    for p in sorted((set_dir / sub).iterdir()):
        shutil.copy(p, dest / p.name)
    return dest
