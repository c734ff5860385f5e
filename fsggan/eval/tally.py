"""What one pass over a prepared set's batches collects (:class:`Tally`): per row the metrics
of each image, the recognisers' features, the occluder residue and the harm to clean faces, with
the worst cases' images; and the clean-face work that the sets of one evaluation share
(:class:`CleanMemo`). :func:`fsggan.eval.evaluate.evaluate_set` drives the pass."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fsggan.images import to_tensor, to_uint8
from fsggan.metrics import changed_share, image_metrics_batch, occluder_residue

from .recognition import evaluate_protocol
from .report import CLEAN, OCCLUDED


def _keep_worst(kept: list[tuple], cases: list[tuple], k: int, key) -> list[tuple]:
    """The ``k`` first by ``key`` of ``kept`` and ``cases`` (tuples ``(score, name, *images)``);
    the images of the cases that stay are copied, so no view keeps a whole batch in memory."""
    old = {id(c) for c in kept}
    return [c if id(c) in old else (*c[:2], *(t.clone() for t in c[2:]))
            for c in sorted([*kept, *cases], key=key)[:k]]


@dataclass
class CleanMemo:
    """Work on clean faces that several sets share: the test sets hold the same faces under
    different occluders, so the model's output on a clean face (the harm pass) and the
    recognisers' features of a clean face and of that output are computed once, keyed by the
    face's 8-bit pixels. One memo serves the sets of one :func:`evaluate_sets` call; a set
    gets the figures it would get alone."""

    outputs: dict = field(default_factory=dict)    # key -> the model's 8-bit output (H, W, 3) on that clean face
    features: dict = field(default_factory=dict)   # (recogniser, "clean" | "harm", key) -> feature

    @staticmethod
    def keys(images_u8: np.ndarray) -> list[bytes]:
        return [hashlib.sha1(a.tobytes()).digest() for a in images_u8]

    def embed(self, recognizer, rec_name: str, kind: str, images: torch.Tensor, names: list[str], keys: list[bytes],
              wanted: set[str], store: dict, device) -> None:
        """``store[name]`` = the recogniser's feature of each wanted image, computed for the
        images whose key it has not seen."""
        todo = [i for i, n in enumerate(names) if n in wanted and (rec_name, kind, keys[i]) not in self.features]
        fresh: dict = {}
        _embed_subset(recognizer, images, names, {names[i] for i in todo}, fresh, device)
        for i in todo:
            self.features[(rec_name, kind, keys[i])] = fresh[names[i]]
        for i, n in enumerate(names):
            if n in wanted:
                store[n] = self.features[(rec_name, kind, keys[i])]


@dataclass
class Tally:
    """What the pass over a set's batches collects: per row, the metrics of each image; the
    per-image records (when kept); the predictions left out; and per recogniser, the
    features of the images the protocol uses."""

    method: str | None                   # the method's row label (None: baseline rows only)
    recognizers: Mapping[str, Callable]
    gallery: set[str]                    # names whose clean image is a gallery entry
    queries: set[str]                    # names whose images are queries
    per_image: list | None               # per-image records (None: not kept)
    worst: int = 0                       # how many worst cases (residue; harm) to keep the images of
    memo: CleanMemo = field(default_factory=CleanMemo)  # clean-face work shared with other sets
    missing: list = field(default_factory=list)      # names without a prediction file
    unreadable: list = field(default_factory=list)   # {"name", "error"} of unusable prediction files
    scores: dict = field(init=False)     # row -> image name -> metrics
    feats: dict = field(init=False)      # recogniser -> "clean" / "occluded" / "method" / "harm" -> name -> feature
    residue: dict = field(default_factory=dict)      # image name -> occluder residue of the method's output
    harm: dict = field(default_factory=dict)         # image name -> metrics of the model's output on the clean face
    worst_cases: list = field(default_factory=list)  # (residue, name, occluded, output, clean), worst first
    worst_harm: list = field(default_factory=list)   # (PSNR, name, clean, output): the clean faces changed most

    def __post_init__(self):
        self.scores = {OCCLUDED: {}, **({self.method: {}} if self.method is not None else {})}
        self.feats = {r: {"clean": {}, "occluded": {}, "method": {}, "harm": {}} for r in self.recognizers}

    def add_residue(self, names: list[str], batch: dict, clean8, occ8, pred, ok: list[bool]) -> None:
        """The occluder residue of each usable prediction, and the worst cases' images
        (``clean8``, ``occ8``: the batch's faces at 8 bits)."""
        good = [i for i in range(len(names)) if ok[i]]
        if not good:
            return
        r = occluder_residue(to_uint8(pred[good]), occ8[good], clean8[good], batch["mask"][good].numpy() > 0.5)
        for j, i in enumerate(good):
            self.residue[names[i]] = float(r[j])
        cases = [(float(r[j]), names[i], batch["occluded"][i], pred[i], batch["clean"][i])
                 for j, i in enumerate(good) if r[j] == r[j]]
        self.worst_cases = _keep_worst(self.worst_cases, cases, self.worst, key=lambda c: -c[0])

    def add_harm(self, names: list[str], clean, clean_u8, keys: list[bytes], model, device) -> None:
        """The model run on the clean faces (``clean_u8``: them at 8 bits; ``keys``: their memo
        keys): its change to each, and the recognisers' features of the outputs of clean queries
        (each face once per memo)."""
        todo = [i for i, k in enumerate(keys) if k not in self.memo.outputs]
        if todo:
            fresh = to_uint8(model.run(clean[todo])[0])   # rounded to 8 bits, as quantize() rounds
            for j, i in enumerate(todo):
                self.memo.outputs[keys[i]] = fresh[j]
        out_u8 = np.stack([self.memo.outputs[k] for k in keys])
        out = torch.stack([to_tensor(a) for a in out_u8])  # = quantize(output)
        changed = changed_share(out_u8, clean_u8)
        for i, (n, m) in enumerate(zip(names, image_metrics_batch(out_u8, clean_u8))):
            self.harm[n] = {**m, "changed": float(changed[i])}
        cases = [(self.harm[n]["psnr"], n, clean[i], out[i]) for i, n in enumerate(names)
                 if self.harm[n]["psnr"] < float("inf")]   # an unchanged face is no case of harm
        self.worst_harm = _keep_worst(self.worst_harm, cases, self.worst, key=lambda c: c[0])
        for rec_name, recognizer in self.recognizers.items():
            self.memo.embed(recognizer, rec_name, "harm", out, names, keys, self.queries, self.feats[rec_name]["harm"],
                            device)

    def add_quality(self, names: list[str], clean8, occ8, pred, ok: list[bool]) -> None:
        """Image quality of the occluded inputs and of the usable predictions, per image
        (computed for the batch at once; ``clean8``, ``occ8``: the batch's faces at 8 bits)."""
        m_occ_batch = image_metrics_batch(occ8, clean8)
        good = [i for i in range(len(names)) if ok[i]]
        m_pred_batch = (dict(zip(good, image_metrics_batch(to_uint8(pred[good]), clean8[good])))
                        if pred is not None and good else {})
        for i, n in enumerate(names):
            m_occ = self.scores[OCCLUDED][n] = m_occ_batch[i]
            record = {"name": n, **{f"occluded_{k}": v for k, v in m_occ.items()}}
            if i in m_pred_batch:
                m_pred = self.scores[self.method][n] = m_pred_batch[i]
                record.update({f"method_{k}": v for k, v in m_pred.items()})
            if self.per_image is not None:
                self.per_image.append(record)

    def add_features(self, names: list[str], clean, keys: list[bytes], occ, pred, ok: list[bool], device) -> None:
        """Each recogniser's features of the batch's clean gallery and query images (each face
        once per memo; ``keys``: their memo keys), occluded queries and usable predicted queries."""
        for rec_name, recognizer in self.recognizers.items():
            store = self.feats[rec_name]
            self.memo.embed(recognizer, rec_name, "clean", clean, names, keys, self.gallery | self.queries,
                            store["clean"], device)
            _embed_subset(recognizer, occ, names, self.queries, store["occluded"], device)
            if pred is not None:
                usable = {n for n, good in zip(names, ok) if good} & self.queries
                _embed_subset(recognizer, pred, names, usable, store["method"], device)

    def rank_k(self, protocol: dict, usable: set[str], ks: Sequence[int]) -> dict:
        """recogniser -> row -> rank-k accuracies, on the `usable` queries only."""
        rows = [(OCCLUDED, "occluded"), *([(self.method, "method")] if self.method is not None else []),
                (CLEAN, "clean")]
        return {rec_name: {row: evaluate_protocol(protocol, f["clean"],
                                                  {n: v for n, v in f[key].items() if n in usable}, ks)
                           for row, key in rows}
                for rec_name, f in self.feats.items()}


def _embed_subset(recognizer, images: torch.Tensor, names: list[str], wanted: set[str],
                  store: dict, device) -> None:
    idx = [i for i, n in enumerate(names) if n in wanted]
    if not idx:
        return
    x = images[idx].to(device, non_blocking=True)
    out = recognizer(x).float().cpu()
    for j, i in enumerate(idx):
        store[names[i]] = out[j]
