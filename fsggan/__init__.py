"""fsggan: FSG-GAN face de-occlusion (Cheung, Li, Zou, ICMR 2021) in PyTorch."""

__version__ = "0.1.0"
