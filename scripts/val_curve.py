#!/usr/bin/env python
"""Validation curve of Stage II runs: output PSNR and SSIM against the step, with the
occluded input's as a dashed line, drawn from each run's ``stats.jsonl`` (Pillow only).

    python scripts/val_curve.py runs/cpu_gan --out docs/cpu_recipe_val_curve.png
    python scripts/val_curve.py runs/a runs/b --labels "identity 50" "identity 100" --out cmp.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]
GREY = (120, 120, 120)


def read_curve(run: Path) -> tuple[list[tuple[int, float, float]], tuple[float, float] | None]:
    """``([(step, psnr, ssim), ...], (input psnr, input ssim) or None)`` from a run's stats.jsonl."""
    stats = run / "stats.jsonl"
    if not stats.is_file():
        raise FileNotFoundError(f"{stats}: no such file; give a Stage II run directory (it writes stats.jsonl)")
    points, inputs = {}, None
    for line in stats.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # the last line of a run still writing, or one cut by a kill
            continue
        if "val/output_psnr" in row:
            points[int(row["step"])] = (float(row["val/output_psnr"]), float(row["val/output_ssim"]))
            inputs = (float(row["val/input_psnr"]), float(row["val/input_ssim"]))
    if not points:
        raise ValueError(f"{stats}: no validation rows (val/output_psnr); did the run reach train.val_every?")
    return [(s, *points[s]) for s in sorted(points)], inputs


def panel(draw: ImageDraw.ImageDraw, box, title: str, curves, baseline: float | None, fmt: str) -> None:
    """One plot in ``box`` (x0, y0, x1, y1): each curve a list of (step, value)."""
    x0, y0, x1, y1 = box
    steps = [s for c in curves for s, _ in c]
    values = [v for c in curves for _, v in c] + ([baseline] if baseline is not None else [])
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or 1.0
    lo, hi, smax = lo - pad, hi + pad, max(steps)

    def xy(step, value):
        return (x0 + (x1 - x0) * step / smax, y1 - (y1 - y0) * (value - lo) / (hi - lo))

    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0, y0 - 14), title, fill=(0, 0, 0))
    for i in range(5):  # value ticks
        v = lo + (hi - lo) * i / 4
        draw.text((x0 - 44, xy(0, v)[1] - 5), format(v, fmt), fill=(0, 0, 0))
    for i in range(5):  # step ticks
        s = round(smax * i / 4)
        draw.text((xy(s, lo)[0] - 10, y1 + 4), str(s), fill=(0, 0, 0))
    if baseline is not None:
        y = xy(0, baseline)[1]
        for x in range(int(x0), int(x1), 8):
            draw.line([(x, y), (min(x + 4, x1), y)], fill=GREY)
        draw.text((x1 - 84, y - 13), "occluded input", fill=GREY)
    for k, curve in enumerate(curves):
        pts = [xy(s, v) for s, v in curve]
        if len(pts) > 1:
            draw.line(pts, fill=COLOURS[k % len(COLOURS)], width=2)
        for px, py in pts:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=COLOURS[k % len(COLOURS)])


def plot(runs: list[Path], labels: list[str], out: Path) -> Path:
    curves = [read_curve(r) for r in runs]
    inputs = curves[0][1]
    image = Image.new("RGB", (760, 300), "white")
    draw = ImageDraw.Draw(image)
    for j, (title, fmt) in enumerate((("validation PSNR (dB)", ".1f"), ("validation SSIM", ".3f"))):
        box = (60 + j * 370, 30, 60 + j * 370 + 300, 250)
        panel(draw, box, title, [[(s, p if j == 0 else q) for s, p, q in c] for c, _ in curves],
              inputs[j] if inputs else None, fmt)
    draw.text((300, 268), "step", fill=(0, 0, 0))
    for k, label in enumerate(labels):
        draw.text((60 + k * 150, 282), f"- {label}", fill=COLOURS[k % len(COLOURS)])
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="Stage II run directories (with stats.jsonl)")
    ap.add_argument("--labels", nargs="*", default=None, help="one per run (default: the folder names)")
    ap.add_argument("--out", required=True, type=Path, help="output PNG")
    args = ap.parse_args(argv)
    labels = args.labels or [r.name for r in args.runs]
    if len(labels) != len(args.runs):
        print(f"val_curve.py: error: {len(labels)} labels for {len(args.runs)} runs", file=sys.stderr)
        return 2
    try:
        print(plot(args.runs, labels, args.out))
    except (FileNotFoundError, ValueError) as e:
        print(f"val_curve.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
