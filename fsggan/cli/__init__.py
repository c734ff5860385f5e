"""The command line: every console entry point, one module per command.

    fsggan-prepare-data  fsggan.cli.prepare_data:main  -> fsggan.data.prepare.prepare_data
    fsggan-train-vae     fsggan.cli.train_vae:main     -> fsggan.train.vae.train_vae
    fsggan-train-gan     fsggan.cli.train_gan:main     -> fsggan.train.gan.train_gan
    fsggan-eval          fsggan.cli.evaluate:main      -> fsggan.eval.evaluate.evaluate_sets
    fsggan-deocclude     fsggan.cli.deocclude:main     -> fsggan.photos.deocclude_photo_files (photos),
                                                        fsggan.crops.deocclude_files (--aligned, --crop)
    fsggan-quickstart    fsggan.cli.quickstart:main    -> fsggan.quickstart.run_quickstart
    fsggan-export        fsggan.cli.export:main        -> fsggan.export.write_model_folder

Each ``main(argv=None)`` parses its arguments, loads the config, calls one library
function and turns the known errors (bad config, missing file, wrong checkpoint, ...)
into a one-line message on stderr and an exit status. Nothing below this package
imports it.

What the commands share (docs/cli.md): ``--device`` and ``--no-progress``
(:func:`add_common_options`), ``--structure-passes`` where a model is loaded
(:func:`add_structure_passes_option`), the help layout (:func:`new_parser`), the exit statuses of
a command that writes one output per input (:func:`exit_epilog`), and the checks made before
anything is loaded: output folders (:func:`check_out_dir`), devices, and outputs that would
land on an input (:mod:`fsggan.cli.safety`). A parser is built without importing torch, so
``--help`` answers at once: the library is imported after the arguments are parsed.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

# Exit statuses shared by the commands that write files (each --help epilog says them).
EXIT_WRITTEN, EXIT_SOME, EXIT_USER, EXIT_NONE = 0, 1, 2, 3
DEVICE_HELP = "auto (CUDA if there is one), cpu, cuda or cuda:N (default: auto)"
PROGRESS_HELP = "no progress bars (default: shown)"


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with the description and epilog kept as paragraphs (blank lines)."""

    def _fill_text(self, text, width, indent):
        return "\n\n".join(textwrap.fill(" ".join(par.split()), width, initial_indent=indent,
                                         subsequent_indent=indent) for par in text.split("\n\n"))


def fail(prog: str, error: BaseException | str, status: int = 2) -> int:
    """Print ``<prog>: error: <error>`` on stderr and return ``status`` (the exit status)."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return status


def new_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """An argparse parser with the commands' shared layout (paragraphs kept, see HelpFormatter)."""
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)


def add_common_options(parser, device_default: str | None = "auto") -> None:
    """``--device`` and ``--no-progress``, the same two options with the same words in every
    command (``device_default=None``: the training commands, whose config holds the device)."""
    parser.add_argument("--device", default=device_default, metavar="DEVICE",
                        help=DEVICE_HELP if device_default else DEVICE_HELP.replace("default: auto",
                                                                                    "default: train.device"))
    parser.add_argument("--no-progress", action="store_true", help=PROGRESS_HELP)


def add_structure_passes_option(parser) -> None:
    """``--structure-passes N``: how a loaded model runs (:mod:`fsggan.models.deoccluder`)."""
    parser.add_argument("--structure-passes", type=int, default=None, metavar="N",
                        help="1: G(x, V(x)) as the paper; 2: G fills again from V of its output (default: the model's)")


def check_structure_passes_option(value) -> str | None:
    """A one-line complaint about ``--structure-passes``, or None."""
    if value is not None and value < 1:
        return f"--structure-passes {value}: must be >= 1 (1: the paper's G(x, V(x)))"
    return None


def exit_epilog(what: str) -> str:
    """The exit statuses of a command that writes ``what`` (one per input), for its --help."""
    return (f"Exit status: {EXIT_WRITTEN} every input's {what} written; {EXIT_SOME} some written, others skipped "
            f"or unreadable (listed); {EXIT_NONE} none written (all skipped or unreadable); {EXIT_USER} a usage "
            "error (one line: an option, a missing or unreadable input, an output on an input) and nothing "
            "written. Inputs are never overwritten; files are written whole or not at all (docs/cli.md).")


def check_out_dir(path, option: str) -> str | None:
    """A one-line complaint when ``path`` (an output folder, given as ``option``) cannot be
    one: an existing file, a file on its way, or a folder in which no file can be made (tried
    with a temporary file, removed at once); None when fine (or not given). Checked when a
    command starts, before anything is read or written; creates nothing."""
    import os
    from pathlib import Path

    if path is None:
        return None
    p = Path(path)
    if p.exists() and not p.is_dir():
        return f"{option} {path}: a file, not a folder; give a folder (new or existing)"
    parent = p
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent != p and parent.exists() and not parent.is_dir():
        return f"{option} {path}: {parent} is a file, so no folder can be made there; give another folder"
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        return f"{option} {path}: {parent} is not writable; give a folder you can write to"
    try:  # root may write where os.access says yes but the file system says no (/proc, read-only mounts)
        probe = parent / f".fsggan-write-test-{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        return f"{option} {path}: no file can be written in {parent} ({exc.strerror or exc}); give another folder"
    return None


def check_device(device) -> str | None:
    """A one-line complaint about ``--device`` (unknown, or absent on this machine), or None."""
    from fsggan.device import resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:
        return f"--{exc}"
    return None


def training_device(device: str | None) -> str | None:
    """``--device`` of a command that trains -> the value of ``train.device`` (None: the
    config's). ``cuda:N`` selects GPU N for this process through ``CUDA_VISIBLE_DEVICES`` (set
    before CUDA starts; the run then sees that one GPU as ``cuda``), since ``train.device``
    names a kind of device and torchrun gives each of its processes its own GPU. Raises
    ValueError with a one-line complaint for a device that is unknown or absent."""
    import os
    import re

    if device is None:
        return None
    match = re.fullmatch(r"cuda:(\d+)", device)
    if match is None:
        problem = check_device(device)
        if problem:
            raise ValueError(problem)
        return device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(f"--device {device}: under torchrun each process takes its own GPU (cuda:LOCAL_RANK); "
                         "use --device cuda")
    import torch

    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = ([v.strip() for v in given.split(",") if v.strip()] if given is not None
               else [str(i) for i in range(torch.cuda.device_count())])
    n = int(match.group(1))
    if n >= len(visible):
        raise ValueError(f"--device {device!r}: this machine has {len(visible)} CUDA device(s) visible"
                         f"{'; use auto or cpu' if not visible else f', cuda:0 to cuda:{len(visible) - 1}'}")
    os.environ["CUDA_VISIBLE_DEVICES"] = visible[n]
    return "cuda"


def data_folders(data) -> list[tuple[str, str]]:
    """The folders a data config (:class:`fsggan.data.PrepareConfig` or a training run's
    ``data`` section) reads, as ``(what, path)`` for :func:`fsggan.cli.safety.folder_overlap`:
    the dataset and the occluder folders."""
    found = [("the dataset folder (dataset.root)", data.dataset.root)]
    occluders = data.occluders
    for group in ("seen", "new", "unseen"):
        for source in getattr(occluders, group, None) or []:
            if source.path != "procedural":
                found.append((f"the occluder folder (occluders.{group})", source.path))
    return found
