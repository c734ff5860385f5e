"""``fsggan-deocclude``: photos in, de-occluded photos out (or face crops in, faces out).

    fsggan-deocclude photos/ --gan runs/gan --out out/ [--save-faces] [--detector NAME] [--min-face N]
    fsggan-deocclude crops/ --gan runs/gan --out out/ --aligned [--structure] [--strip]
    fsggan-deocclude lfw/ --gan runs/gan --out out/ --crop lfw      # a fixed face box, no detection
    fsggan-deocclude photos/ --model fsggan-lfw128 --out out/ [--mask masks/ [--mask-mode union]] [--amp bf16]
    fsggan-deocclude clip.mp4 --model fsggan-lfw128 --out out.mp4   # every frame (needs PyAV)

Order of work: options, inputs (collected, their headers read), outputs (never on an input)
are checked first; only then is the model loaded; each output file is written whole, once
its input has been de-occluded. The rules: docs/cli.md, "Safety of your files".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fsggan.cli import EXIT_NONE, EXIT_SOME, EXIT_WRITTEN, add_common_options, add_structure_passes_option, \
    check_device, check_out_dir, check_structure_passes_option, exit_epilog, fail, new_parser

PROG = "fsggan-deocclude"
# fsggan.detect's names, here so that --help needs no torch (tests/test_cli_options.py checks they agree)
DETECTORS = ("mtcnn", "dlib_hog", "dlib_cnn")
DEFAULT_DETECTOR = "mtcnn"
MIN_SIZE = 32  # fsggan.images.MIN_FACE_SIZE: the shorter side an input needs
SUFFIXES = ".png .jpg .jpeg .bmp .webp .tif .tiff .ppm .pgm"  # fsggan.images.IMAGE_EXTENSIONS
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi")  # fsggan.photos.video.VIDEO_EXTENSIONS

RULES = ("Inputs: files named on the command line and the images in folders (searched recursively for photos, "
         f"only the folder itself with --aligned/--crop), of {SUFFIXES}; a named file of another type is an "
         "error. Symbolic links are read when named, not followed inside folders (listed). An image of several "
         "frames (animated, multi-page) is refused, named or in a folder: save the frame you want. A video "
         f"({' '.join(VIDEO_SUFFIXES)}) goes alone, to a video file: every frame is de-occluded.\n\n")


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(
        PROG,
        description="De-occlude faces with a trained FSG-GAN. Photos (the default): every face is found, "
                    "aligned, de-occluded and pasted back; the photo keeps its size, with a JSON sidecar "
                    "(boxes, landmarks, scores). Photos without a face are not written (listed). With --aligned "
                    "or --crop, faces come out at the size the model works at (e.g. 128x128). Inputs need "
                    f"{MIN_SIZE} px on their shorter side.",
        epilog=RULES + exit_epilog("output"))
    p.add_argument("inputs", nargs="+", help="image files and/or folders, or one video (with --out a video file)")
    p.add_argument("--gan", default=None, help="Stage II checkpoint (.pt) or run folder")
    p.add_argument("--vae", default=None, help="Stage I checkpoint (default: the one in --gan)")
    p.add_argument("--model", default=None, metavar="FOLDER",
                   help="a model folder written by fsggan-export (instead of --gan)")
    p.add_argument("--mask", default=None, metavar="DIR",
                   help="your own masks: one per input, same stem, white = occluded (default: none)")
    p.add_argument("--mask-mode", default="replace", choices=("replace", "union"), metavar="MODE",
                   help="replace: G fills just the mask; union: also what G finds (default: replace)")
    p.add_argument("--amp", default=None, choices=("bf16", "fp16"), metavar="DTYPE",
                   help="bf16 or fp16 autocast: faster, outputs differ slightly (default: float32)")
    add_structure_passes_option(p)
    p.add_argument("--out", required=True, help="output folder, outside the inputs")
    p.add_argument("--aligned", action="store_true", help="inputs are aligned face crops: only resized")
    p.add_argument("--crop", default=None, choices=("lfw", "celeba", "folder"), metavar="BOX",
                   help="lfw, celeba or folder: cut this face box, no detection")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, choices=DETECTORS, metavar="NAME",
                   help=f"{', '.join(DETECTORS)} (default: {DEFAULT_DETECTOR})")
    p.add_argument("--min-face", type=int, default=20, metavar="PX", help="smallest face to de-occlude (default: 20)")
    p.add_argument("--save-faces", action="store_true", help="photos: also write each face's crops to OUT/faces/")
    p.add_argument("--structure", action="store_true", help="--aligned/--crop: also write V(x) to OUT/structure/")
    p.add_argument("--strip", action="store_true", help="--aligned/--crop: also write strips to OUT/strip/")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="faces per model batch (default: 32)")
    p.add_argument("--smooth", type=float, default=0.6, metavar="S",
                   help="videos: landmark smoothing over frames, 0 (off) to 0.95 (default: 0.6)")
    add_common_options(p)
    return p


def _check_options(args) -> str | None:
    if args.batch_size < 1:
        return f"--batch-size {args.batch_size}: must be >= 1"
    if args.min_face < 1:
        return f"--min-face {args.min_face}: must be >= 1"
    if args.aligned and args.crop:
        return "--aligned and --crop exclude each other (aligned crops are only resized)"
    return _check_model(args) or check_out_dir(args.out, "--out")


def _check_model(args) -> str | None:
    """--gan / --model / --vae, --device and --amp."""
    if (args.gan is None) == (args.model is None):
        return "give the model as --gan RUN (a training run) or --model FOLDER (fsggan-export's), one of them"
    if args.vae and not args.gan:
        return "--vae goes with --gan (a model folder holds its V)"
    return check_device(args.device) or _check_amp(args) or check_structure_passes_option(args.structure_passes)


def _check_amp(args) -> str | None:
    from fsggan.device import resolve_device
    from fsggan.api import amp_dtype

    try:
        amp_dtype(args.amp, resolve_device(args.device))
    except ValueError as exc:
        return f"--{exc}"
    return None


def _load(args):
    """The model of --gan or --model (ValueError / FileNotFoundError: one line)."""
    from fsggan.api import FSGGAN

    if args.model is not None:
        return FSGGAN.from_pretrained(args.model, device=args.device, amp=args.amp,
                                      structure_passes=args.structure_passes)
    return FSGGAN.from_checkpoints(vae=args.vae, gan=args.gan, device=args.device, amp=args.amp,
                                   structure_passes=args.structure_passes)


def _collect(args, crops: bool):
    """(usable inputs, unreadable "<file>: <reason>", symlinks not followed) or a complaint."""
    from fsggan.cli.safety import output_overlap
    from fsggan.inputs import collect_inputs
    from fsggan.photos.files import output_paths, probe_inputs

    links: list[Path] = []
    try:
        files = collect_inputs(args.inputs, recursive=not crops, keep_format=not crops, skipped=links)
    except (FileNotFoundError, ValueError) as exc:
        return str(exc)
    if not files:
        return (f"no image in {', '.join(args.inputs)} (looked for {SUFFIXES}"
                f"{'; symbolic links are not followed inside folders' if links else ''})")
    out = Path(args.out)
    if crops:
        extra = [d for d, on in (("structure", args.structure), ("strip", args.strip)) if on]
        targets = [t for f in files for t in [out / f.name, *(out / d / f.name for d in extra)]]
    else:
        targets = [t for f in files for t in output_paths(f, out, args.save_faces)]
    read = [Path(i) for i in [*args.inputs, args.mask, args.model] if i is not None and Path(i).is_dir()]
    problem = output_overlap("--out", args.out, targets, files=[f.path for f in files], folders=read)
    if problem:
        return problem
    usable, unreadable = probe_inputs(files, MIN_SIZE)
    if not usable:
        more = f" (and {len(unreadable) - 1} more input(s) like it)" if len(unreadable) > 1 else ""
        return f"no usable image in the inputs: {unreadable[0]}{more}"
    return usable, unreadable, links


def _report(written: int, total: int, out: str, failed: Sequence[str], no_face: Sequence[str] = (),
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
    return EXIT_WRITTEN if written == total else EXIT_SOME if written else EXIT_NONE


def _photos(args, model, jobs, unreadable, detect) -> int:
    from fsggan.photos import deocclude_photo_files

    if args.structure or args.strip:
        print("note: for photos, --structure/--strip are written as face crops (--save-faces)", file=sys.stderr)
    summary = deocclude_photo_files(model, jobs, args.out, detector=args.detector, batch_size=args.batch_size,
                                    save_faces=args.save_faces or args.structure or args.strip, detect=detect,
                                    progress=not args.no_progress, masks=args.mask_files, mask_mode=args.mask_mode)
    return _report(summary.written, len(jobs) + len(unreadable), args.out, [*unreadable, *summary.failed],
                   summary.no_face, summary.faces)


def _crops(args, model, files, unreadable) -> int:
    from fsggan.crops import deocclude_files

    if (args.structure or args.strip) and not model.uses_structure:
        print("note: this generator has no structure input; --structure/--strip show no g", file=sys.stderr)
    failed = deocclude_files(model, files, args.out, aligned=args.aligned, crop=args.crop or "lfw",
                             structure=args.structure, strip=args.strip, batch_size=args.batch_size,
                             progress=not args.no_progress, masks=args.mask_files, mask_mode=args.mask_mode)
    return _report(len(files) - len(failed), len(files) + len(unreadable), args.out, [*unreadable, *failed])


def _video(args) -> int:
    """``fsggan-deocclude clip.mp4 --out out.mp4``: every frame's faces (fsggan.photos.video)."""
    from fsggan.photos.deocclude import face_finder
    from fsggan.photos.video import deocclude_video, is_video

    src, out = Path(args.inputs[0]), Path(args.out)
    others = [n for n, on in (("--aligned", args.aligned), ("--crop", args.crop), ("--mask", args.mask),
                              ("--save-faces", args.save_faces), ("--structure", args.structure),
                              ("--strip", args.strip)) if on]
    problem = (("a video goes alone, to a video file: fsggan-deocclude clip.mp4 --out out.mp4"
                if len(args.inputs) != 1 or not is_video(out) else None)
               or (f"{', '.join(others)}: not for videos" if others else None)
               or (None if src.is_file() else f"{src}: no such video file")
               or (f"--out {out}: that is the input video; give another file" if out.exists()
                   and out.resolve() == src.resolve() else None)
               or (f"--out {out}: a folder; give a video file" if out.is_dir() else None)
               or (f"--batch-size {args.batch_size}: must be >= 1" if args.batch_size < 1 else None)
               or (f"--smooth {args.smooth}: give a weight from 0 (off) to 0.95" if not 0 <= args.smooth <= 0.95
                   else None)
               or _check_model(args))
    if problem:
        return fail(PROG, problem)
    try:
        detect = face_finder(args.detector, args.min_face)
        model = _load(args)
        summary = deocclude_video(model, src, out, detect=detect, batch_size=args.batch_size,
                                  progress=not args.no_progress, smooth=args.smooth)
    except (FileNotFoundError, ValueError, ImportError) as exc:  # VideoError, CheckpointError: ValueErrors
        return fail(PROG, exc)
    print(f"wrote {summary.frames} frame(s) with {summary.faces} face(s) to {out} "
          f"({summary.frames_without_face} frame(s) without a face; audio: {summary.audio}"
          + (f"; turned {summary.turned} degrees to stand upright, as players show it)" if summary.turned else ")"))
    return EXIT_WRITTEN if summary.frames else EXIT_NONE


def main(argv: Sequence[str] | None = None) -> int:
    """The exit status: 0 all written, 1 some, 3 none, 2 a usage error (see the --help epilog)."""
    args = build_parser().parse_args(argv)
    if any(Path(i).suffix.lower() in VIDEO_SUFFIXES for i in args.inputs):
        return _video(args)
    crops = args.aligned or args.crop is not None
    found = _check_options(args) or _collect(args, crops)  # before the model loads or anything is written
    if isinstance(found, str):
        return fail(PROG, found)
    files, unreadable, links = found
    if links:
        print(f"note: {len(links)} symbolic link(s) inside the input folders not followed (name them to read "
              f"them): {', '.join(map(str, links))}", file=sys.stderr)
    from fsggan.photos.deocclude import face_finder
    from fsggan.photos.files import OutputError
    from fsggan.masks import pair_masks

    try:
        args.mask_files = None if args.mask is None else pair_masks(args.mask, files, photos=not crops)
        detect = None if crops else face_finder(args.detector, args.min_face)  # before any photo is read
        model = _load(args)
    except (FileNotFoundError, ValueError, ImportError) as exc:  # CheckpointError is a ValueError
        return fail(PROG, exc)
    try:
        return _crops(args, model, files, unreadable) if crops else _photos(args, model, files, unreadable, detect)
    except OutputError as exc:
        return fail(PROG, exc)
    except OSError as exc:  # an output of --aligned/--crop
        if exc.filename is None:
            raise
        return fail(PROG, f"{exc.filename}: cannot write it ({exc.strerror or exc}); give an output folder you "
                          "can write to")

if __name__ == "__main__":
    raise SystemExit(main())
