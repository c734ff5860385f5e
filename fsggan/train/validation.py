"""Validation during training: PSNR / SSIM of each output on the fixed validation set, the
occluder residue, the harm done to the same faces un-occluded, and the recognisers'
output-to-clean cosines (:func:`validate`)."""

from __future__ import annotations

from typing import Callable

import torch

from fsggan.images import to_uint8
from fsggan.metrics import changed_share, occluder_residue, psnr_ssim_batch, spread, summarize

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

    With masks in ``val``: ``val/<name>_residue``, the median occluder residue of each output
    (:func:`fsggan.metrics.occluder_residue`: 1 = the occluder untouched, 0 = gone). And the
    harm to clean faces: ``predict`` run on the clean faces themselves, ``val/clean_psnr``
    (median PSNR of its output against them, dB; ``inf`` when most come back unchanged) and
    ``val/clean_changed`` (mean share of pixels changed by more than 8/255).
    """
    residues: dict[str, list[float]] = {}
    harm: dict[str, list[float]] = {"psnr": [], "changed": []}
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
        if "mask" in val:
            _residue_and_harm(predict, outputs, y, val["mask"][i:i + batch_size], env, channels_last,
                              residues, harm)
        for judge, net in judges.items():
            ref = net(y.to(env.device)).float()
            for name in ("input", "output"):
                if name in outputs:
                    feat = net(outputs[name].to(env.device)).float()
                    cosines.setdefault(f"val/{name}_cos_{judge}", []).extend((feat * ref).sum(1).cpu().tolist())
    metrics = {k: sum(v) / len(v) for k, v in cosines.items()}
    metrics.update({f"val/{name}_residue": spread(r)["median"] for name, r in residues.items()})
    if harm["psnr"]:
        metrics["val/clean_psnr"] = spread(harm["psnr"])["median"]
        metrics["val/clean_changed"] = sum(harm["changed"]) / len(harm["changed"])
    for name, (p, s) in values.items():  # summarize leaves out infinite PSNRs (identical images)
        metrics[f"val/{name}_psnr"] = summarize(p)["mean"]
        metrics[f"val/{name}_ssim"] = summarize(s)["mean"]
    return metrics


def _residue_and_harm(predict, outputs: dict[str, torch.Tensor], y: torch.Tensor, mask: torch.Tensor, env: Env,
                      channels_last: bool, residues: dict[str, list[float]], harm: dict[str, list[float]]) -> None:
    """Add one batch's occluder residue of each output, and the harm ``predict`` does to the
    same faces with nothing over them (PSNR against them, share of pixels changed)."""
    x8, y8, m = to_uint8(outputs["input"]), to_uint8(y), mask.numpy() > 0.5
    for name, out in outputs.items():
        if name != "input":
            residues.setdefault(name, []).extend(occluder_residue(to_uint8(out), x8, y8, m).tolist())
    if "output" not in outputs:
        return
    yd = y.to(env.device)
    if channels_last:
        yd = yd.contiguous(memory_format=torch.channels_last)
    kept = predict(yd)["output"].float().cpu()
    harm["psnr"].extend(psnr_ssim_batch(kept, y)[0])
    harm["changed"].extend(changed_share(to_uint8(kept), y8).tolist())
