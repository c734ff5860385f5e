"""``fsggan-export``: a trained run -> a model folder to share (safetensors, model.json, model card).

    fsggan-export runs/gan OUT                     # run folder or .pt file; V from the checkpoint
    fsggan-export runs/gan OUT --onnx [--onnx-extras] [--report results/] [--overwrite]

What the folder holds: :mod:`fsggan.export`, docs/model_file.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fsggan.cli import add_structure_passes_option, check_structure_passes_option, fail, new_parser

PROG = "fsggan-export"


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(
        PROG,
        epilog="OUT may not hold or lie in what the command reads (the run, --vae, --report); --overwrite "
               "replaces an earlier model folder, never an input. It runs no model (weights are copied on the "
               "CPU), so there is no --device.\n\n"
               "Exit status: 0 written; 2 a usage error (one line: a missing run, an existing OUT, a bad report, "
               "OUT on an input) and nothing written (docs/cli.md).",
        description="Write a trained model as a folder people can share and load without its training "
                    "state: G's inference weights (its EMA copy when the run kept one) and V's in safetensors, "
                    "model.json (constructor arguments, image size, alignment template, training data and its "
                    "terms, measured figures, sha256 of every weight file) and a README.md model card. "
                    "Load it with fsggan-deocclude --model OUT or FSGGAN.from_pretrained(OUT).")
    p.add_argument("run", help="Stage II run folder (its best.pt) or checkpoint (.pt)")
    p.add_argument("out", help="the model folder to write (new or empty; see --overwrite)")
    p.add_argument("--vae", default=None, help="Stage I checkpoint (default: the one stored with the run)")
    p.add_argument("--report", default=None, help="fsggan-eval results for model.json (default: one beside the run)")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx, V and G in one graph (needs onnx)")
    p.add_argument("--onnx-extras", action="store_true", help="with --onnx: also output V(x) and G's occlusion map")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier model folder at OUT")
    add_structure_passes_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """0 when written; 2 for a user error (missing run, existing OUT, bad report), one line."""
    from fsggan.cli.safety import folder_overlap, holds_input

    args = build_parser().parse_args(argv)  # --help before torch is imported
    if args.onnx_extras and not args.onnx:
        return fail(PROG, "--onnx-extras needs --onnx")
    if check_structure_passes_option(args.structure_passes):
        return fail(PROG, check_structure_passes_option(args.structure_passes))
    read = [("the run", args.run), ("the --vae", args.vae), ("the --report", args.report)]
    problem = folder_overlap("OUT", args.out, read) or holds_input("OUT", args.out, read)
    if problem:
        return fail(PROG, problem)
    from fsggan.export import ModelFolderError, find_report, write_model_folder
    from fsggan.api import FSGGAN

    if args.onnx:
        try:
            import onnx  # noqa: F401  (torch.onnx.export writes through it)
        except ImportError:
            return fail(PROG, "--onnx needs the onnx package: pip install 'fsggan[onnx]'")
    try:
        model = FSGGAN.from_checkpoints(vae=args.vae, gan=args.run, device="cpu",
                                        structure_passes=args.structure_passes)
        report = args.report or find_report(model.checkpoints["gan"])
        meta = write_model_folder(model, args.out, overwrite=args.overwrite, report=report, onnx=args.onnx,
                                  onnx_extras=args.onnx_extras)
    except (FileNotFoundError, ModelFolderError, ValueError) as exc:  # CheckpointError is a ValueError
        return fail(PROG, exc)
    size = sum(e["bytes"] for e in meta["files"].values())
    print(f"wrote {args.out}: {', '.join(e['file'] for e in meta['files'].values())} ({size / 1e6:.2f} MB), "
          f"model.json, README.md")
    if meta.get("evaluation") is None:
        print("note: no evaluation report found; the model card says 'not evaluated' (--report DIR adds one)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
