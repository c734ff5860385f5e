"""Contact sheets of prepared sets: rows clean / occluded / mask, for a person to look at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["contact_sheet"]


def contact_sheet(
    folders: Sequence[str | Path],
    out: str | Path,
    *,
    columns: int = 8,
    tile: int = 96,
    names: Sequence[str] | None = None,
    colors: int | None = None,
) -> Path:
    """Write a PNG with, per prepared set folder, three rows (clean, occluded, mask) of
    `columns` images (evenly spaced through the manifest, or `names`), each `tile` px.

    `colors`: quantise to a palette of that many colours (a much smaller file, e.g. for docs).
    Returns the output path. Raises FileNotFoundError when a folder has no manifest.json.
    """
    folders = [Path(f) for f in folders]
    label_w, gap = 70, 6
    blocks = []
    for folder in folders:
        mf = folder / "manifest.json"
        if not mf.is_file():
            raise FileNotFoundError(f"{folder} has no manifest.json; is it a prepared set (fsggan-prepare-data)?")
        entries = json.loads(mf.read_text())["images"]
        if names is not None:
            chosen = list(names)[:columns]
        else:
            idx = np.linspace(0, len(entries) - 1, num=min(columns, len(entries))).round().astype(int)
            chosen = [entries[i]["name"] for i in idx]
        block = Image.new("RGB", (label_w + columns * tile, 14 + 3 * tile), "white")
        d = ImageDraw.Draw(block)
        d.text((2, 1), folder.name, fill=(0, 0, 0))
        for r, sub in enumerate(("clean", "occluded", "mask")):
            d.text((2, 14 + r * tile + tile // 2 - 5), sub, fill=(0, 0, 0))
            for c, name in enumerate(chosen):
                with Image.open(folder / sub / name) as im:
                    im = im.convert("RGB").resize((tile, tile), Image.Resampling.BICUBIC)
                block.paste(im, (label_w + c * tile, 14 + r * tile))
        blocks.append(block)
    width = max(b.width for b in blocks)
    sheet = Image.new("RGB", (width, sum(b.height for b in blocks) + gap * (len(blocks) - 1)), "white")
    y = 0
    for b in blocks:
        sheet.paste(b, (0, y))
        y += b.height + gap
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if colors:
        sheet = sheet.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    sheet.save(out, format="PNG", optimize=True)
    return out
