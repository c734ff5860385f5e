"""Safety between steps: :func:`check_finite` (a non-finite loss stops the run with
:class:`NonFiniteLossError`, naming the step and the term, before anything is saved) and
:class:`StopSignal` (Ctrl-C / SIGTERM: finish the step, checkpoint, exit)."""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path

import torch

__all__ = ["NonFiniteLossError", "check_finite", "StopSignal"]


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the run stops without writing a checkpoint."""


def check_finite(terms: dict[str, torch.Tensor], step: int, run_dir: Path | None = None) -> dict[str, float]:
    """Loss terms of step ``step`` (1-based) as floats (one device sync); raise if any is
    NaN or infinite.

    The message names the step and the terms; nothing is saved, so ``checkpoints/last.pt``
    stays the last good state.
    """
    values = torch.stack([v.detach().float().reshape(()) for v in terms.values()]).tolist()
    out = dict(zip(terms, values))
    bad = [f"{k}={v}" for k, v in out.items() if not math.isfinite(v)]
    if bad:
        where = f"; last good checkpoint: {run_dir / 'checkpoints' / 'last.pt'}" if run_dir else ""
        raise NonFiniteLossError(
            f"non-finite loss at step {step}: {', '.join(bad)}. Training stopped without saving"
            f"{where}. Try a lower optim.lr, train.amp=none, or check the data.")
    return out


class StopSignal:
    """Ctrl-C / SIGTERM: finish the current step, save a checkpoint, then stop.

    A second Ctrl-C aborts at once (KeyboardInterrupt, nothing saved). SIGTERM (what
    torchrun and cluster schedulers send) always asks for the graceful stop. Handlers are
    installed only in the main thread; elsewhere ``requested`` stays False.
    """

    def __init__(self, verbose: bool = True):
        self.requested = False
        self.verbose = verbose
        self._old = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        if not self.requested and self.verbose:
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            print(f"\n{name}: stopping after this step and saving a checkpoint "
                  f"(press Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)
        self.requested = True

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False
