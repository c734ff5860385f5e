"""FSG-GAN networks (paper's method section): Stage I VAE, HDC U-Net generator, discriminators."""

from .blocks import ConvUnit, DownSample, ResidualBlock, UpSample
from .deoccluder import check_structure_passes, deocclude
from .discriminator import TRUNK_MODES, DiscOutput, MultiRFDiscriminator
from .generator import UNetGenerator
from .global_discriminator import GlobalDiscriminator
from .patch_discriminator import PatchDiscriminator
from .hdc import HDCModule
from .vae import VAE, VAEDecoder, VAEEncoder, VAEOutput

__all__ = [
    "ConvUnit", "DownSample", "ResidualBlock", "UpSample", "HDCModule",
    "VAE", "VAEEncoder", "VAEDecoder", "VAEOutput", "UNetGenerator",
    "MultiRFDiscriminator", "GlobalDiscriminator", "PatchDiscriminator", "DiscOutput", "TRUNK_MODES",
    "deocclude", "check_structure_passes",
]
