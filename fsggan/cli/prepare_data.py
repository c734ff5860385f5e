"""``fsggan-prepare-data``: render the evaluation sets and the recognition protocol.

    fsggan-prepare-data --config configs/data/lfw.yaml [--set key=value ...] [--out DIR]
                        [--limit N] [--sets set1,set2,set3] [--contact-sheet] [--quiet]

What it writes: :mod:`fsggan.data.prepare`.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from fsggan.cli import fail

PROG = "fsggan-prepare-data"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Render the occluded evaluation sets (val, Set1, Set2) and the recognition protocol. "
        "Relative paths in the config are resolved against the current directory (run from the repo root).",
    )
    ap.add_argument("--config", required=True, help="configs/data/<name>.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value (repeatable), e.g. --set output.seed=7")
    ap.add_argument("--out", default=None, help="output folder (default: output.out of the config)")
    ap.add_argument("--limit", type=int, default=None, help="write at most N images per set (quick runs)")
    ap.add_argument("--sets", default=None, help="comma-separated subset of val,set1,set2,set3 (default: the config's output.sets)")
    ap.add_argument("--contact-sheet", action="store_true", help="also write contact_sheet-<set>-<name>.png per set")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Returns 0, or 2 for a bad config, a missing dataset or an unusable split (one line on stderr)."""
    from fsggan.config import ConfigError
    from fsggan.data import DatasetError, SplitError
    from fsggan.data.config import load_data_config
    from fsggan.data.prepare import prepare_data

    args = build_parser().parse_args(argv)
    try:
        cfg = load_data_config(args.config, args.overrides)
        prepare_data(
            cfg,
            out=args.out,
            limit=args.limit,
            sets=args.sets.split(",") if args.sets else None,
            contact_sheet=args.contact_sheet,
            progress=not args.quiet,
        )
    except (ConfigError, DatasetError, SplitError, ValueError, ImportError, OSError) as e:
        return fail(PROG, e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
