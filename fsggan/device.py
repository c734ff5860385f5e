"""Where models run: one place that turns a device option ("auto", "cpu", "cuda:1") into a
torch.device, or a one-line error naming it. ``mps`` (Apple GPUs) is accepted where torch has it."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device) -> torch.device:
    """"auto" or None -> CUDA when available, else the CPU; "cpu", "cuda", "cuda:N" or a
    torch.device -> that device, when this machine has it. Anything else is a one-line
    ValueError naming the device and the choices."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r}: unknown; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine; use auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps":  # Apple GPUs, where this torch build has them (inference only)
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {device!r}: Apple's MPS is not available on this machine; use auto or cpu")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r}: fsggan runs on cpu, cuda or mps; use auto, cpu, cuda or cuda:N")
    return dev
