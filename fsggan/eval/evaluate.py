"""Score de-occlusion on prepared test sets (paper Tables 2, 3 and 4); the command line
is ``fsggan-eval`` (:mod:`fsggan.cli.evaluate`).

One call scores one method on one or more prepared sets (``fsggan-prepare-data``
folders holding ``clean/ occluded/ mask/``, ``manifest.json`` and ``protocol.json``):

* the method is FSG-GAN from checkpoints (``--gan`` [``--vae``]) or any other method's
  output images (``--predictions DIR``: same file names as the set's images, in
  ``DIR`` itself for one set or in ``DIR/<set name>/``; another image extension with
  the same stem is accepted); with neither, only the baseline rows are computed;
* the "Occluded input" row (the occluded image scored as if it were the output) is
  always included; for recognition also "Clean (upper bound)" (clean queries);
* what a person sees, where PSNR cannot tell: the occluder residue inside each image's
  synthesis mask (:func:`fsggan.metrics.occluder_residue`; 1 = the occluded input, 0 = the
  clean face) per set and per occluder (the manifest names it), with the worst cases kept
  for a grid (``worst``); and, with a model, the harm it does to clean faces (``harm``):
  the model run on each set's un-occluded faces, scored against them (PSNR / SSIM median and
  5th percentile, share of pixels changed by more than 8/255) and recognised as queries
  against the clean gallery (a model that de-occludes must not make a clean face harder to
  recognise);
* PSNR / SSIM (mean and std per set, :mod:`fsggan.metrics`) and, with
  one or more recognisers, rank-1/5/10 identification accuracy over the protocol's
  repeats, one table per recogniser (:mod:`fsggan.eval.recognition`). The recogniser that
  trained G (its identity loss) is not a fair judge of G: G learns its blind spots. The
  caller says which recogniser is which (``recognizer_info[i]["role"]``) and the report
  puts the independent ones first.

The sets of one call share their clean faces (the same test faces under other occluders):
the harm pass and the recognisers' features of clean faces run once per face
(:class:`fsggan.eval.tally.CleanMemo`), and each set gets the figures it would get alone.

Our own outputs are rounded to 8 bits before scoring, so that scoring in memory gives
the same figures as saving them (``--save-predictions``) and scoring the files.
A prediction that is missing, unreadable or of another size than the clean image is
reported by name; the run fails unless ``--allow-missing``, which leaves those images
out of EVERY row (the baselines too, so that all rows are computed on the same images)
and counts them. Each set's result says what its tables used: ``"scored"`` (images and
identities of the quality table) and ``"protocol"`` (identities, queries and repeats of
the rank-k table, with the reasons it is smaller than the paper's protocol, if it is).

``fsggan-eval --compare RUN_A RUN_B ...`` puts earlier results folders side by side
(e.g. the ablations of Table 4).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from fsggan.data import PreparedSet
from fsggan.images import IMAGE_EXTENSIONS, load_image, quantize, save_image, to_uint8
from fsggan.metrics import summarize

from .recognition import load_protocol, protocol_names, protocol_summary
from .residue import seen_by_a_person
from .tally import CleanMemo, Tally

METRICS = ("psnr", "psnr_pm1", "ssim")


class MissingPredictionsError(RuntimeError):
    """Some predictions are missing or unreadable (and ``allow_missing`` is off)."""


# ---------------------------------------------------------------- set contents

def prediction_folder(predictions: str | Path, set_dir: Path, n_sets: int) -> Path:
    """``predictions/<set name>/`` when it exists, else ``predictions`` itself (one set only)."""
    root = Path(predictions)
    if (root / set_dir.name).is_dir():
        return root / set_dir.name
    if n_sets == 1 and root.is_dir():
        return root
    raise FileNotFoundError(f"{root}: expected a sub-folder {set_dir.name}/ with the predictions for set "
                            f"{set_dir} (with several sets, predictions go in DIR/<set name>/)")


def match_predictions(folder: Path, names: Sequence[str]) -> dict[str, Path | None]:
    """name -> prediction file (same name, else same stem with another image extension) or None."""
    by_stem: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            by_stem.setdefault(p.stem, p)
    out = {}
    for n in names:
        exact = folder / n
        out[n] = exact if exact.is_file() else by_stem.get(Path(n).stem)
    return out


class _ScoredItems(Dataset):
    """Items of a prepared set (clean, occluded) plus, optionally, a prediction file per name."""

    def __init__(self, prepared: PreparedSet, pred_files: Mapping[str, Path | None] | None):
        self.prepared, self.pred_files = prepared, pred_files

    def __len__(self) -> int:
        return len(self.prepared)

    def __getitem__(self, i: int) -> dict:
        item = self.prepared[i]
        name, clean = item["name"], item["clean"]
        item.update({"pred": torch.zeros_like(clean), "pred_error": ""})
        if self.pred_files is not None:
            path = self.pred_files.get(name)
            if path is None:
                item["pred_error"] = "missing"
            else:
                try:
                    pred = load_image(path)
                    if pred.shape != clean.shape:
                        raise OSError(f"{path}: size {tuple(pred.shape[1:])} differs from the clean image's "
                                      f"{tuple(clean.shape[1:])}")
                    item["pred"] = pred
                except OSError as exc:
                    item["pred_error"] = str(exc)
        return item


# ---------------------------------------------------------------- one set

@torch.no_grad()
def evaluate_set(
    set_dir: str | Path,
    *,
    method: str | None = None,            # row label of the method (None: baseline rows only)
    model=None,                           # an FSGGAN (or anything with .run(x) -> (y, g)) ...
    predictions: str | Path | None = None,  # ... or a folder of predicted images with the set's names
    recognizers: Mapping[str, Callable] | None = None,  # name -> (B,3,H,W) [-1,1] -> (B,D) unit features
    ks: Sequence[int] = (1, 5, 10),       # ranks to report
    allow_missing: bool = False,          # skip missing/unreadable predictions instead of failing
    batch_size: int = 64,                 # images per batch (model and recognizer)
    device="cpu",                         # where the recognisers run
    workers: int = 0,                     # DataLoader worker processes for reading images
    save_predictions: str | Path | None = None,  # write the model's outputs here (<name> per image)
    per_image: bool = False,              # keep per-image metrics in the result
    progress: bool = True,                # tqdm progress bar
    harm: bool = True,                    # with a model: also run it on the clean faces and score the change
    worst: int = 0,                       # keep the images of this many worst cases by residue, and of
                                          # the clean faces the model changed most (for two grids)
    memo: CleanMemo | None = None,        # clean-face work shared between sets (evaluate_sets passes one)
) -> dict:
    """Score one prepared set; returns the set's entry of the results dict (JSON-ready
    apart from floats, see :func:`fsggan.eval.report.to_json`)."""
    from tqdm import tqdm

    set_dir = Path(set_dir)
    prepared = PreparedSet(set_dir, masks=(set_dir / "mask").is_dir())
    names = prepared.names
    row = _method_row(method, model, predictions)
    pred_files = None if predictions is None else _matched_predictions(set_dir, Path(predictions), names,
                                                                       allow_missing)
    recognizers = dict(recognizers or {})
    protocol, gallery, queries = _protocol_of(set_dir, names) if recognizers else (None, set(), set())
    tally = Tally(row, recognizers, gallery, queries, [] if per_image else None, worst=worst,
                   memo=memo if memo is not None else CleanMemo())
    loader = DataLoader(_ScoredItems(prepared, pred_files), batch_size=batch_size, num_workers=workers)
    save_dir = Path(save_predictions) if save_predictions is not None else None
    harm_pass = model is not None and harm
    for batch in tqdm(loader, desc=f"{set_dir.name}", unit="batch", disable=not progress, leave=False):
        bnames = list(batch["name"])
        pred, ok = _batch_predictions(batch, bnames, model, pred_files, save_dir, tally)
        clean8, occ8 = to_uint8(batch["clean"]), to_uint8(batch["occluded"])   # once per batch, for every score
        tally.add_quality(bnames, clean8, occ8, pred, ok)
        keys = tally.memo.keys(clean8) if recognizers or harm_pass else []   # the memo's keys, once per batch
        tally.add_features(bnames, batch["clean"], keys, batch["occluded"], pred, ok, device)
        if pred is not None and "mask" in batch:
            tally.add_residue(bnames, batch, clean8, occ8, pred, ok)
        if harm_pass:
            tally.add_harm(bnames, batch["clean"], clean8, keys, model, device)
    missing, unreadable = tally.missing, tally.unreadable
    if (missing or unreadable) and not allow_missing:
        raise MissingPredictionsError(_missing_message(set_dir, Path(predictions), missing, unreadable))
    if row is not None and len(missing) + len(unreadable) >= len(names):
        raise MissingPredictionsError(_nothing_scored(set_dir, predictions, len(names), missing, unreadable))
    return _set_result(set_dir, prepared, tally, protocol, ks)


def _method_row(method: str | None, model, predictions) -> str | None:
    """The row label of the method scored (None: no method, baseline rows only)."""
    if model is not None and predictions is not None:
        raise ValueError("give either a model or a predictions folder, not both")
    if model is None and predictions is None:
        return None
    if not method:
        raise ValueError("a method name is needed to label its row")
    return method


def _matched_predictions(set_dir: Path, folder: Path, names: Sequence[str], allow_missing: bool) -> dict:
    """The prediction file of every image name, checked before any work: a missing one fails
    unless `allow_missing`, and so does a folder with none."""
    pred_files = match_predictions(folder, names)
    missing = [n for n, p in pred_files.items() if p is None]
    if missing and not allow_missing:
        raise MissingPredictionsError(_missing_message(set_dir, folder, missing, []))
    if len(missing) == len(names):
        raise MissingPredictionsError(_nothing_scored(set_dir, folder, len(names), missing, []))
    return pred_files


def _protocol_of(set_dir: Path, names: Sequence[str]) -> tuple[dict, set[str], set[str]]:
    """The set's rank-k protocol, with the names of its gallery and of its queries, which
    must all be images of the set."""
    protocol = load_protocol(set_dir)
    g, q = protocol_names(protocol)
    gallery, queries = set(g), set(q)
    unknown = sorted((gallery | queries) - set(names))
    if unknown:
        raise ValueError(f"{set_dir}/protocol.json names images that are not in the set: {unknown[:5]}")
    return protocol, gallery, queries


def _batch_predictions(batch: dict, bnames: list[str], model, pred_files, save_dir: Path | None,
                       tally: Tally) -> tuple[torch.Tensor | None, list[bool]]:
    """The method's images of a batch (None without a method) and which of them can be scored:
    the model's outputs rounded to 8 bits (saved in `save_dir` when given), or the
    prediction files the loader read, whose failures `tally` records."""
    ok = [True] * len(bnames)
    if model is not None:
        y, _ = model.run(batch["occluded"])
        pred = quantize(y.float()).cpu()
        if save_dir is not None:
            for n, img in zip(bnames, pred):
                save_image(img, save_dir / n)
        return pred, ok
    if pred_files is None:
        return None, ok
    for i, err in enumerate(batch["pred_error"]):
        if err:
            ok[i] = False
            (tally.missing if err == "missing" else tally.unreadable).append(
                bnames[i] if err == "missing" else {"name": bnames[i], "error": err})
    return batch["pred"], ok


def _set_result(set_dir: Path, prepared: PreparedSet, tally: Tally, protocol: dict | None,
                ks: Sequence[int]) -> dict:
    """The set's entry of the results: every row on the same images, those with a usable
    prediction (all of them without a method)."""
    names = prepared.names
    left_out = set(tally.missing) | {u["name"] for u in tally.unreadable}
    kept = [n for n in names if n not in left_out]
    identity = {e["name"]: e.get("identity") for e in (prepared.manifest or {}).get("images", [])}
    result = {
        "path": str(set_dir),
        "num_images": len(names),
        "scored": {"images": len(kept), "identities": len({identity[n] for n in kept if identity.get(n)}) or None},
        "quality": {row: {k: summarize([by_name[n][k] for n in kept]) for k in METRICS}
                    for row, by_name in tally.scores.items()},
        "missing": tally.missing,
        "unreadable": tally.unreadable,
        "recognition": None,
    }
    if protocol is not None:
        usable = tally.queries - left_out
        result["recognition"] = tally.rank_k(protocol, usable, ks)
        result["protocol"] = protocol_summary(protocol, usable)
    result.update(seen_by_a_person(prepared, tally, kept, protocol, ks))
    if tally.per_image is not None:
        for record in tally.per_image:
            n = record["name"]
            if n in tally.residue:
                record["method_residue"] = tally.residue[n]
            if n in tally.harm:
                record.update({f"clean_output_{k}": v for k, v in tally.harm[n].items()})
        result["per_image"] = tally.per_image
    return result


def _nothing_scored(set_dir: Path, folder, n: int, missing: list, unreadable: list) -> str:
    """Nothing scored is a failure, --allow-missing or not."""
    why = f"{len(missing)} missing, {len(unreadable)} unreadable" + (
        f" (first: {unreadable[0]['name']}: {unreadable[0]['error']})" if unreadable else "")
    return (f"set {set_dir}: no usable prediction in {folder} ({why}, of {n} images): nothing to score; "
            "check the folder and the file names and sizes")


def _missing_message(set_dir: Path, folder: Path, missing: list, unreadable: list) -> str:
    lines = [f"set {set_dir}: predictions in {folder}: {len(missing)} missing, {len(unreadable)} unreadable "
             "(pass --allow-missing to score the rest and report these)"]
    lines += [f"  missing: {n}" for n in missing[:20]]
    if len(missing) > 20:
        lines.append(f"  ... and {len(missing) - 20} more missing")
    lines += [f"  unreadable: {u['name']}: {u['error']}" for u in unreadable[:20]]
    if len(unreadable) > 20:
        lines.append(f"  ... and {len(unreadable) - 20} more unreadable")
    return "\n".join(lines)


# ---------------------------------------------------------------- several sets

def evaluate_sets(
    sets: Sequence[str | Path],
    *,
    method: str | None = None,
    model=None,
    predictions: str | Path | None = None,
    recognizers: Mapping[str, Callable] | None = None,
    recognizer_info: Sequence[Mapping] | None = None,
    save_predictions: str | Path | None = None,
    **options,
) -> dict:
    """Score one method on several prepared sets -> the full results dict.

    Keyword options are those of :func:`evaluate_set`. ``predictions`` is one folder for
    a single set, or a folder with one sub-folder per set name; ``save_predictions``
    gets one sub-folder per set. ``recognizer_info``: one dict per recogniser (``name``,
    ``weights``, ``role``: "independent" or "training loss"), stored in the results in
    the order given (independent first).
    """
    set_dirs = [Path(s) for s in sets]
    labels = [d.name for d in set_dirs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"sets must have distinct folder names, got {labels}")
    results = {
        "version": 1,
        "method": method,
        "source": _source(model, predictions),
        "recognizers": [dict(i) for i in recognizer_info or ({"name": n} for n in recognizers or {})],
        "ks": list(options.get("ks", (1, 5, 10))),
        "psnr_note": ("psnr: standard PSNR on [0, 1] (data_range 1); psnr_pm1: the FSG-GAN code's convention "
                      "on [-1, 1] images = psnr - 20 log10(2) = psnr - 6.02 dB"),
        "sets": {},
    }
    memo = CleanMemo()  # the sets share their clean faces: the harm pass and their features run once each
    for d in set_dirs:
        pred = prediction_folder(predictions, d, len(set_dirs)) if predictions is not None else None
        save = Path(save_predictions) / d.name if save_predictions is not None else None
        results["sets"][d.name] = evaluate_set(d, method=method, model=model, predictions=pred,
                                               recognizers=recognizers, save_predictions=save, memo=memo, **options)
    return results


def _source(model, predictions) -> dict:
    if model is not None:
        return {"kind": "checkpoints", **getattr(model, "checkpoints", {}),
                "structure_passes": getattr(model, "structure_passes", 1)}
    if predictions is not None:
        return {"kind": "predictions", "folder": str(predictions)}
    return {"kind": "none"}
