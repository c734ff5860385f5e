"""Validation during training: PSNR / SSIM of each output on the fixed validation set and
the recognisers' output-to-clean cosines (:func:`validate`)."""

from __future__ import annotations

from typing import Callable

import torch

from fsggan.metrics import psnr_ssim_batch, summarize

from .runtime import Env

__all__ = ["validate"]


@torch.no_grad()
def validate(predict: Callable[[torch.Tensor], dict[str, torch.Tensor]], val: dict[str, torch.Tensor],
             env: Env, batch_size: int = 32, channels_last: bool = False,
             judges: dict[str, Callable] | None = None) -> dict[str, float]:
    """PSNR / SSIM (fsggan.metrics; docs/design.md, Metrics) of each output of
    ``predict(x)`` against the clean faces, and of the occluded input itself.

    Returns ``{"val/<name>_psnr", "val/<name>_ssim"}`` for name in ("input", *outputs), and
    for each face recogniser in ``judges`` (name -> (B, 3, H, W) -> unit features) the mean
    cosine between the features of the input / the output and of the clean face,
    ``{"val/<name>_cos_<judge>"}``: the training recogniser's rising while an independent
    one's falls is G learning the training recogniser's blind spots.
    """
    judges = judges or {}
    cosines: dict[str, list[float]] = {}
    values: dict[str, tuple[list[float], list[float]]] = {}
    for i in range(0, len(val["clean"]), batch_size):
        x = val["occluded"][i:i + batch_size]
        y = val["clean"][i:i + batch_size]
        xd = x.to(env.device)
        if channels_last:
            xd = xd.contiguous(memory_format=torch.channels_last)
        outputs = {"input": x, **{k: v.float().cpu() for k, v in predict(xd).items()}}
        for name, out in outputs.items():
            p, s = values.setdefault(name, ([], []))
            batch_psnr, batch_ssim = psnr_ssim_batch(out, y)  # the whole batch at once
            p.extend(batch_psnr)
            s.extend(batch_ssim)
        for judge, net in judges.items():
            ref = net(y.to(env.device)).float()
            for name in ("input", "output"):
                if name in outputs:
                    feat = net(outputs[name].to(env.device)).float()
                    cosines.setdefault(f"val/{name}_cos_{judge}", []).extend((feat * ref).sum(1).cpu().tolist())
    metrics = {k: sum(v) / len(v) for k, v in cosines.items()}
    for name, (p, s) in values.items():  # summarize leaves out infinite PSNRs (identical images)
        metrics[f"val/{name}_psnr"] = summarize(p)["mean"]
        metrics[f"val/{name}_ssim"] = summarize(s)["mean"]
    return metrics
