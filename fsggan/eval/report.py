"""Results files and paper-shaped tables.

A results folder (``fsggan-eval --out DIR``) holds

* ``results.json``: everything (see :func:`fsggan.eval.evaluate.evaluate_sets`); infinite
  PSNR values are written as the string ``"inf"`` and NaN as ``null``;
* ``results.md``: Table 2 shape (rows = methods, per set PSNR, PSNR on [-1, 1] and
  SSIM, mean +/- std) and Table 3 shape (rows = query kinds, per set rank-1/5/10 in %),
  one Table 3 per recogniser: the independent ones first, the one that trained G marked
  "(training loss: not an independent judge)";
* ``quality.csv`` and ``recognition.csv``: one line per (set, row, metric);
* ``occluders_<set>.csv``: the per-occluder table (images, PSNR gain, residue, rank-1 gain);
* ``worst_residue_<set>.png``: the worst cases by occluder residue (rows: occluded input,
  output, clean face), when the evaluation kept them;
* ``worst_harm_<set>.png``: the clean faces the model changed most, lowest PSNR first (rows:
  clean face, output). LFW's "clean" faces include real caps, hands and sunglasses, which
  a de-occlusion model is right to touch: this picture tells them from true harm;
* ``per_image_<set>.csv`` with ``--per-image``.

Beside the paper's two tables, ``results.md`` shows what a person sees: the occluder residue
per set (the occluded input is 1 by definition, the clean face 0), the harm done to clean
faces, and the per-occluder table, worst first.

``fsggan-eval --compare A B ...`` reads several folders and builds the same tables with
one row per run (Table 4, ablations).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

from fsggan.images import write_atomic
from fsggan.metrics import json_number
from .recognition import PAPER_PROTOCOL

OCCLUDED = "Occluded input"
CLEAN = "Clean (upper bound)"


# ---------------------------------------------------------------- JSON

def to_json(obj):
    """Recursively replace non-finite floats by JSON-safe values (``"inf"``, ``null``)."""
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, float):
        return json_number(obj)
    return obj


def load_results(folder: str | Path) -> dict:
    """Read ``results.json`` from a results folder (or the file itself)."""
    path = Path(folder)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results.json (write one with fsggan-eval --out DIR)")
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- tables

def _num(x) -> float:
    if x is None:
        return math.nan
    return float(x)


def _cell(summary: dict | None, digits: int, scale: float = 1.0) -> str:
    if not summary:
        return "-"
    mean, std = _num(summary.get("mean")), _num(summary.get("std"))
    if math.isnan(mean):
        text = "n/a"
    else:
        text = f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"
    if summary.get("n_inf"):
        text += f" ({summary['n_inf']} inf)"
    return text


def _section(data: dict, section: str) -> dict:
    """A set's table: ``"quality"``, or ``"recognition/<recogniser>"``."""
    kind, _, rec = section.partition("/")
    table = data.get(kind) or {}
    return table.get(rec) or {} if rec else table


def _rows(runs: Sequence[dict], labels: Sequence[str] | None, section: str) -> tuple[list[str], list[tuple[str, dict]]]:
    """Set names (first-seen order) and (label, {set: row data}) rows for ``section``
    ("quality" or "recognition/<recogniser>"): the baseline rows once, then each run's method."""
    set_names: list[str] = []
    for r in runs:
        for s, data in r["sets"].items():
            if _section(data, section) and s not in set_names:
                set_names.append(s)
    base_first = {OCCLUDED: {}}
    base_last = {CLEAN: {}} if section.startswith("recognition") else {}
    methods: list[tuple[str, dict]] = []
    names = [r.get("method") for r in runs]
    for i, r in enumerate(runs):
        for s, data in r["sets"].items():
            table = _section(data, section)
            for base in (base_first, base_last):
                for key in base:
                    if key in table and s not in base[key]:
                        base[key][s] = table[key]
        method = r.get("method")
        if not method:
            continue
        label = method
        if labels and (names.count(method) > 1 or method in (OCCLUDED, CLEAN)):
            label = f"{method} ({labels[i]})"
        methods.append((label, {s: _section(data, section).get(method) for s, data in r["sets"].items()}))
    rows = [(k, v) for k, v in base_first.items()] + methods + [(k, v) for k, v in base_last.items() if v]
    return set_names, rows


def quality_table(runs: Sequence[dict], labels: Sequence[str] | None = None) -> str:
    """Markdown table in the shape of the paper's Table 2 (mean ± std per set)."""
    sets, rows = _rows(runs, labels, "quality")
    if not sets:
        return ""
    head = ["Method"] + [f"{s} {m}" for s in sets for m in ("PSNR (dB)", "PSNR[-1,1] (dB)", "SSIM")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, per_set in rows:
        cells = [label]
        for s in sets:
            q = per_set.get(s) or {}
            cells += [_cell(q.get("psnr"), 2), _cell(q.get("psnr_pm1"), 2), _cell(q.get("ssim"), 4)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recognizers(runs: Sequence[dict]) -> list[dict]:
    """The recognisers of ``runs`` (first-seen order, independent ones first): ``{"name",
    "role"}``; a recogniser that trained any run's G is marked "training loss" for all."""
    seen: dict[str, dict] = {}
    for r in runs:
        for info in r.get("recognizers") or []:
            entry = seen.setdefault(info["name"], {"name": info["name"], "role": "independent"})
            if info.get("role") == "training loss":
                entry["role"] = "training loss"
    return sorted(seen.values(), key=lambda i: i["role"] == "training loss")


def recognizer_label(info: dict) -> str:
    """``dlib_resnet (independent)``, ``mobilefacenet (training loss: not an independent judge)``."""
    role = "training loss: not an independent judge" if info.get("role") == "training loss" else "independent"
    return f"{info['name']} ({role})"


def recognition_table(runs: Sequence[dict], labels: Sequence[str] | None = None, recognizer: str | None = None) -> str:
    """Markdown table in the shape of the paper's Table 3 (rank-k accuracy in %, mean ± std
    over the protocol's repeats) for one recogniser (default: the first of :func:`recognizers`)."""
    if recognizer is None:
        recs = recognizers(runs)
        if not recs:
            return ""
        recognizer = recs[0]["name"]
    sets, rows = _rows(runs, labels, f"recognition/{recognizer}")
    if not sets:
        return ""
    ks = list(runs[0].get("ks", (1, 5, 10)))
    head = ["Queries"] + [f"{s} rank-{k} (%)" for s in sets for k in ks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, per_set in rows:
        cells = [label]
        for s in sets:
            r = per_set.get(s) or {}
            cells += [_cell(r.get(f"rank{k}"), 1, 100.0) for k in ks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _used(runs: Sequence[dict], labels: Sequence[str] | None, describe) -> list[str]:
    """One line per (run, set): what its table was computed on (``describe(set data)``)."""
    lines = []
    for i, r in enumerate(runs):
        for s, data in r["sets"].items():
            text = describe(data)
            if text:
                who = f"{labels[i]}, " if labels and len(runs) > 1 else ""
                lines.append(f"- {who}{s}: {text}")
    return lines


def _scored(data: dict) -> str:
    scored = data.get("scored")
    if not scored:
        return ""
    ids = f" of {scored['identities']} identities" if scored.get("identities") else ""
    left = data["num_images"] - scored["images"]
    return (f"{scored['images']} images{ids}" + (f" ({left} of {data['num_images']} left out of every row: "
                                                  "no usable prediction)" if left else ""))


def _protocol(data: dict) -> str:
    p = data.get("protocol") if data.get("recognition") else None
    if not p or "queries" not in p:
        return ""
    text = (f"{p['identities']} identities (1 clean gallery image each; {p['identities_queried']} with queries), "
            f"{p['queries_per_identity']} queries per identity, {p['repeats']} repeats: {p['queries']} queries")
    if p["reduced"]:
        paper = PAPER_PROTOCOL
        text += (f". **Reduced protocol** (the paper's: {paper['identities']} identities x "
                 f"{paper['queries_per_identity']} queries, {paper['repeats']} repeats): " + "; ".join(p["reduced"]))
    return text


def markdown(runs: Sequence[dict], labels: Sequence[str] | None = None) -> str:
    """Both tables with captions and notes (what each table was computed on), as Markdown."""
    parts = ["## Image quality (Table 2)", "", quality_table(runs, labels), "",
             "PSNR: standard, on [0, 1] images. PSNR[-1,1]: the FSG-GAN authors' convention "
             "(10 log10(1/MSE) on [-1, 1] images = PSNR - 6.02 dB), to compare with the paper. "
             "Mean ± std over the images; identical images (infinite PSNR) are left out of the PSNR "
             "mean and counted."]
    scored = _used(runs, labels, _scored)
    if scored:
        parts[-1] += " Every row of a set is computed on the same images:"
        parts += scored
    for n, info in enumerate(recognizers(runs)):
        rec = recognition_table(runs, labels, info["name"])
        if not rec:
            continue
        parts += ["", f"## Identification (Table 3), judged by {recognizer_label(info)}", "", rec, "",
                  "Gallery: one clean image per identity; rank-k accuracy in %, mean ± std over the "
                  "protocol's repeats."
                  + (" G was trained against this network's features (identity loss), so it can score "
                     "G's blind spots, not identity." if info["role"] == "training loss" else "")]
        used = _used(runs, labels, _protocol) if n == 0 else []
        if used:
            parts[-1] += " Every row of a set uses the same queries:"
            parts += used
    parts += _person_sections(runs, labels)
    notes = [skipped_summary(r) for r in runs]
    notes = [n for n in notes if n]
    if notes:
        parts += ["", "## Skipped predictions", ""] + notes
    return "\n".join(parts) + "\n"


def _pct(x) -> str:
    return "-" if x is None or _num(x) != _num(x) else f"{100 * _num(x):.1f}"


def _f(x, digits: int = 2) -> str:
    return "-" if x is None or _num(x) != _num(x) else f"{_num(x):.{digits}f}"


def residue_table(runs: Sequence[dict], labels: Sequence[str] | None = None) -> str:
    """One row per (run, set): occluder residue median / mean / 95th percentile, and the
    harm to clean faces (PSNR and SSIM of output against input: median and 5th
    percentile; pixels changed; rank-1 of the clean queries and of their outputs, by the
    first recogniser of :func:`recognizers`)."""
    recs = recognizers(runs)
    judge = recs[0]["name"] if recs else None
    head = ["Method", "Set", "residue median", "residue mean", "residue p95", "clean PSNR median (dB)",
            "clean PSNR p5", "clean SSIM median", "clean SSIM p5", "pixels changed (%)"]
    if judge:
        head += [f"clean rank-1 -> output (%, {judge})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(runs):
        label = r.get("method") or OCCLUDED
        if labels and len(runs) > 1:
            label = f"{label} ({labels[i]})"
        for s, data in r["sets"].items():
            res, harm = data.get("residue") or {}, data.get("harm") or {}
            if not res and not harm:
                continue
            psnr, ssim, changed = (harm.get(k) or {} for k in ("psnr", "ssim", "changed"))
            cells = [label, s, _f(res.get("median")), _f(res.get("mean")), _f(res.get("p95")),
                     _f(psnr.get("median"), 1), _f(psnr.get("p5"), 1), _f(ssim.get("median"), 4),
                     _f(ssim.get("p5"), 4), _pct(changed.get("mean"))]
            if judge:
                rec = (harm.get("recognition") or {}).get(judge)
                cells.append(f"{_pct(rec['clean']['rank1']['mean'])} -> {_pct(rec['output']['rank1']['mean'])}"
                             if rec else "-")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def occluder_rows(data: dict) -> list[dict]:
    """The per-occluder table of one set as rows, worst median residue first."""
    rows = []
    for occ, e in (data.get("per_occluder") or {}).items():
        row = {"occluder": occ, "images": e["images"], "psnr_gain": e["psnr_gain"],
               "residue_median": e["residue"]["median"], "residue_mean": e["residue"]["mean"]}
        for rec, gain in (e.get("rank1_gain") or {}).items():
            row[f"rank1_gain_{rec}"] = gain
        rows.append(row)
    def worst_first(row: dict) -> tuple[bool, float]:
        median = _num(row["residue_median"])
        return math.isnan(median), -median if not math.isnan(median) else 0.0

    return sorted(rows, key=worst_first)


def occluder_table(data: dict) -> str:
    """Markdown: one line per occluder of a set, worst median residue first."""
    rows = occluder_rows(data)
    if not rows:
        return ""
    recs = [k[len("rank1_gain_"):] for k in rows[0] if k.startswith("rank1_gain_")]
    head = ["Occluder", "images", "PSNR gain (dB)", "residue median", "residue mean"] + [
        f"rank-1 gain (points, {r})" for r in recs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["occluder"], str(row["images"]), _f(row["psnr_gain"]), _f(row["residue_median"]),
                 _f(row["residue_mean"])] + [_f(100 * _num(row[f"rank1_gain_{r}"]), 1) for r in recs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _person_sections(runs: Sequence[dict], labels: Sequence[str] | None) -> list[str]:
    """The residue / harm table and each set's per-occluder table, as Markdown lines."""
    parts = []
    table = residue_table(runs, labels)
    if table:
        parts += ["", "## What a person sees: occluder residue and harm to clean faces", "", table, "",
                  "Occluder residue: inside the synthesis mask, the share of the occluder's difference from "
                  "the clean face still in the output (<out - clean, occ - clean> / |occ - clean|^2): the "
                  "occluded input is 1, the clean face 0; a tinted ghost sits in between. Clean columns: the "
                  "model run on the same faces with nothing over them, scored against them; pixels changed: "
                  "largest channel difference above 8/255 (mean over images). Rank-1 of the clean queries "
                  "(the Clean row of the identification table) against their outputs'."]
    for i, r in enumerate(runs):
        for s, data in r["sets"].items():
            table = occluder_table(data)
            if table:
                who = f"{labels[i]}, " if labels and len(runs) > 1 else ""
                parts += ["", f"## Per occluder ({who}{s}), worst median residue first", "", table, "",
                          "PSNR gain: mean over the occluder's images; rank-1 gain: the method's queries "
                          "under that occluder against the occluded ones, over the protocol's repeats."]
    return parts


def skipped_summary(results: dict) -> str:
    """One line per set with missing or unreadable predictions (empty when none)."""
    lines = []
    for s, data in results["sets"].items():
        miss, bad = data.get("missing") or [], data.get("unreadable") or []
        if miss or bad:
            names = list(miss[:10]) + [u["name"] for u in bad[:10]]
            lines.append(f"- {results.get('method')} on {s}: {len(miss)} missing, {len(bad)} unreadable "
                         f"prediction(s) left out of {data['num_images']}: {', '.join(names)}"
                         + (" ..." if len(miss) > 10 or len(bad) > 10 else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------- files

def _quality_rows(results: dict, label: str | None = None) -> list[dict]:
    out = []
    for s, data in results["sets"].items():
        for row, metrics in (data.get("quality") or {}).items():
            for m, summ in metrics.items():
                out.append({**({"run": label} if label else {}), "set": s, "method": row, "metric": m,
                            "mean": summ["mean"], "std": summ["std"], "n": summ["n"], "n_inf": summ["n_inf"]})
    return out


def _recognition_rows(results: dict, label: str | None = None) -> list[dict]:
    out = []
    for s, data in results["sets"].items():
        for rec_name, table in (data.get("recognition") or {}).items():
            for row, rec in table.items():
                for key, val in rec.items():
                    if key.startswith("rank"):
                        out.append({**({"run": label} if label else {}), "set": s, "recognizer": rec_name,
                                    "queries": row, "metric": key, "mean": val["mean"], "std": val["std"],
                                    "repeats": len(val["values"]), "n_queries": rec["n_queries"],
                                    "n_missing": rec["n_missing"]})
    return out


def _write_text(path: Path, text: str) -> None:
    """Write the whole file or nothing (a temporary file, then a rename)."""
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: json_number(v) for k, v in r.items()})
    _write_text(path, buf.getvalue())


def write_results(results: dict, out: str | Path) -> Path:
    """Write results.json, results.md, quality.csv, recognition.csv (+ per-image CSVs)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_image = {s: d.pop("per_image") for s, d in results["sets"].items() if "per_image" in d}
    worst = {s: d.pop("worst_images") for s, d in results["sets"].items() if "worst_images" in d}
    worst_harm = {s: d.pop("worst_harm_images") for s, d in results["sets"].items() if "worst_harm_images" in d}
    _write_text(out / "results.json", json.dumps(to_json(results), indent=2, allow_nan=False))
    _write_text(out / "results.md", markdown([results]))
    _write_csv(out / "quality.csv", _quality_rows(results))
    _write_csv(out / "recognition.csv", _recognition_rows(results))
    for s, data in results["sets"].items():
        _write_csv(out / f"occluders_{s}.csv", occluder_rows(data))
    for s, rows in per_image.items():
        _write_csv(out / f"per_image_{s}.csv", rows)
        results["sets"][s]["per_image"] = rows
    for s, images in worst.items():
        save_rows(images, out / f"worst_residue_{s}.png")
    for s, images in worst_harm.items():
        save_rows(images, out / f"worst_harm_{s}.png")
    return out


def save_rows(rows: Sequence, path: Path) -> None:
    """A picture of image rows ((N, 3, H, W) [-1, 1] tensors of equal N), one row each."""
    import torch
    from torchvision.utils import make_grid

    from fsggan.images import save_image

    grid = make_grid(torch.cat([r.float() for r in rows]).clamp(-1, 1), nrow=len(rows[0]), padding=2, pad_value=1.0)
    save_image(grid, path)   # written whole or not at all


def write_comparison(runs: Sequence[dict], out: str | Path, labels: Sequence[str]) -> Path:
    """Write comparison.md / comparison.json / comparison_quality.csv / comparison_recognition.csv."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "comparison.md", markdown(runs, labels))
    _write_text(out / "comparison.json", json.dumps(to_json({"runs": dict(zip(labels, runs))}), indent=2,
                                                    allow_nan=False))
    _write_csv(out / "comparison_quality.csv", [r for run, lab in zip(runs, labels) for r in _quality_rows(run, lab)])
    _write_csv(out / "comparison_recognition.csv",
               [r for run, lab in zip(runs, labels) for r in _recognition_rows(run, lab)])
    return out
