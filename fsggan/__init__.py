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

from fsggan.losses import (
    GeneratorLoss,
    LossWeights,
    discriminator_loss,
    generator_adversarial_loss,
    identity_loss,
    pixel_loss,
    total_variation,
    vae_loss,
)
from fsggan.models import (
    VAE,
    DiscOutput,
    GlobalDiscriminator,
    HDCModule,
    MultiRFDiscriminator,
    PatchDiscriminator,
    UNetGenerator,
    VAEDecoder,
    VAEEncoder,
    VAEOutput,
)
from fsggan.models.identity import EMBEDDER_NAMES, FaceEmbedder, WeightsError, build_embedder
from fsggan.pipeline import FSGGAN

__all__ = [
    "FSGGAN",
    "VAE", "VAEEncoder", "VAEDecoder", "VAEOutput", "UNetGenerator", "HDCModule",
    "MultiRFDiscriminator", "GlobalDiscriminator", "PatchDiscriminator", "DiscOutput",
    "FaceEmbedder", "build_embedder", "EMBEDDER_NAMES", "WeightsError",
    "LossWeights", "GeneratorLoss", "vae_loss", "pixel_loss", "identity_loss", "generator_adversarial_loss",
    "discriminator_loss", "total_variation",
]
