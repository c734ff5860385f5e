"""``fsggan-prepare-data``: render the evaluation sets and the recognition protocol.

    fsggan-prepare-data --config configs/data/lfw.yaml [--set key=value ...] [--out DIR]
                        [--limit N] [--sets set1,set2,set3] [--contact-sheet] [--no-progress]

What it writes: :mod:`fsggan.data.prepare`.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from fsggan.cli import PROGRESS_HELP, data_folders, fail, new_parser

PROG = "fsggan-prepare-data"


def build_parser() -> argparse.ArgumentParser:
    ap = new_parser(
        PROG,
        description="Render the occluded evaluation sets (val, Set1, Set2) and the recognition protocol. "
        "Relative paths in the config are resolved against the current directory (run from the repo root). "
        "No model runs here, so there is no --device.",
        epilog="Exit status: 0 written; 2 a usage error (one line: config, dataset, split, an output folder "
               "inside the dataset or occluder folders it reads) and nothing written (docs/cli.md).",
    )
    ap.add_argument("--config", required=True, metavar="YAML", help="data config, e.g. configs/data/lfw.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="change one config key, e.g. output.seed=7 (repeatable)")
    ap.add_argument("--out", default=None, help="output folder (default: the config's output.out)")
    ap.add_argument("--limit", type=int, default=None, metavar="N", help="at most N images per set (default: all)")
    ap.add_argument("--sets", default=None, help="comma-separated subset of val,set1,set2,set3 (default: the config's output.sets)")
    ap.add_argument("--contact-sheet", action="store_true", help="also write a contact sheet PNG per set")
    ap.add_argument("--no-progress", action="store_true", help=PROGRESS_HELP)
    ap.add_argument("--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS)  # the old name
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Returns 0, or 2 for a bad config, a missing dataset or an unusable split (one line on stderr)."""
    args = build_parser().parse_args(argv)  # --help before torch is imported
    from fsggan.config import ConfigError
    from fsggan.data import DatasetError, SplitError
    from fsggan.data.config import load_data_config
    from fsggan.data.prepare import prepare_data
    from fsggan.cli.safety import folder_overlap

    try:
        cfg = load_data_config(args.config, args.overrides)
        problem = folder_overlap("--out" if args.out else "output.out", args.out or cfg.output.out, data_folders(cfg))
        if problem:
            return fail(PROG, problem)
        prepare_data(
            cfg,
            out=args.out,
            limit=args.limit,
            sets=args.sets.split(",") if args.sets else None,
            contact_sheet=args.contact_sheet,
            progress=not args.no_progress,
        )
    except (ConfigError, DatasetError, SplitError, ValueError, ImportError, OSError) as e:
        return fail(PROG, e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
