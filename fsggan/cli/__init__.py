"""The command line: every console entry point, one module per command.

    fsggan-prepare-data  fsggan.cli.prepare_data:main  -> fsggan.data.prepare.prepare_data
    fsggan-train-vae     fsggan.cli.train_vae:main     -> fsggan.train.vae.train_vae
    fsggan-train-gan     fsggan.cli.train_gan:main     -> fsggan.train.gan.train_gan
    fsggan-eval          fsggan.cli.evaluate:main      -> fsggan.eval.evaluate.evaluate_sets
    fsggan-deocclude     fsggan.cli.deocclude:main     -> fsggan.pipeline.deocclude_files
    fsggan-quickstart    fsggan.cli.quickstart:main    -> fsggan.quickstart.run_quickstart

Each ``main(argv=None)`` parses its arguments, loads the config, calls one library
function and turns the known errors (bad config, missing file, wrong checkpoint, ...)
into a one-line message on stderr and an exit status. Nothing below this package
imports it.
"""

from __future__ import annotations

import sys


def fail(prog: str, error: BaseException | str, status: int = 2) -> int:
    """Print ``<prog>: error: <error>`` on stderr and return ``status`` (the exit status)."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return status
