"""``fsggan-deocclude``: photos in, de-occluded photos out (or face crops in, faces out).

    fsggan-deocclude photos/ --gan runs/gan --out out/ [--save-faces] [--detector NAME] [--min-face N]
    fsggan-deocclude crops/ --gan runs/gan --out out/ --aligned [--structure] [--strip]
    fsggan-deocclude lfw/ --gan runs/gan --out out/ --crop lfw      # a fixed face box, no detection
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fsggan.cli import check_device, check_out_dir, fail
from fsggan.images import IMAGE_EXTENSIONS, MIN_FACE_SIZE

PROG = "fsggan-deocclude"


def _detector_names() -> tuple[str, ...] | None:
    try:
        from fsggan.detect import DETECTORS
    except ImportError:
        return None
    return tuple(DETECTORS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="De-occlude faces with trained FSG-GAN checkpoints. Photos (the default): every face is "
                    "detected, aligned on five landmarks to the crop the model was trained on, de-occluded "
                    "(all faces of all photos in batches) and pasted back with a feathered seam; the photo is "
                    "written at its own size (never rescaled; EXIF orientation applied), with a JSON sidecar "
                    "per photo (each face's box, landmarks, detector score). Photos in which no face is found "
                    "are skipped (not written; listed and counted). With --aligned or --crop, faces come out at "
                    "the size the model works at (its vae.image_size, e.g. 128x128). Inputs need at least "
                    f"{MIN_FACE_SIZE} px on their shorter side.")
    p.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively for photos; "
                   f"only the folder itself with --aligned/--crop) of {', '.join(IMAGE_EXTENSIONS)}")
    p.add_argument("--gan", required=True, help="Stage II checkpoint (.pt) or run directory")
    p.add_argument("--vae", default=None, help="Stage I checkpoint or run directory (default: the VAE stored "
                   "in the Stage II checkpoint, else the one its config names)")
    p.add_argument("--out", required=True, help="output folder: photos keep their name and path below the input "
                   "folder (JPEG stays JPEG, other formats become PNG) plus <name>.json; crops: <name>.png")
    p.add_argument("--aligned", action="store_true",
                   help="inputs are already aligned face crops (only resized; no detection)")
    p.add_argument("--crop", default=None, choices=("lfw", "celeba", "folder"),
                   help="no detection: cut this fixed face box as fsggan-prepare-data does - lfw (LFW-like "
                        "framing), celeba (CelebA aligned), folder (largest centred square) - and write the face")
    names = _detector_names()
    p.add_argument("--detector", default=None, choices=names,
                   help="face detector for photos (default: fsggan.detect's default)")
    p.add_argument("--min-face", type=int, default=20, help="smallest face to de-occlude, in photo pixels (default 20)")
    p.add_argument("--save-faces", action="store_true",
                   help="photos: also write each face's aligned input, structure and output crops to OUT/faces/")
    p.add_argument("--structure", action="store_true", help="--aligned/--crop: also write g = V(x) to OUT/structure/")
    p.add_argument("--strip", action="store_true", help="--aligned/--crop: also write input | g | output strips "
                   "to OUT/strip/")
    p.add_argument("--batch-size", type=int, default=32, help="faces per model batch (default 32)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    return p


def _report(written: int, out: str, failed: Sequence[str], no_face: Sequence[str] = (),
            faces: int | None = None) -> int:
    what = f"wrote {written} photo(s) with {faces} face(s)" if faces is not None else f"wrote {written} image(s)"
    print(f"{what} to {Path(out)}")
    if no_face:
        print(f"{len(no_face)} photo(s) with no face found (skipped, not written):", file=sys.stderr)
        for line in no_face:
            print("  " + line, file=sys.stderr)
    if failed:
        print(f"{len(failed)} input(s) could not be read:", file=sys.stderr)
        for line in failed:
            print("  " + line, file=sys.stderr)
        return 1
    return 0


def _photos(args, model, jobs) -> int:
    from fsggan.photos import deocclude_photo_files
    from fsggan.photos.deocclude import face_finder

    try:
        detect = face_finder(args.detector, args.min_face)  # detector problems before any photo is read
    except (ValueError, ImportError) as exc:
        return fail(PROG, exc)
    if not jobs:
        print(f"{PROG}: no images found in the inputs", file=sys.stderr)
        return 1
    if args.structure or args.strip:
        print("note: for photos, --structure/--strip are written as face crops (--save-faces)", file=sys.stderr)
    summary = deocclude_photo_files(model, jobs, args.out, detector=args.detector, batch_size=args.batch_size,
                                    save_faces=args.save_faces or args.structure or args.strip, detect=detect)
    return _report(summary.written, args.out, summary.failed, summary.no_face, summary.faces)


def main(argv: Sequence[str] | None = None) -> int:
    """Returns 0, 1 when some inputs could not be read (listed), 2 for a wrong checkpoint,
    input path or option."""
    from fsggan.crops import deocclude_files
    from fsggan.inputs import collect_inputs
    from fsggan.pipeline import FSGGAN

    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        return fail(PROG, f"--batch-size {args.batch_size}: must be >= 1")
    if args.min_face < 1:
        return fail(PROG, f"--min-face {args.min_face}: must be >= 1")
    if args.aligned and args.crop:
        return fail(PROG, "--aligned and --crop exclude each other (aligned crops are only resized)")
    problem = check_out_dir(args.out, "--out") or check_device(args.device)  # before anything is read
    if problem:
        return fail(PROG, problem)
    crops = args.aligned or args.crop is not None
    try:
        files = (collect_inputs(args.inputs, recursive=False, keep_format=False) if crops
                 else collect_inputs(args.inputs, args.out))
        model = FSGGAN.from_checkpoints(vae=args.vae, gan=args.gan, device=args.device)
    except (FileNotFoundError, ValueError) as exc:  # CheckpointError is a ValueError
        return fail(PROG, exc)
    if not crops:
        return _photos(args, model, files)
    if not files:
        print(f"{PROG}: no images found in the inputs", file=sys.stderr)
        return 1
    if (args.structure or args.strip) and not model.uses_structure:
        print("note: this generator has no structure input; --structure/--strip show no g", file=sys.stderr)
    failed = deocclude_files(model, files, args.out, aligned=args.aligned, crop=args.crop or "lfw",
                             structure=args.structure, strip=args.strip, batch_size=args.batch_size)
    return _report(len(files) - len(failed), args.out, failed)


if __name__ == "__main__":
    raise SystemExit(main())
