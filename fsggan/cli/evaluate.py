"""``fsggan-eval``: score de-occlusion on prepared test sets (paper Tables 2, 3 and 4).

    fsggan-eval data/prepared/set1-lfw data/prepared/set2-lfw --gan runs/lfw_gan --out results/lfw
    fsggan-eval SETS... --predictions DIR [--method-name NAME]      # any other method's outputs
    fsggan-eval --compare RESULTS_DIR ...                           # earlier results side by side

What is scored and how: :mod:`fsggan.eval.evaluate`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fsggan.cli import add_common_options, add_structure_passes_option, check_structure_passes_option, fail, new_parser
from fsggan.cli.preflight import eval_preflight

PROG = "fsggan-eval"


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(
        PROG,
        description="PSNR/SSIM and rank-k identification on prepared test sets (paper Tables 2-4), "
                    "for FSG-GAN checkpoints or any method's output images. Recognizers: dlib_resnet (the "
                    "independent judge; its weights ship with fsggan), mobilefacenet, lightcnn9, lightcnn29, "
                    "lightcnn29v2, arcface_r50, arcface_r100 (give their weights, NAME=PATH when several need "
                    "them); the network that trained G's identity loss is marked as not independent.",
        epilog="Exit status: 0 scored (results written with --out); 2 a usage error (one line: an option, a "
               "set, a checkpoint, missing predictions, an output folder inside the sets or predictions it "
               "reads) and nothing written. --save-predictions files are written whole or not at all "
               "(docs/cli.md).")
    p.add_argument("sets", nargs="*", help="prepared set folders (clean/, occluded/, manifest.json, protocol.json)")
    src = p.add_argument_group("method (at most one; none = baseline rows only)")
    src.add_argument("--gan", help="Stage II checkpoint (.pt) or run folder (its best.pt)")
    src.add_argument("--vae", help="Stage I checkpoint (default: the one in --gan)")
    src.add_argument("--predictions", metavar="DIR", help="another method's outputs, the set's names (DIR/<set>/ "
                     "for several)")
    src.add_argument("--method-name", metavar="NAME", help="row label (default: FSG-GAN or the folder's name)")
    rec = p.add_argument_group("recognition (Table 3)")
    rec.add_argument("--recognizer", action="append", default=None, metavar="NAME",
                     help="identity judge, repeatable (default: dlib_resnet; none: no rank-k)")
    rec.add_argument("--recognizer-weights", action="append", default=None, metavar="[NAME=]PATH",
                     help="a judge's published weights ('random': a smoke test)")
    rec.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10], metavar="K",
                     help="ranks to report, >= 1 (default: 1 5 10)")
    out = p.add_argument_group("output")
    out.add_argument("--out", help="results folder (results.md, .json, .csv), outside the sets")
    out.add_argument("--per-image", action="store_true", help="also write per_image_<set>.csv")
    out.add_argument("--save-predictions", metavar="DIR", help="with --gan: write the outputs to DIR/<set>/")
    out.add_argument("--compare", nargs="+", metavar="RESULTS_DIR",
                     help="instead of scoring: earlier results side by side")
    run = p.add_argument_group("running")
    run.add_argument("--allow-missing", action="store_true",
                     help="score the images that have a prediction, count the others")
    run.add_argument("--batch-size", type=int, default=64, metavar="N", help="faces per model batch (default: 64)")
    run.add_argument("--workers", type=int, default=2, metavar="N", help="image reading processes (default: 2)")
    run.add_argument("--amp", default=None, choices=("bf16", "fp16"), metavar="DTYPE",
                     help="with --gan: bf16 (CPU or GPU) or fp16 (GPU) autocast (default: float32)")
    add_structure_passes_option(run)
    add_common_options(run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Returns the exit status (2 for a user error such as a missing prediction, a wrong
    checkpoint or recognizer weights; the message names the file)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # --help before torch is imported
    from fsggan.eval.evaluate import MissingPredictionsError

    problem = _check_values(args)
    if problem:
        return fail(PROG, problem)
    problem = eval_preflight(args)  # output folders, device, model vs set size: before any scoring
    if problem:
        return fail(PROG, problem)
    try:
        return _run(args, parser, argv)
    except (MissingPredictionsError, FileNotFoundError, ImportError, ValueError, RuntimeError) as exc:
        if type(exc) is RuntimeError:  # a bare RuntimeError is a bug or a torch failure: keep the traceback
            raise
        return fail(PROG, exc)


def _check_values(args: argparse.Namespace) -> str | None:
    """A one-line complaint about an option value, checked before anything is loaded."""
    from fsggan.eval.recognition import recognizer_names

    for name in args.recognizer or []:
        if name != "none" and name not in recognizer_names():
            return f"--recognizer {name}: unknown name; choose from none, {', '.join(recognizer_names())}"
    bad = [k for k in args.ks if k < 1]
    if bad:
        return f"--ks {' '.join(map(str, args.ks))}: ranks start at 1 (rank-1 = the best match), got {bad[0]}"
    for name in ("batch_size", "workers"):
        value, least = getattr(args, name), 1 if name == "batch_size" else 0
        if value < least:
            return f"--{name.replace('_', '-')} {value}: must be >= {least}"
    if args.amp is not None and not args.gan:
        return f"--amp {args.amp}: goes with --gan (it sets how the model runs)"
    if args.structure_passes is not None and not args.gan:
        return f"--structure-passes {args.structure_passes}: goes with --gan (it sets how the model runs)"
    return check_structure_passes_option(args.structure_passes)


def _compare(args: argparse.Namespace) -> int:
    from fsggan.eval import report

    labels = [Path(d).name for d in args.compare]
    runs = [report.load_results(d) for d in args.compare]
    print(report.markdown(runs, labels=labels))
    if args.out:
        report.write_comparison(runs, args.out, labels=labels)
        print(f"comparison written to {args.out}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser, argv) -> int:
    from fsggan.eval import report
    from fsggan.eval.evaluate import evaluate_sets
    from fsggan.eval.recognition import DLIB_NAME, build_recognizer
    from fsggan.device import resolve_device
    from fsggan.api import FSGGAN, amp_dtype

    if args.compare:
        if args.sets or args.gan or args.predictions:
            parser.error("--compare takes results folders only (no sets, --gan or --predictions)")
        return _compare(args)
    if not args.sets:
        parser.error("give at least one prepared set folder (or --compare RESULTS_DIR ...)")
    if args.gan and args.predictions:
        parser.error("--gan and --predictions exclude each other")
    if args.vae and not args.gan:
        parser.error("--vae needs --gan")
    if args.save_predictions and not args.gan:
        parser.error("--save-predictions needs --gan")

    device = resolve_device(args.device)
    model, method = None, args.method_name
    if args.gan:
        try:  # --amp fp16 on the CPU: one line before the model loads
            amp_dtype(args.amp, device)
        except ValueError as exc:
            return fail(PROG, f"--{exc}")
        model = FSGGAN.from_checkpoints(vae=args.vae, gan=args.gan, device=device, amp=args.amp,
                                        structure_passes=args.structure_passes)
        method = method or "FSG-GAN"
    elif args.predictions:
        if not Path(args.predictions).is_dir():
            parser.error(f"--predictions {args.predictions}: no such folder")
        method = method or Path(args.predictions).resolve().name

    names = [n for n in (args.recognizer or [DLIB_NAME]) if n != "none"]
    weights = _weights_by_name(names, args.recognizer_weights or [], parser)
    trained_with = getattr(model, "identity_net", None)  # the recogniser of G's identity loss, if any
    infos = sorted(({"name": n, "weights": weights.get(n),
                     "role": "training loss" if n == trained_with else "independent"} for n in dict.fromkeys(names)),
                   key=lambda i: i["role"] == "training loss")
    recognizers = {i["name"]: build_recognizer(i["name"], i["weights"]).place(device) for i in infos}

    results = evaluate_sets(args.sets, method=method, model=model, predictions=args.predictions,
                            recognizers=recognizers, recognizer_info=infos, save_predictions=args.save_predictions,
                            ks=tuple(args.ks), allow_missing=args.allow_missing, batch_size=args.batch_size,
                            device=device, workers=args.workers, per_image=args.per_image, worst=16,
                            progress=not args.no_progress)
    results["command"] = [PROG, *(argv if argv is not None else sys.argv[1:])]

    print(report.markdown([results]))  # holds the skipped-predictions line, once
    if args.out:
        report.write_results(results, args.out)
        print(f"results written to {args.out}", file=sys.stderr)
    return 0


def _weights_by_name(names: list[str], given: list[str], parser) -> dict[str, str | None]:
    """``--recognizer-weights`` entries (``PATH`` or ``NAME=PATH``) -> {name: path or "random"};
    dlib_resnet needs none (its weights ship with fsggan), every other recogniser one."""
    from fsggan.eval.recognition import DLIB_NAME, recognizer_names

    out: dict[str, str | None] = {}
    plain = [g for g in given if "=" not in g or g.split("=", 1)[0] not in recognizer_names()]
    for g in given:
        if g not in plain:
            name, path = g.split("=", 1)
            out[name] = path
    needing = [n for n in names if n != DLIB_NAME and n not in out]
    if len(plain) > 1 or (plain and len(needing) > 1):
        parser.error("several recognizers need weights: give each as --recognizer-weights NAME=PATH")
    if plain:
        out[needing[0] if needing else (names[0] if names else DLIB_NAME)] = plain[0]
    for n in names:
        if n != DLIB_NAME and out.get(n) is None:
            parser.error(f"--recognizer {n} needs --recognizer-weights PATH "
                         "(or 'random' for a smoke test: random features carry no identity information)")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
