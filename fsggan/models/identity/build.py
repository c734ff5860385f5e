"""``build_embedder(name, weights)``: one entry point for every identity network."""

from __future__ import annotations

from pathlib import Path

from .base import FaceEmbedder
from .iresnet import ArcFaceEmbedder
from .lightcnn import LightCNNEmbedder
from .mobilefacenet import MobileFaceNetEmbedder

EMBEDDER_NAMES = ("lightcnn9", "lightcnn29", "lightcnn29v2", "mobilefacenet", "arcface_r50", "arcface_r100")


def build_embedder(name: str, weights: str | Path | None = None, **options) -> FaceEmbedder:
    """Build a frozen :class:`FaceEmbedder` and load its published weights.

    name: one of :data:`EMBEDDER_NAMES`.
    weights: path of the official checkpoint (format per network: see the embedder
        classes); ``None`` keeps random weights - for tests and smoke runs only, the
        features then carry no identity information.
    options: passed to the embedder class, e.g. ``flip=True`` / ``aspect="resize"`` for
        MobileFaceNet, ``weights_only=False`` to unpickle a trusted legacy file.
    Raises :class:`WeightsError` (a RuntimeError) naming the file, the expected format
    and where the official weights are published.
    """
    if name.startswith("lightcnn") and name in EMBEDDER_NAMES:
        return LightCNNEmbedder(name, weights, **options)
    if name == "mobilefacenet":
        return MobileFaceNetEmbedder(weights, **options)
    if name in ("arcface_r50", "arcface_r100"):
        return ArcFaceEmbedder(int(name.removeprefix("arcface_r")), weights, **options)
    raise ValueError(f"unknown face embedder {name!r}; choose from {', '.join(EMBEDDER_NAMES)}")
