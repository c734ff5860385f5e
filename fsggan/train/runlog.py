"""What a run writes as it goes: :class:`RunLog` (TensorBoard scalars and images,
``stats.jsonl``, ``samples/*.png``; rank 0 only) and :class:`Meter` (running means of the
per-step values between two log points, images per second)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from .runtime import Env

__all__ = ["RunLog", "Meter"]


class RunLog:
    """TensorBoard scalars/images, ``stats.jsonl`` and ``samples/*.png`` (rank 0 only;
    on other ranks every method does nothing)."""

    def __init__(self, run_dir: Path, env: Env, step: int = 0):
        self.active = env.is_main
        self.run_dir = run_dir
        self.writer = None
        self.stats = None
        if self.active:
            from torch.utils.tensorboard import SummaryWriter

            # resumed at ``step``: TensorBoard hides the events of later steps written before
            self.writer = SummaryWriter(str(run_dir), purge_step=step + 1 if step else None)
            self.stats = open(run_dir / "stats.jsonl", "a")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.active:
            return
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        record = {"step": step, "time": round(time.time(), 3)}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self.stats.write(json.dumps(record) + "\n")
        self.stats.flush()

    def image_grid(self, step: int, rows: dict[str, torch.Tensor]) -> Path | None:
        """One grid, a row per entry of ``rows`` (each (N, 3, H, W) in [-1, 1]); saved as
        ``samples/step_NNNNNNN.png`` and to TensorBoard. Returns the PNG path."""
        if not self.active:
            return None
        import torchvision

        names = list(rows)
        n = rows[names[0]].shape[0]
        grid = torchvision.utils.make_grid(torch.cat([rows[k].detach().float().cpu() for k in names]),
                                           nrow=n, padding=2, value_range=(-1, 1), normalize=True)
        self.writer.add_image("samples/" + "_".join(names), grid, step)
        path = self.run_dir / "samples" / f"step_{step:07d}.png"
        torchvision.utils.save_image(grid, path)
        return path

    def flush(self) -> None:
        if self.active:
            self.writer.flush()

    def close(self) -> None:
        if self.active:
            self.writer.close()
            self.stats.close()


class Meter:
    """Running means of per-step floats between two log points (each over the steps that
    reported it), plus images/second."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}  # per key: a term may be missing on some steps (identity_ramp)
        self.count = 0
        self.images = 0
        self.start = time.perf_counter()

    def update(self, values: dict[str, float], images: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.count += 1
        self.images += images

    def means(self, env: Env) -> dict[str, float]:
        """Means over the steps since the last reset, averaged over ranks."""
        keys = sorted(self.sums)
        if not keys or not self.count:
            return {}
        t = env.mean(torch.tensor([self.sums[k] / self.counts[k] for k in keys], dtype=torch.float64))
        return dict(zip(keys, t.tolist()))

    def images_per_second(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)
