"""``fsggan-quickstart``: prepare an LFW test set, train V then G, evaluate, write a report.

    fsggan-quickstart                          # LFW from ../shared/data/lfw, small CPU run
    fsggan-quickstart --lfw /data/lfw --out runs/qs
    fsggan-quickstart --full                   # the LFW configs at 128x128, for a GPU

What it runs and writes: :mod:`fsggan.quickstart` (its docstring is the help's epilog).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from fsggan import quickstart
from fsggan.cli import fail
from fsggan.quickstart import REPO_ROOT, SHARED_LFW, SHARED_MOBILEFACENET

PROG = "fsggan-quickstart"


LFW_SOURCE = ("LFW (lfw.tgz) comes from the University of Massachusetts LFW page, "
              "http://vis-www.cs.umass.edu/lfw/, or a mirror of it")


def find_lfw(lfw: str | None) -> Path:
    """The LFW root (`<root>/<Person>/<Person>_NNNN.jpg`): given, or the shared one.

    There is no download option: torchvision's LFW download no longer works, and no option
    may promise what it cannot do. The README says where LFW comes from."""
    if lfw is not None:
        root = Path(lfw)
        if not root.is_dir():
            raise SystemExit(f"{PROG}: error: --lfw {root}: no such folder (expected the standard 'lfw' "
                             f"layout, <root>/<Person>/<Person>_NNNN.jpg; {LFW_SOURCE})")
        return root
    if SHARED_LFW.is_dir():
        return SHARED_LFW
    raise SystemExit(f"{PROG}: error: no LFW folder at {SHARED_LFW}; pass --lfw DIR, a folder in the standard "
                     f"'lfw' layout (<root>/<Person>/<Person>_NNNN.jpg; {LFW_SOURCE})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join([__doc__.split("\n\n")[1], *quickstart.__doc__.split("\n\n")[2:]]))
    p.add_argument("--lfw", default=None, help=f"LFW root (<root>/<Person>/*.jpg); default {SHARED_LFW}. "
                   "LFW: http://vis-www.cs.umass.edu/lfw/ (lfw.tgz) or a mirror")
    p.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    p.add_argument("--full", action="store_true", help="full-size LFW configs (128x128; meant for a GPU: "
                   "bf16 autocast and channels_last there)")
    p.add_argument("--vae-steps", type=int, default=None, help="Stage I steps (quick default 300)")
    p.add_argument("--gan-steps", type=int, default=None, help="Stage II steps (quick default 500)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--recognizer-weights", default=None,
                   help=f"MobileFaceNet checkpoint for rank-k (default {SHARED_MOBILEFACENET} when present)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    """Returns 0, or 2 for a bad config (one line on stderr)."""
    from fsggan.config import ConfigError

    args = build_parser().parse_args(argv)
    lfw = find_lfw(args.lfw).resolve()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    weights = str(Path(args.recognizer_weights).resolve()) if args.recognizer_weights else None
    # The configs name their files relative to the repository root (configs/data/anchors,
    # ../shared/data): run from there, whatever the caller's directory.
    os.chdir(REPO_ROOT)
    try:
        quickstart.run_quickstart(lfw=lfw, out=out, full=args.full,
                                  vae_steps=args.vae_steps, gan_steps=args.gan_steps, device=args.device,
                                  recognizer_weights=weights, progress=not args.no_progress)
    except ConfigError as e:
        return fail(PROG, e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
