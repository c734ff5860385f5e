"""Where and how a training process runs: devices and DDP, the optimiser and its
learning-rate schedule, mixed precision, and the bf16 capability of the CPU.

* :func:`setup_env` (DDP when launched by ``torchrun``; the device from
  :func:`train_device`, a thin wrapper of :func:`fsggan.device.resolve_device`; on CUDA the
  speed settings of :func:`set_cuda_backends`) -> :class:`Env`; :func:`teardown_env`;
* :func:`gpu_speed_settings`: bf16 autocast + channels_last where the GPU has bf16;
* :func:`wrap_model` (channels_last, SyncBatchNorm, DDP, torch.compile), :func:`compiled`, :func:`to_device`;
* :func:`adam` (fused on CUDA), :func:`lr_factor` / :func:`set_lr` (linear warm-up, then
  constant or cosine decay; beyond the paper, whose configs keep it off);
* :func:`autocast` / :func:`make_scaler` (``train.amp``: none | bf16 | fp16);
* :class:`StopSignal` (Ctrl-C / SIGTERM: finish the step, checkpoint, exit).

Seeds and RNG states (what a checkpoint holds) are :mod:`fsggan.train.state`'s; step speed
is :mod:`fsggan.train.speed`'s.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import subprocess
import sys
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from fsggan.device import resolve_device

__all__ = ["TrainingError", "Env", "setup_env", "teardown_env", "set_cuda_backends", "gpu_speed_settings",
           "wrap_model", "unused_parameters", "cuda_index", "adam", "autocast", "make_scaler", "to_device",
           "lr_factor", "set_lr", "train_device", "StopSignal"]


class TrainingError(RuntimeError):
    """A problem found at start (missing files, inconsistent settings); the message says what to do."""


# Processes and devices --------------------------------------------------------------

@dataclass
class Env:
    """Where this process runs: its DDP rank among ``world_size`` and its device."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def __enter__(self) -> Env:
        return self

    def __exit__(self, *exc) -> bool:
        """Leave the process group (``with setup_env(...) as env:``)."""
        teardown_env(self)
        return False

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (no communication when alone)."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Average a tensor over ranks."""
        if not self.distributed:
            return values
        t = values.to(self.device if self.device.type == "cuda" else "cpu").clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.world_size


def setup_env(device: str = "auto", *, cudnn_benchmark: bool = True, tf32: bool = True) -> Env:
    """Pick the device (:func:`train_device`) and join the process group when launched by
    ``torchrun`` (``WORLD_SIZE`` > 1: NCCL on CUDA, gloo on the CPU). On CUDA,
    ``cudnn_benchmark`` and ``tf32`` (``train.cudnn_benchmark``, ``train.tf32``) are applied
    with :func:`set_cuda_backends`; on a CPU nothing is changed.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = train_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        set_cuda_backends(cudnn_benchmark=cudnn_benchmark, tf32=tf32)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Env(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def train_device(device: str, local_rank: int = 0) -> torch.device:
    """``train.device`` ("auto", "cuda" or "cpu") as :func:`fsggan.device.resolve_device`
    reads every device option (a TrainingError naming the key where it cannot), and a CUDA
    device made this process's own GPU (:func:`cuda_index` of ``local_rank``)."""
    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise TrainingError(f"train.{exc}") from None
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", cuda_index(local_rank))
    return dev


def cuda_index(local_rank: int) -> int:
    """The GPU of the process with ``LOCAL_RANK`` = ``local_rank``: that index when this process
    sees one GPU per local process (torchrun on a whole machine), 0 when it sees a single GPU
    (schedulers that give each process its own ``CUDA_VISIBLE_DEVICES``)."""
    count = torch.cuda.device_count()
    if count == 1:
        return 0
    if local_rank < count:
        return local_rank
    raise TrainingError(f"LOCAL_RANK={local_rank} but this process sees {count} GPUs: start at most {count} "
                        f"processes per machine (torchrun --nproc_per_node {count})")


def adam(params, *, lr: float, betas, weight_decay: float, device: torch.device) -> torch.optim.Adam:
    """Adam with its fastest update for ``device``: on CUDA one fused kernel for all parameter
    tensors (``fused=True``; the per-tensor loop launches about a dozen kernels per tensor, the
    ``foreach`` path a dozen per group of tensors); elsewhere torch's default (the per-tensor
    loop on a CPU, so CPU runs and their checkpoints stay what they were)."""
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay,
                            fused=True if device.type == "cuda" else None)


def lr_factor(step: int, total: int, warmup_steps: int = 0, decay: str = "none", min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate for optimisation step ``step`` (0-based) of ``total``.
    Stateless - the rate is a function of the step - so a resumed run follows exactly the same
    schedule."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "none":
        return 1.0
    if decay != "cosine":
        raise ValueError(f"decay must be 'none' or 'cosine', got {decay!r}")
    span = max(total - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def teardown_env(env: Env) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def set_cuda_backends(*, cudnn_benchmark: bool, tf32: bool) -> None:
    """The process-wide CUDA speed settings of a training run (``train.cudnn_benchmark``, ``train.tf32``).

    cudnn_benchmark: cuDNN times the algorithms of each new convolution shape once and keeps
        the fastest; training batches all have one size (the incomplete last batch is
        dropped), so only the first steps (and validation's first batch) pay for it.
    tf32: float32 matmuls and convolutions may use TF32 tensor cores (Ampere or newer: inputs
        rounded to a 10-bit mantissa, float32 accumulation); off is strict IEEE float32.
        Set with the calls whose state both of torch's readers agree on
        (``torch.set_float32_matmul_precision`` and ``cudnn.allow_tf32``): setting the newer
        ``fp32_precision`` attributes makes the older getters, which torch.compile still
        reads, raise.
    """
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32


def gpu_speed_settings(device: str = "auto") -> dict:
    """``train`` settings that speed up training on this machine's GPU: bf16 autocast and
    channels_last where ``device`` resolves to a CUDA GPU with native bf16 (compute
    capability 8.0 or newer: A100, H100/H200, L4, RTX 30xx/40xx), else none ({}).
    For configs that leave them to the machine (``fsggan-quickstart --full``);
    ``scripts/gpu_check.py`` measures each of them."""
    try:
        use_cuda = resolve_device(device).type == "cuda"
    except ValueError:  # "cuda" on a machine without it: nothing to speed up
        return {}
    if use_cuda and torch.cuda.is_bf16_supported(including_emulation=False):
        return {"amp": "bf16", "channels_last": True}
    return {}


def wrap_model(model: nn.Module, env: Env, *, channels_last: bool = False, sync_bn: bool = False,
               compile: bool = False, find_unused: bool = False) -> nn.Module:
    """Move ``model`` to the device and return the module the training step should call.

    channels_last: NHWC memory format (faster convolutions on recent GPUs with AMP).
    sync_bn: under DDP on CUDA, BatchNorm statistics over the global batch
        (SyncBatchNorm); otherwise each process normalises over its own share and DDP
        copies rank 0's running statistics to the others at every forward.
    compile: torch.compile the forward.
    find_unused: some trainable parameters get no gradient in a step (a tied or copied D trunk
        whose deepest level has no head): DDP must look for them, or it waits for their
        gradients forever (:func:`unused_parameters` finds them).
    The caller keeps ``model`` itself for state dicts (the wrapper's keys are prefixed).
    """
    model.to(env.device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if sync_bn and env.distributed and env.device.type == "cuda":
        # convert_sync_batchnorm replaces modules in place under the parent and keeps the
        # Parameter objects, so weight tying (tied D trunk) survives
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    wrapped = model
    if env.distributed and any(p.requires_grad for p in model.parameters()):
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None,
            find_unused_parameters=find_unused)
    return compiled(wrapped, compile)


def compiled(module, on: bool):
    """``torch.compile(module)`` when ``on`` (``train.compile``), else ``module`` itself: the one
    place that decides what a training step runs compiled (``None`` passes through)."""
    return torch.compile(module) if on and module is not None else module


def unused_parameters(model: nn.Module, score) -> list[str]:
    """Names of ``model``'s trainable parameters that the scalar ``score(model)`` does not
    depend on, found with one probe that leaves training as it was: eval mode (BatchNorm
    statistics untouched) and ``autograd.grad`` (no ``.grad`` written)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        return []
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            grads = torch.autograd.grad(score(model), [p for _, p in named], allow_unused=True)
    finally:
        model.train(was_training)
    return [n for (n, _), g in zip(named, grads) if g is None]


_BF16_PROBE = ("import torch\n"
               "c = torch.nn.Conv2d(8, 8, 3, padding=1)\n"
               "with torch.autocast('cpu', dtype=torch.bfloat16):\n"
               "    y = c(torch.randn(2, 8, 16, 16, requires_grad=True))\n"
               "y.float().sum().backward()\n")


def fast_cpu_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic instructions (AVX512-BF16 or AMX-BF16). oneDNN also
    runs bf16 on plain AVX-512 (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` says yes there)
    and on AVX2, but emulated, and slower than float32: on a 2-core AVX-512 Xeon without BF16
    the quickstart's Stage II took 36 s per 50 steps in bf16 against 14 s in float32
    (docs/experiments.md, "bf16 that is emulated"); on a 2-core AVX2 EPYC it ran at 4
    images/s in bf16."""
    caps = cpu_capability()
    if caps is None:  # torch without the capability query: oneDNN's answer
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def cpu_capability() -> dict | None:
    """The CPU's instruction-set flags as torch reads them (``avx512_bf16``, ``amx_bf16``, ...),
    or None where this torch build does not expose them."""
    query = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    try:
        return dict(query()) if query is not None else None
    except (RuntimeError, TypeError):
        return None


@functools.lru_cache(maxsize=None)
def cpu_bf16_usable() -> bool:
    """Whether bf16 convolutions run on this CPU, tried once in a child process.

    oneDNN picks AMX kernels when the CPU reports AMX; on machines whose kernel does not
    enable AMX (some VMs) the process dies with "Illegal instruction". Then the child is
    retried with ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``; if that works the variable is set
    in this process too (before its first convolution), else bf16 is not used.
    """
    def probe(env: dict) -> bool:
        try:
            return subprocess.run([sys.executable, "-c", _BF16_PROBE], env=env, capture_output=True,
                                  timeout=120).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    if not fast_cpu_bf16():
        warnings.warn("train.amp=bf16: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 would "
                      "be emulated and slower; training in float32 instead", stacklevel=3)
        return False
    if probe(dict(os.environ)):
        return True
    if "ONEDNN_MAX_CPU_ISA" not in os.environ and probe({**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}):
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_BF16"
        warnings.warn("bf16 on this CPU needs ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 (AMX kernels crash here); "
                      "set it for this run", stacklevel=3)
        return True
    warnings.warn("train.amp=bf16: bf16 convolutions crash on this CPU; training in float32 instead",
                  stacklevel=3)
    return False


def autocast(env: Env, amp: str):
    """Mixed precision context for the forward passes: amp is none | bf16 | fp16.
    On CPU, bf16 falls back to float32 where it cannot run (:func:`cpu_bf16_usable`)."""
    if amp == "none" or (amp == "bf16" and env.device.type == "cpu" and not cpu_bf16_usable()):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=env.device.type, dtype=dtype)


def make_scaler(env: Env, amp: str) -> torch.amp.GradScaler:
    """A GradScaler, enabled for fp16 only (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(env.device.type, enabled=amp == "fp16")


def to_device(batch: dict, env: Env, channels_last: bool = False) -> dict:
    """Move the tensors of a batch dict to the device (non-blocking from pinned memory)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(env.device, non_blocking=True)
            out[k] = v.contiguous(memory_format=fmt) if v.dim() == 4 else v
        else:
            out[k] = v
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
