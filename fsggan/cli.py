"""Console entry points. Each is thin: it imports the module that does the work and
calls its `main(argv)`, which parses arguments, builds the config and calls one function."""

from __future__ import annotations


def train_vae_main(argv=None):
    from fsggan.train.vae import main

    return main(argv)


def train_gan_main(argv=None):
    from fsggan.train.gan import main

    return main(argv)


def eval_main(argv=None):
    from fsggan.eval.evaluate import main

    return main(argv)


def prepare_data_main(argv=None):
    from fsggan.data.prepare import prepare_data_main as main

    return main(argv)


def deocclude_main(argv=None):
    from fsggan.pipeline import main

    return main(argv)


def quickstart_main(argv=None):
    from fsggan.quickstart import main

    return main(argv)
