"""``fsggan-quickstart``: prepare an LFW test set, train V then G, evaluate, write a report.

    fsggan-quickstart                          # LFW from the data folder ($FSGGAN_DATA/lfw), small CPU run
    fsggan-quickstart --lfw /data/lfw --out runs/qs
    fsggan-quickstart --full                   # the LFW configs at 128x128, for a GPU

What it runs and writes: :mod:`fsggan.quickstart`; ``--help`` says it in plain words.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from fsggan.cli import add_common_options, fail, new_parser, training_device
from fsggan.datadir import ENV, data_root

PROG = "fsggan-quickstart"
# fsggan.quickstart's, here so that --help needs no torch (tests/test_cli_options.py checks they agree)
REPO_ROOT = Path(__file__).resolve().parents[2]
EPILOG = ("The quick run (default): the CPU recipe's models at 64x64 for a few hundred steps, about ten minutes "
          "on a 2-core CPU. It shows the pipeline working end to end; its model is far from the paper's "
          "(docs/experiments.md has the measured numbers). --full: the LFW configs at 128x128 for tens of "
          "thousands of steps, meant for a GPU.\n\n"
          "Everything goes under --out: data/ (prepared sets), vae/ and gan/ (the two runs), report/ (PSNR, "
          "SSIM, rank-k, a grid of examples). Re-running continues where it stopped. --out may not lie in the "
          "LFW folder.\n\n"
          f"Data fsggan does not ship comes from the data folder: ${ENV} if set, else data/ here if it holds "
          "lfw/, occluders/ or weights/, else ../shared/data (docs/design.md, Data). Without occluder cut-outs "
          "the run uses fsggan's drawn occluders; without recogniser weights Stage II has no identity term.\n\n"
          "Exit status: 0 done; 2 a usage error (one line: an option, the LFW folder, a config) (docs/cli.md).")


LFW_SOURCE = ("LFW (lfw.tgz) comes from the University of Massachusetts LFW page, "
              "http://vis-www.cs.umass.edu/lfw/, or a mirror of it")


def find_lfw(lfw: str | None, data: Path) -> Path:
    """The LFW root (`<root>/<Person>/<Person>_NNNN.jpg`): given, or ``lfw`` in the data folder ``data``.

    There is no download option: torchvision's LFW download no longer works, and no option
    may promise what it cannot do. The README says where LFW comes from. A missing folder is a
    ValueError whose message names it and where LFW comes from."""
    if lfw is not None:
        root = Path(lfw)
        if not root.is_dir():
            raise ValueError(f"--lfw {root}: no such folder (expected the standard 'lfw' "
                             f"layout, <root>/<Person>/<Person>_NNNN.jpg; {LFW_SOURCE})")
        return root
    if (data / "lfw").is_dir():
        return data / "lfw"
    raise ValueError(f"no LFW folder at {data / 'lfw'} (the data folder: set {ENV}); pass --lfw DIR, "
                     f"a folder in the standard 'lfw' layout (<root>/<Person>/<Person>_NNNN.jpg; {LFW_SOURCE})")


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(PROG, "Prepare an LFW test set, train V then G, evaluate, and write a report: the whole "
                   "pipeline in one command.", EPILOG)
    p.add_argument("--lfw", default=None, metavar="DIR", help=f"LFW folder, <DIR>/<Person>/*.jpg (default: lfw in the data folder, ${ENV})")
    p.add_argument("--out", default="runs/quickstart", help="output folder (default: runs/quickstart)")
    p.add_argument("--full", action="store_true", help="128x128 LFW configs, for a GPU (default: the quick run)")
    p.add_argument("--vae-steps", type=int, default=None, metavar="N", help="Stage I steps (default: 1200; --full: 30000)")
    p.add_argument("--gan-steps", type=int, default=None, metavar="N", help="Stage II steps (default: 700; --full: 60000)")
    p.add_argument("--recognizer-weights", default=None, metavar="PATH",
                   help="MobileFaceNet weights for rank-k (default: the data folder's weights/, if there)")
    add_common_options(p)
    return p


def main(argv=None) -> int:
    """Returns 0, or 2 for a missing LFW folder, a bad device, output folder or config (one line
    on stderr)."""
    from fsggan.cli.safety import folder_overlap

    args = build_parser().parse_args(argv)
    root = data_root().resolve()   # before the chdir below: relative to the caller's directory
    try:
        lfw = find_lfw(args.lfw, root).resolve()
        device = training_device(args.device)
    except ValueError as e:
        return fail(PROG, e)
    problem = folder_overlap("--out", args.out, [("the LFW folder", lfw)])
    if problem:
        return fail(PROG, problem)
    from fsggan import quickstart
    from fsggan.config import ConfigError

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    weights = str(Path(args.recognizer_weights).resolve()) if args.recognizer_weights else None
    # The configs name their files relative to the repository root (configs/data/anchors):
    # run from there, whatever the caller's directory.
    os.chdir(REPO_ROOT)
    try:
        quickstart.run_quickstart(lfw=lfw, out=out, full=args.full,
                                  vae_steps=args.vae_steps, gan_steps=args.gan_steps, device=device,
                                  recognizer_weights=weights, progress=not args.no_progress, data_root=root)
    except ConfigError as e:
        return fail(PROG, e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
