"""Rank-k face identification (paper Table 3; docs/design.md, Metrics).

Protocol (``protocol.json`` in a prepared set folder, written by ``fsggan-prepare-data``)::

    {"version": 1, "num_identities": 200, "queries_per_identity": 5,
     "repeats": [{"seed": 0, "gallery": {identity: name}, "queries": {identity: [name, ...]}}, ...]}

Per repeat: the gallery holds one CLEAN image per identity; every query is compared to
all gallery entries by cosine similarity of L2-normalised embeddings; a query hits at
rank k when its identity is among the k most similar gallery entries. The rank of the
true identity is ``1 + (number of gallery entries strictly more similar)``, so exact
ties are resolved in the query's favour. Accuracies are averaged over the queries of a
repeat; the reported figure is mean and (population) std over the repeats.

Recognizers: ``"dlib_resnet"`` - dlib's 128-d ResNet in torch (weights from the
``face-recognition-models`` package, a dependency), the default and the independent judge:
no training config uses it - and every :data:`fsggan.models.identity.EMBEDDER_NAMES`
network through ``build_embedder``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fsggan.models.identity.dlib_resnet import DLIB_NAME, DlibResNetEmbedder

DEFAULT_KS = (1, 5, 10)
# The paper's protocol (Table 3): 200 identities with more than 6 images, 1 clean gallery
# image + 5 queries each, 5 repeats. Smaller protocols are reported as reduced.
PAPER_PROTOCOL = {"identities": 200, "queries_per_identity": 5, "repeats": 5}


# ---------------------------------------------------------------- protocol

def load_protocol(path: str | Path) -> dict:
    """Read and check a ``protocol.json`` (a set folder or the file itself).

    Raises ``ValueError`` naming the file when the format is wrong.
    """
    path = Path(path) / "protocol.json" if Path(path).is_dir() else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no recognition protocol (run fsggan-prepare-data to write one)")
    proto = json.loads(path.read_text())
    repeats = proto.get("repeats") if isinstance(proto, dict) else None
    if not isinstance(repeats, list) or not repeats:
        raise ValueError(f"{path}: expected a dict with a non-empty 'repeats' list")
    for i, rep in enumerate(repeats):
        if not isinstance(rep.get("gallery"), dict) or not isinstance(rep.get("queries"), dict):
            raise ValueError(f"{path}: repeat {i} needs 'gallery' {{identity: name}} and "
                             f"'queries' {{identity: [names]}}")
        extra = set(rep["queries"]) - set(rep["gallery"])
        if extra:
            raise ValueError(f"{path}: repeat {i} has queries for identities without a gallery image: "
                             f"{sorted(extra)[:5]}")
    return proto


def protocol_names(protocol: Mapping) -> tuple[list[str], list[str]]:
    """All gallery names and all query names used by any repeat (sorted, unique)."""
    gallery, queries = set(), set()
    for rep in protocol["repeats"]:
        gallery.update(rep["gallery"].values())
        for names in rep["queries"].values():
            queries.update(names)
    return sorted(gallery), sorted(queries)


def protocol_summary(protocol: Mapping, usable: set[str] | None = None) -> dict:
    """What a rank-k table was computed on: ``{"repeats", "identities" (gallery size),
    "queries_per_identity", "queries" (used, over all repeats), "queries_total",
    "identities_queried" (identities with at least one query used), "reduced": [reasons
    the protocol is smaller than the paper's]}``.

    usable: the query names that could be scored (None: all); the others are left out of
    every row (``--allow-missing``).
    """
    repeats = protocol["repeats"]
    identities = len(repeats[0]["gallery"])
    per_id = protocol.get("queries_per_identity") or max(
        (len(q) for rep in repeats for q in rep["queries"].values()), default=0)
    total = sum(len(q) for rep in repeats for q in rep["queries"].values())
    used = sum(usable is None or n in usable for rep in repeats for qs in rep["queries"].values() for n in qs)
    queried = {ident for rep in repeats for ident, qs in rep["queries"].items()
               if any(usable is None or n in usable for n in qs)}
    paper = PAPER_PROTOCOL
    reduced = [f"{got} {what} instead of {want}" for got, want, what in (
        (identities, paper["identities"], "identities"), (per_id, paper["queries_per_identity"],
                                                          "queries per identity"),
        (len(repeats), paper["repeats"], "repeats")) if got < want]
    if used < total:
        reduced.append(f"{total - used} of {total} queries left out (no usable prediction)")
    return {"repeats": len(repeats), "identities": identities, "queries_per_identity": per_id,
            "queries": used, "queries_total": total, "identities_queried": len(queried), "reduced": reduced}


# ---------------------------------------------------------------- rank-k

def identification_ranks(gallery: torch.Tensor, query: torch.Tensor, true_index: torch.Tensor) -> torch.Tensor:
    """Rank (1 = best) of the true gallery entry for each query.

    gallery: (G, D) and query: (Q, D) L2-normalised features; true_index: (Q,) long,
    the gallery row of each query's identity.
    """
    sim = query.float() @ gallery.float().T  # (Q, G) cosine similarity
    true_sim = sim.gather(1, true_index.view(-1, 1))
    return 1 + (sim > true_sim).sum(dim=1)


def rank_k_accuracy(gallery: torch.Tensor, query: torch.Tensor, true_index: torch.Tensor,
                    ks: Sequence[int] = DEFAULT_KS) -> dict[int, float]:
    """Fraction of queries whose identity is among the k most similar gallery entries."""
    ranks = identification_ranks(gallery, query, true_index)
    return {k: float((ranks <= k).double().mean()) if len(ranks) else float("nan") for k in ks}


def evaluate_protocol(protocol: Mapping, gallery_features: Mapping[str, torch.Tensor],
                      query_features: Mapping[str, torch.Tensor], ks: Sequence[int] = DEFAULT_KS) -> dict:
    """Rank-k accuracies of one kind of query over every repeat of ``protocol``.

    gallery_features: name -> (D,) feature of clean/<name>.
    query_features: name -> (D,) feature of the query image with that name (occluded,
        de-occluded or clean). A query name absent from it (a missing prediction
        allowed with ``--allow-missing``) is left out and counted in ``n_missing``.
    Returns ``{"rank1": {"mean", "std", "values"}, ..., "n_queries", "n_missing"}``
    where values are the per-repeat accuracies.
    """
    per_k: dict[int, list[float]] = {k: [] for k in ks}
    n_queries = n_missing = 0
    for rep in protocol["repeats"]:
        ids = list(rep["gallery"])
        gal = torch.stack([gallery_features[rep["gallery"][i]] for i in ids])
        feats, truth = [], []
        for row, ident in enumerate(ids):
            for name in rep["queries"].get(ident, []):
                if name in query_features:
                    feats.append(query_features[name])
                    truth.append(row)
                else:
                    n_missing += 1
        n_queries += len(feats)
        if not feats:
            for k in ks:
                per_k[k].append(float("nan"))
            continue
        acc = rank_k_accuracy(gal, torch.stack(feats), torch.tensor(truth), ks)
        for k in ks:
            per_k[k].append(acc[k])
    out: dict = {}
    for k, vals in per_k.items():
        arr = np.asarray(vals, dtype=np.float64)
        ok = arr[np.isfinite(arr)]
        out[f"rank{k}"] = {"mean": float(ok.mean()) if ok.size else float("nan"),
                           "std": float(ok.std()) if ok.size else float("nan"), "values": vals}
    out["n_queries"], out["n_missing"] = n_queries, n_missing
    return out


# ---------------------------------------------------------------- recognizers

def recognizer_names() -> tuple[str, ...]:
    """Names accepted by :func:`build_recognizer`."""
    from fsggan.models.identity import EMBEDDER_NAMES

    return tuple(EMBEDDER_NAMES) + (DLIB_NAME,)


def build_recognizer(name: str, weights: str | Path | None = None, **options) -> nn.Module:
    """A frozen face embedder by name: ``(B, 3, H, W)`` in [-1, 1] -> ``(B, D)`` unit features.

    name: ``dlib_resnet`` (the independent judge: dlib's recogniser ported to torch, weights
        from the ``face-recognition-models`` package that fsggan installs) or ``lightcnn9`` ...
        ``arcface_r100`` (see ``fsggan.models.identity.build_embedder``).
    weights: path to the published weights (``dlib_resnet``: None = the packaged file);
        ``"random"`` keeps random weights, whose features carry no identity information
        (smoke tests only).
    """
    from fsggan.models.identity import build_embedder

    if name == DLIB_NAME:
        net = DlibResNetEmbedder(weights, **options)
    else:
        net = build_embedder(name, None if weights == "random" else weights, **options)
    # NHWC weights, oneDNN's fast layout: 64 faces on 2 idle cores, dlib 0.44 -> 0.31 s and
    # MobileFaceNet 0.97 -> 0.52 s; the features equal to float rounding
    return net.to(memory_format=torch.channels_last)
