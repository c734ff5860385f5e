"""``fsggan-deocclude``: image files or folders in, de-occluded faces out.

    fsggan-deocclude photos/ --gan runs/gan --out out/ [--aligned] [--structure] [--strip]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fsggan.cli import check_device, check_out_dir, fail
from fsggan.images import IMAGE_EXTENSIONS, MIN_FACE_SIZE

PROG = "fsggan-deocclude"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="De-occlude face images with trained FSG-GAN checkpoints. Faces come out at the size the "
                    f"model works at (its vae.image_size, e.g. 128x128); inputs need at least {MIN_FACE_SIZE} px "
                    "on their shorter side.")
    p.add_argument("inputs", nargs="+", help="image files and/or folders of images "
                   f"({', '.join(IMAGE_EXTENSIONS)})")
    p.add_argument("--gan", required=True, help="Stage II checkpoint (.pt) or run directory")
    p.add_argument("--vae", default=None, help="Stage I checkpoint or run directory (default: the VAE stored "
                   "in the Stage II checkpoint, else the one its config names)")
    p.add_argument("--out", required=True, help="output folder: <name>.png per input")
    p.add_argument("--aligned", action="store_true",
                   help="inputs are already aligned face crops (only resized); default: crop as the data pipeline does")
    p.add_argument("--crop", default="lfw", choices=("lfw", "celeba", "folder"),
                   help="face box for uncropped photos, as fsggan-prepare-data: lfw (LFW-like framing, default), "
                        "celeba (CelebA aligned), folder (largest centred square)")
    p.add_argument("--structure", action="store_true", help="also write g = V(x) to OUT/structure/")
    p.add_argument("--strip", action="store_true", help="also write input | g | output strips to OUT/strip/")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Returns 0, 1 when some inputs could not be read (listed), 2 for a wrong checkpoint or
    input path."""
    from fsggan.pipeline import FSGGAN, collect_inputs, deocclude_files

    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        return fail(PROG, f"--batch-size {args.batch_size}: must be >= 1")
    problem = check_out_dir(args.out, "--out") or check_device(args.device)  # before anything is read
    if problem:
        return fail(PROG, problem)
    try:
        files = collect_inputs(args.inputs)
        model = FSGGAN.from_checkpoints(vae=args.vae, gan=args.gan, device=args.device)
    except (FileNotFoundError, ValueError) as exc:  # CheckpointError is a ValueError
        return fail(PROG, exc)
    if not files:
        print(f"{PROG}: no images found in the inputs", file=sys.stderr)
        return 1
    if (args.structure or args.strip) and not model.uses_structure:
        print("note: this generator has no structure input; --structure/--strip show no g", file=sys.stderr)
    failed = deocclude_files(model, files, args.out, aligned=args.aligned, crop=args.crop,
                             structure=args.structure, strip=args.strip, batch_size=args.batch_size)
    print(f"wrote {len(files) - len(failed)} image(s) to {Path(args.out)}")
    if failed:
        print(f"{len(failed)} input(s) could not be read:", file=sys.stderr)
        for line in failed:
            print("  " + line, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
