"""``fsggan-train-gan`` (Stage II); the module torchrun runs. Options: :mod:`fsggan.cli.train`."""

from fsggan.cli.train import gan_main as main

if __name__ == "__main__":  # torchrun --nproc_per_node N -m fsggan.cli.train_gan --config configs/gan.yaml
    raise SystemExit(main())
