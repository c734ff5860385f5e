"""Safety between steps: :class:`LossGuard` (a non-finite loss stops the run with
:class:`NonFiniteLossError`, naming the step and the term, before anything is saved) and
:class:`StopSignal` (Ctrl-C / SIGTERM: finish the step, checkpoint, exit)."""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

__all__ = ["NonFiniteLossError", "LossGuard", "StopSignal", "MAX_UNCHECKED_STEPS"]

MAX_UNCHECKED_STEPS = 1000  # the loss terms are read back at least this often (log_every: 0)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the run stops without writing a checkpoint."""


class LossGuard:
    """The loss terms of every step, kept on the device until :meth:`check` reads them back.

    Reading a CUDA scalar (``.item()``, ``.tolist()``, ``float()``) makes the host wait for
    the GPU to drain its queue; doing it after every step leaves the GPU idle while Python
    launches the next step's kernels. :meth:`add` only stacks the detached terms on the
    device (an asynchronous kernel); :meth:`check`, at the steps that log or save, copies all
    of them back at once (one synchronisation), raises :class:`NonFiniteLossError` naming the
    first step with a non-finite term, and returns each step's values for the running means.
    Checks happen before every checkpoint, so a non-finite loss is never saved.

    Under DDP every rank checks at the same steps, and one all-reduce tells every rank the
    first bad step of any rank and whether any rank was asked to stop: every rank raises (no
    rank is left waiting in a collective) and every rank stops together.
    """

    def __init__(self, env=None, run_dir: Path | None = None):
        self.env, self.run_dir = env, run_dir
        self.pending: list[tuple[int, tuple[str, ...], torch.Tensor]] = []

    def add(self, terms: dict[str, torch.Tensor], step: int) -> None:
        """The terms of step ``step`` (1-based): no host synchronisation."""
        self.pending.append((step, tuple(terms), torch.stack([v.detach().float().reshape(()) for v in terms.values()])))

    def check(self, stop_requested: bool = False) -> tuple[list[dict[str, float]], bool]:
        """(the values of each step since the last check, whether any rank asked to stop);
        raises :class:`NonFiniteLossError` when a term was NaN or infinite."""
        pending, self.pending = self.pending, []
        flat = torch.cat([vec for _, _, vec in pending]).tolist() if pending else []
        records, bad_step, bad, i = [], math.inf, "", 0
        for step, keys, _ in pending:
            values = dict(zip(keys, flat[i:i + len(keys)]))
            i += len(keys)
            records.append(values)
            wrong = [f"{k}={v}" for k, v in values.items() if not math.isfinite(v)]
            if wrong and step < bad_step:
                bad_step, bad = step, ", ".join(wrong)
        first, stop = self._agree(bad_step, stop_requested)
        if math.isfinite(first):
            what = bad if first == bad_step else "a term on another process"
            where = f"; last good checkpoint: {self.run_dir / 'checkpoints' / 'last.pt'}" if self.run_dir else ""
            raise NonFiniteLossError(
                f"non-finite loss at step {int(first)}: {what}. Training stopped without saving"
                f"{where}. Try a lower optim.lr, train.amp=none, or check the data.")
        return records, stop

    def _agree(self, bad_step: float, stop: bool) -> tuple[float, bool]:
        """The first bad step over all ranks and whether any rank stops (one all-reduce)."""
        env = self.env
        if env is None or not env.distributed:
            return bad_step, stop
        t = torch.tensor([bad_step, -float(stop)], dtype=torch.float64,
                         device=env.device if env.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        first, neg_stop = t.tolist()
        return first, neg_stop < 0


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
