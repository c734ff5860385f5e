#!/usr/bin/env python
"""Contact sheet of prepared sets: per set, rows clean / occluded / mask.

    python scripts/contact_sheet.py data/prepared/set1-lfw data/prepared/set2-lfw \
        --out contact_sheet_lfw.png --columns 8 --tile 96 --colors 256

Images are taken evenly spaced through each set's manifest (the same names in every set
when the sets hold the same images, e.g. set1 and set2), or given with --names.
(`fsggan-prepare-data --contact-sheet` writes one sheet per set the same way.) A sheet of LFW
faces and occluder cut-outs is third-party data: keep it out of the repository.
"""

from __future__ import annotations

import argparse
import sys

from fsggan.data.contact import contact_sheet


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="prepared set folders (with manifest.json)")
    ap.add_argument("--out", required=True, help="output PNG")
    ap.add_argument("--columns", type=int, default=8)
    ap.add_argument("--tile", type=int, default=96, help="tile size in pixels")
    ap.add_argument("--colors", type=int, default=None, help="quantise to N colours (smaller file)")
    ap.add_argument("--names", nargs="*", default=None, help="file names to show (default: evenly spaced)")
    args = ap.parse_args(argv)
    try:
        out = contact_sheet(args.folders, args.out, columns=args.columns, tile=args.tile, names=args.names, colors=args.colors)
    except (FileNotFoundError, OSError) as e:
        print(f"contact_sheet: error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
