"""fsggan: FSG-GAN face de-occlusion (Cheung, Li, Zou, ICMR 2021) in PyTorch.

The notebook API:

    from fsggan import FSGGAN
    m = FSGGAN.from_checkpoints(gan="runs/lfw_gan")      # V is stored in the Stage II checkpoint
    out = m.deocclude(images)                             # PIL images, numpy arrays or tensors
    g = m.structure(images)                               # the Stage I facial structure V(x)

Models, losses and identity networks take plain keyword arguments:

    from fsggan import VAE, UNetGenerator, MultiRFDiscriminator
    vae = VAE(base_channels=32)
    disc = MultiRFDiscriminator(trunk=vae.encoder, trunk_mode="frozen")
"""

__version__ = "0.1.0"

# The names below are imported when first used (PEP 562), not with the package: a command's
# --help (fsggan.cli) then answers without importing torch (0.1 s instead of 3 s).
_EXPORTS = {
    "fsggan.losses": ("GeneratorLoss", "LossWeights", "discriminator_loss", "generator_adversarial_loss",
                      "identity_loss", "pixel_loss", "total_variation", "vae_loss"),
    "fsggan.models": ("VAE", "DiscOutput", "GlobalDiscriminator", "HDCModule", "MultiRFDiscriminator",
                      "PatchDiscriminator", "UNetGenerator", "VAEDecoder", "VAEEncoder", "VAEOutput"),
    "fsggan.models.identity": ("EMBEDDER_NAMES", "FaceEmbedder", "WeightsError", "build_embedder"),
    "fsggan.api": ("FSGGAN",),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'fsggan' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "FSGGAN",
    "VAE", "VAEEncoder", "VAEDecoder", "VAEOutput", "UNetGenerator", "HDCModule",
    "MultiRFDiscriminator", "GlobalDiscriminator", "PatchDiscriminator", "DiscOutput",
    "FaceEmbedder", "build_embedder", "EMBEDDER_NAMES", "WeightsError",
    "LossWeights", "GeneratorLoss", "vae_loss", "pixel_loss", "identity_loss", "generator_adversarial_loss",
    "discriminator_loss", "total_variation",
]
