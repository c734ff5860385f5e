"""``fsggan-train-vae`` (Stage I); the module torchrun runs. Options: :mod:`fsggan.cli.train`."""

from fsggan.cli.train import vae_main as main

if __name__ == "__main__":  # torchrun --nproc_per_node N -m fsggan.cli.train_vae --config configs/vae.yaml
    raise SystemExit(main())
