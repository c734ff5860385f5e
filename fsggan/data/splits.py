"""Identity-disjoint splits and the recognition protocol.

- `split_identities`: seeded train / val / test split by IDENTITY (never by image); the
  validation identities are carved from the training identities, so the test
  identities are never seen during training or model selection.
- `check_disjoint`: raises `SplitError` when an identity is in two splits.
- `read_identity_list`: a list file such as the FSG-GAN authors' `CelebA_test.txt`
  (`image_id identity` per line) or one identity per line.
- `protocol_identities` / `make_protocol`: the rank-k protocol (200 identities with more
  than 6 images; per identity 1 gallery + 5 query images; 5 seeded repeats), in the
  `protocol.json` format of the interface contract; `protocol_over_sets`: the protocol
  over the images that several rendered sets (Set1 and Set2) all hold.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .faces import DatasetError, FaceRecord

__all__ = [
    "SplitError",
    "Splits",
    "split_identities",
    "check_disjoint",
    "read_identity_list",
    "group_by_identity",
    "protocol_identities",
    "make_protocol",
    "protocol_over_sets",
    "validate_protocol",
]


class SplitError(ValueError):
    """Splits overlap in identity, or a protocol cannot be built / is malformed."""


def group_by_identity(records: Iterable[FaceRecord]) -> dict[str, list[FaceRecord]]:
    """{identity: records} with identities and records in input order."""
    out: dict[str, list[FaceRecord]] = defaultdict(list)
    for r in records:
        out[r.identity].append(r)
    return dict(out)


@dataclass
class Splits:
    """Records of the train, val and test splits (identity-disjoint)."""

    train: list[FaceRecord] = field(default_factory=list)
    val: list[FaceRecord] = field(default_factory=list)
    test: list[FaceRecord] = field(default_factory=list)

    def identities(self, split: str) -> set[str]:
        return {r.identity for r in getattr(self, split)}

    def check(self) -> None:
        """Raise SplitError if any identity is in two splits."""
        check_disjoint(train=self.identities("train"), val=self.identities("val"), test=self.identities("test"))

    def summary(self) -> dict:
        return {
            s: {"identities": len(self.identities(s)), "images": len(getattr(self, s))} for s in ("train", "val", "test")
        }

    def to_json(self) -> dict:
        """Sorted identity lists per split (what `splits-<name>.json` holds)."""
        return {s: sorted(self.identities(s)) for s in ("train", "val", "test")}


def check_disjoint(**splits: Iterable[str]) -> None:
    """Raise SplitError naming the identities shared by any two of the named identity sets."""
    sets = {k: set(v) for k, v in splits.items()}
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = sets[a] & sets[b]
            if both:
                shown = ", ".join(sorted(both)[:5]) + (" ..." if len(both) > 5 else "")
                raise SplitError(f"{len(both)} identities are in both {a} and {b}: {shown}")


def read_identity_list(path: str | Path) -> tuple[set[str], set[str] | None]:
    """Read a split list file: returns (identities, image names or None).

    Lines are `image_id identity` (like CelebA_test.txt) or a single `identity`. Blank
    lines and lines starting with '#' are ignored; mixed formats raise DatasetError.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"identity list {path} does not exist (split.test_list)")
    idents, images, ncols = set(), set(), None
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) not in (1, 2) or (ncols is not None and len(parts) != ncols):
            raise DatasetError(f"{path}, line {i}: expected 'image_id identity' or 'identity' on every line, got {line!r}")
        ncols = len(parts)
        idents.add(parts[-1])
        if ncols == 2:
            images.add(parts[0])
    if not idents:
        raise DatasetError(f"identity list {path} is empty")
    return idents, (images if ncols == 2 else None)


def split_identities(
    records: Sequence[FaceRecord],
    test_fraction: float = 0.1,
    val_fraction: float = 0.05,
    seed: int = 0,
    test_identities: Iterable[str] | None = None,
) -> Splits:
    """Split records by identity.

    records:          the whole dataset.
    test_fraction:    fraction of identities held out for test (ignored when `test_identities` is given).
    val_fraction:     fraction of the remaining (training) identities carved out for validation.
    seed:             seeds the shuffle of the sorted identity list; same inputs, same split.
    test_identities:  explicit test identities (e.g. from `read_identity_list` or the LFW
                      protocol); identities absent from `records` are ignored with a warning.
    """
    if not 0.0 <= test_fraction < 1.0 or not 0.0 <= val_fraction < 1.0:
        raise ValueError("test_fraction and val_fraction must be in [0, 1)")
    idents = sorted({r.identity for r in records})
    rng = np.random.default_rng(seed)
    if test_identities is not None:
        wanted = set(test_identities)
        test = set(idents) & wanted
        if len(test) < len(wanted):
            warnings.warn(f"{len(wanted) - len(test)} of {len(wanted)} test identities have no images in this dataset")
        rest = [i for i in idents if i not in test]
    else:
        order = [idents[i] for i in rng.permutation(len(idents))]
        n_test = int(round(test_fraction * len(order)))
        if test_fraction > 0 and n_test == 0 and len(order) > 1:
            n_test = 1
        test, rest = set(order[:n_test]), sorted(order[n_test:])
    order = [rest[i] for i in rng.permutation(len(rest))]
    n_val = int(round(val_fraction * len(order)))
    if val_fraction > 0 and n_val == 0 and len(order) > 1:
        n_val = 1
    val = set(order[:n_val])
    splits = Splits(
        train=[r for r in records if r.identity not in test and r.identity not in val],
        val=[r for r in records if r.identity in val],
        test=[r for r in records if r.identity in test],
    )
    splits.check()
    return splits


def protocol_identities(
    counts: Mapping[str, int], num_identities: int = 200, min_images: int = 7, seed: int = 0
) -> list[str]:
    """Seeded choice of `num_identities` identities among those with >= `min_images` images.

    `counts` maps identity -> number of usable images. Returns a sorted list. When fewer
    identities qualify, all of them are used and a warning says so (SplitError if none).
    """
    eligible = sorted(i for i, n in counts.items() if n >= min_images)
    if not eligible:
        raise SplitError(f"no identity has the {min_images} images the recognition protocol needs")
    if len(eligible) < num_identities:
        warnings.warn(
            f"protocol: only {len(eligible)} identities have >= {min_images} images; using all of them "
            f"instead of {num_identities}"
        )
        return eligible
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(eligible), size=num_identities, replace=False)
    return sorted(eligible[i] for i in pick)


def make_protocol(
    names_by_identity: Mapping[str, Sequence[str]],
    *,
    queries_per_identity: int = 5,
    repeats: int = 5,
    seed: int = 0,
) -> dict:
    """The recognition protocol over the given identities (already chosen).

    names_by_identity: identity -> file names available in the prepared set (each needs
                       at least 1 + queries_per_identity names).
    Each repeat r draws, per identity, one gallery name and `queries_per_identity` other
    query names with `numpy.random.default_rng([seed, r])` over the sorted names.
    """
    need = 1 + queries_per_identity
    short = {i: len(n) for i, n in names_by_identity.items() if len(n) < need}
    if short:
        raise SplitError(f"protocol: identities with fewer than {need} images: {sorted(short)[:5]}")
    idents = sorted(names_by_identity)
    reps = []
    for r in range(repeats):
        rep_seed = int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
        rng = np.random.default_rng(rep_seed)
        gallery, queries = {}, {}
        for ident in idents:
            names = sorted(names_by_identity[ident])
            pick = rng.choice(len(names), size=need, replace=False)
            gallery[ident] = names[pick[0]]
            queries[ident] = [names[i] for i in pick[1:]]
        reps.append({"seed": rep_seed, "gallery": gallery, "queries": queries})
    return {
        "version": 1,
        "num_identities": len(idents),
        "queries_per_identity": queries_per_identity,
        "repeats": reps,
    }


def protocol_over_sets(
    sets: Sequence[Mapping[str, Sequence[str]]],
    *,
    num_identities: int = 200,
    min_images: int = 7,
    queries_per_identity: int = 5,
    repeats: int = 5,
    seed: int = 0,
    log=print,
) -> tuple[dict | None, dict]:
    """One recognition protocol for several sets of the same identities (Set1 and Set2).

    sets: per set, identity -> the file names it actually holds (after skipped files).
    The protocol uses only names every set holds, so it is the same file for all of them.
    Returns (protocol, or None when none can be built - `log` says why - and
    {"identities", "test_identities", "identities_with_too_few_images"}).
    """
    avail = None
    for nb in sets:
        avail = nb if avail is None else {i: sorted(set(avail.get(i, [])) & set(n)) for i, n in nb.items()}
    counts = {i: len(n) for i, n in avail.items()}
    short = sorted(i for i, n in counts.items() if n < min_images)
    protocol = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids = protocol_identities(counts, num_identities=num_identities, min_images=min_images, seed=seed)
        for w in caught:
            log(f"warning: {w.message}")
        protocol = make_protocol(
            {i: avail[i] for i in ids}, queries_per_identity=queries_per_identity, repeats=repeats, seed=seed
        )
    except SplitError as e:
        log(f"warning: no recognition protocol written: {e}")
    info = {
        "identities": protocol["num_identities"] if protocol else 0,
        "test_identities": len(counts),
        "identities_with_too_few_images": len(short),
    }
    return protocol, info


def validate_protocol(protocol: Mapping, names: Iterable[str] | None = None) -> None:
    """Raise SplitError if `protocol` does not have the contract's shape (and, given
    `names`, if it refers to a file name not in the set)."""
    try:
        if protocol["version"] != 1:
            raise SplitError(f"protocol version {protocol['version']} is not supported (expected 1)")
        n, q = protocol["num_identities"], protocol["queries_per_identity"]
        known = set(names) if names is not None else None
        for k, rep in enumerate(protocol["repeats"]):
            g, qs = rep["gallery"], rep["queries"]
            if len(g) != n or set(g) != set(qs):
                raise SplitError(f"protocol repeat {k}: gallery/queries must cover the same {n} identities")
            for ident, qn in qs.items():
                if len(qn) != q or g[ident] in qn or len(set(qn)) != q:
                    raise SplitError(f"protocol repeat {k}, {ident}: need {q} distinct queries besides the gallery image")
                if known is not None:
                    missing = [x for x in [g[ident], *qn] if x not in known]
                    if missing:
                        raise SplitError(f"protocol repeat {k}: {missing[0]} is not in the prepared set")
    except (KeyError, TypeError) as e:
        raise SplitError(f"protocol is malformed ({e!r}); see protocol.json in the interface contract") from None
