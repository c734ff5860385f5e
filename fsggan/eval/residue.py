"""What a person sees, which PSNR cannot tell: the occluder residue of a method's outputs per
set and per occluder, the worst cases, and the harm done to clean faces
(:func:`seen_by_a_person`, called by :func:`fsggan.eval.evaluate.evaluate_set` with the
pass's tally)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fsggan.data import PreparedSet
from fsggan.metrics import spread, summarize

from .recognition import evaluate_protocol
from .report import OCCLUDED


def seen_by_a_person(prepared: PreparedSet, tally, kept: Sequence[str], protocol: dict | None,
                     ks: Sequence[int]) -> dict:
    """The set result's entries ``residue`` (spread), ``per_occluder``, ``worst`` (and the
    worst cases' images, ``worst_images``, rows: occluded, output, clean), and ``harm``
    (the model on the clean faces: PSNR, SSIM, pixels changed, rank-1 of clean queries and
    of their outputs; the faces it changed most in ``worst_harm``, their images in
    ``worst_harm_images``, rows: clean face, output): each only when the pass measured it."""
    names = prepared.names
    result: dict = {}
    if tally.residue:
        occ_of = _occluders(prepared)
        result["residue"] = spread(tally.residue[n] for n in kept if n in tally.residue)
        result["per_occluder"] = _per_occluder(occ_of, tally, kept, protocol, ks)
        result["worst"] = [{"name": n, "occluder": occ_of.get(n), "residue": r}
                           for r, n, *_ in tally.worst_cases]
        if tally.worst_cases:   # rows: occluded, output, clean (popped by write_results into a picture)
            result["worst_images"] = [torch.stack([c[k] for c in tally.worst_cases]) for k in (2, 3, 4)]
    if tally.harm:
        result["harm"] = {k: spread(tally.harm[n][k] for n in names) for k in ("psnr", "ssim", "changed")}
        if protocol is not None:
            result["harm"]["recognition"] = {
                rec: {"clean": evaluate_protocol(protocol, f["clean"], f["clean"], ks),
                      "output": evaluate_protocol(protocol, f["clean"], f["harm"], ks)}
                for rec, f in tally.feats.items()}
        if tally.worst_harm:    # rows: clean face, output (popped by write_results into a picture)
            result["worst_harm"] = [{"name": n, "psnr": p} for p, n, *_ in tally.worst_harm]
            result["worst_harm_images"] = [torch.stack([c[k] for c in tally.worst_harm]) for k in (2, 3)]
    return result


def _occluders(prepared: PreparedSet) -> dict[str, str]:
    """image name -> the occluder(s) its manifest names ("+"-joined), "unknown" without one."""
    return {e["name"]: e.get("occluder") or "unknown" for e in (prepared.manifest or {}).get("images", [])}


def _per_occluder(occ_of: dict[str, str], tally, kept: Sequence[str], protocol: dict | None,
                  ks: Sequence[int]) -> dict:
    """occluder -> images, PSNR gain over the occluded input (mean, dB), residue (median,
    mean) and, per recogniser, the rank-1 gain of the method's queries over the occluded
    ones under that occluder (on the protocol's repeats)."""
    by_occ: dict[str, list[str]] = {}
    for n in kept:
        if n in tally.residue:
            by_occ.setdefault(occ_of.get(n, "unknown"), []).append(n)
    out = {}
    for occ, names in sorted(by_occ.items()):
        gain = [tally.scores[tally.method][n]["psnr"] - tally.scores[OCCLUDED][n]["psnr"] for n in names]
        entry = {"images": len(names), "psnr_gain": summarize(gain)["mean"],
                 "residue": spread(tally.residue[n] for n in names)}
        if protocol is not None:
            subset = set(names) & tally.queries
            entry["queries"] = len(subset)
            entry["rank1_gain"] = {}
            for rec, f in tally.feats.items():
                acc = [evaluate_protocol(protocol, f["clean"], {n: v for n, v in f[key].items() if n in subset}, ks[:1])
                       for key in ("method", "occluded")]
                entry["rank1_gain"][rec] = acc[0][f"rank{ks[0]}"]["mean"] - acc[1][f"rank{ks[0]}"]["mean"]
        out[occ] = entry
    return out
