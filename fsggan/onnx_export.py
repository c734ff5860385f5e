"""V and G as one ONNX graph (``fsggan-export --onnx``): occluded faces in, de-occluded out.

    input  "occluded"    (N, 3, S, S) float32 RGB in [-1, 1], N dynamic
    output "deoccluded"  (N, 3, S, S) float32 in [-1, 1]            y = G(x, V(x))
    with extras:
    output "structure"   (N, 3, S, S)  g = V(x), the last pass's  (models with a VAE)
    output "map"         (N, 1, S, S)  G's occlusion map (blend heads)

S is the model's ``image_size``; the graph does not resize. A model with ``structure_passes``
above 1 is traced with its passes unrolled (:mod:`fsggan.models.deoccluder`). Run with onnxruntime alone:

    import onnxruntime as ort
    ort_session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    y = ort_session.run(["deoccluded"], {"occluded": x})[0]

It is traced with torch.onnx's TorchScript exporter (``dynamo=False``): the dynamo exporter
needs onnxscript, one more dependency, for a graph of plain convolutions. Opset 17.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from fsggan.models.deoccluder import deocclude

__all__ = ["OPSET", "Deoccluder", "export_onnx"]

OPSET = 17


class Deoccluder(nn.Module):
    """x -> G(x, V(x)) [, V(x), G's map]: the inference graph of an FSGGAN
    (:func:`fsggan.models.deoccluder.deocclude`)."""

    def __init__(self, vae: nn.Module | None, generator: nn.Module, extras: bool = False, structure_passes: int = 1):
        super().__init__()
        self.vae, self.generator, self.extras, self.structure_passes = vae, generator, extras, structure_passes

    def outputs(self) -> list[str]:
        names = ["deoccluded"]
        if self.extras:
            names += ["structure"] if self.vae is not None else []
            names += ["map"] if getattr(self.generator, "output", "direct") == "blend" else []
        return names

    def forward(self, x: torch.Tensor):
        y, g, m = deocclude(self.vae, self.generator, x, structure_passes=self.structure_passes)
        if not self.extras:
            return y
        return tuple(t for t in (y, g, m) if t is not None)


def export_onnx(model, path: str | Path, *, extras: bool = False, batch: int = 1) -> list[str]:
    """Write ``model`` (an FSGGAN) as an ONNX graph to ``path``; returns the output names.
    Traced on the CPU in float32 (``model`` itself is left as it was)."""
    import copy

    vae = None if model.vae is None else copy.deepcopy(model.vae).cpu().float().to(memory_format=torch.contiguous_format)
    gen = copy.deepcopy(model.generator).cpu().float().to(memory_format=torch.contiguous_format)
    net = Deoccluder(vae, gen, extras, model.structure_passes).eval()
    names = net.outputs()
    size = model.image_size
    x = torch.zeros(batch, 3, size, size)
    axes = {n: {0: "batch"} for n in ["occluded", *names]}
    with warnings.catch_warnings():  # the shape checks in G's encode are constants of the traced size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(net, (x,), str(path), input_names=["occluded"], output_names=names,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    return names
