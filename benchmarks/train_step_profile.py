#!/usr/bin/env python
"""What one training step of each stage asks of a GPU, counted on a CPU.

    python -m benchmarks.train_step_profile [--size 128] [--batch 4] [--identity-net mobilefacenet] [--launch-us 10]

For the real step functions (fsggan.train.speed.build_step: Stage I = V; Stage II = V(x), the
G step with L1 + identity + adversarial, the D step), paper widths at ``--size`` px:

- FLOPs per image of each network, forward and backward (``FlopCounterMode``; a multiply-add
  counts 2; the counter nests modules as they are called: D's frozen trunk is V's encoder);
- operators dispatched per step (``torch.profiler`` on the CPU: the aten operators with no
  child operator, less those that only make views or allocate; Adam fused, as training runs it
  on CUDA): on a GPU in eager mode each is about one kernel launch, and the count does not
  depend on the batch size;
- host synchronisations per step (``.item()``, ``.tolist()``, ``bool()``... of a tensor the
  step computed; Adam's step counters are host tensors, not counted);
- the launch-bound floor: operators x ``--launch-us`` (the assumed host time per eager
  operator: Python, dispatcher and ``cudaLaunchKernel``; about 5-10 us on a current CPU), the
  shortest a step can take however fast the GPU, and the images/s cap it sets at batch 32/64;
- the same counts for the step as a CUDA run took it before the hot loop was made lean
  ("before"): Adam's default on CUDA (``foreach``: about a dozen operators per group of
  tensors instead of one fused one) and the step's losses read back to the host every step
  (the non-finite check then ran each step; now it runs at ``train.log_every`` steps).

The FLOPs and operators are counted at ``--batch`` (FLOPs per image do not depend on it).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.overrides import TorchFunctionMode

NO_KERNEL = {"aten::view", "aten::reshape", "aten::_reshape_alias", "aten::as_strided", "aten::empty",
             "aten::empty_strided", "aten::empty_like", "aten::t", "aten::transpose", "aten::permute",
             "aten::expand", "aten::squeeze", "aten::unsqueeze", "aten::select", "aten::slice", "aten::detach",
             "aten::alias", "aten::_unsafe_view", "aten::resize_", "aten::lift_fresh", "aten::result_type",
             "aten::size", "aten::stride", "aten::is_nonzero", "aten::numpy_T", "aten::unbind", "aten::split",
             "aten::chunk", "aten::narrow", "aten::flatten", "aten::view_as", "aten::expand_as", "aten::set_",
             "aten::_local_scalar_dense", "aten::item", "aten::_has_compatible_shallow_copy_type"}
READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.__bool__,
         torch.Tensor.__float__, torch.Tensor.__int__}


class Reads(TorchFunctionMode):
    """Counts reads of tensors back to Python, except torch.optim's own (host step counters)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in READS and "torch/optim" not in sys._getframe(1).f_code.co_filename.replace("\\", "/"):
            self.count += 1
        return func(*args, **(kwargs or {}))


def flops_by_network(step) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return {k: float(sum(v.values())) for k, v in counter.get_flop_counts().items() if "." not in k}


def operators(step) -> tuple[int, int]:
    """(aten operators that launch work, all leaf aten operators) of one call of ``step``.

    A ``_foreach_*`` operator counts once: on CUDA it is one multi-tensor kernel per call (per
    chunk of a long tensor list), where a CPU runs it as a loop of per-tensor operators."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.events() if e.name.startswith("aten::")]

    def in_foreach(e) -> bool:
        p = e.cpu_parent
        while p is not None:
            if p.name.startswith("aten::_foreach_"):
                return True
            p = p.cpu_parent
        return False

    outer = [e for e in events if not in_foreach(e)]
    foreach = [e for e in outer if e.name.startswith("aten::_foreach_")]
    leaves = [e for e in outer if not e.name.startswith("aten::_foreach_") and not any(
        c.name.startswith("aten::") for c in e.cpu_children)]
    return sum(e.name not in NO_KERNEL for e in leaves) + len(foreach), len(leaves) + len(foreach)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4, help="batch the counts run at")
    p.add_argument("--identity-net", default="mobilefacenet", help="F of Stage II (random weights)")
    p.add_argument("--launch-us", type=float, default=10.0, help="assumed host time per eager operator, us")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from fsggan.train import speed
    from fsggan.train.runtime import Env
    from fsggan.train.speed import StepSpec, build_step

    env = Env()
    print(f"{args.size} px, paper widths, counted at batch {args.batch} on a CPU, one thread; "
          f"launch floor at {args.launch_us:g} us per operator")
    for stage, name in (("vae", "Stage I"), ("gan", "Stage II")):
        spec = StepSpec(stage, batch_size=args.batch, image_size=args.size,
                        identity_net=args.identity_net if stage == "gan" else None)
        for when in ("before", "now"):
            _as_on_cuda(speed, when)
            step = _step_as(build_step(spec, env), when)
            t0 = time.perf_counter()
            step()  # warm-up: lazy initialisation, optimiser state
            seconds = time.perf_counter() - t0
            launched, leaves = operators(step)
            with Reads() as reads:
                step()
            floor_ms = launched * args.launch_us / 1e3
            if when == "now":
                flops = flops_by_network(step)
                total = flops.pop("Global", sum(flops.values()))
                print(f"\n{name}: {total / args.batch / 1e9:.1f} GFLOP per image (forward + backward), "
                      f"{seconds:.1f} s per step here")
                for net, f in sorted(flops.items(), key=lambda kv: -kv[1]):
                    print(f"  {net:28s} {f / args.batch / 1e9:7.2f} GFLOP per image (as the counter attributes it)")
            print(f"  {when:6s} operators per step: {launched} that launch work ({leaves} leaf aten operators); "
                  f"host synchronisations per step: {reads.count}; launch-bound floor {floor_ms:.1f} ms "
                  f"-> at most {32 / floor_ms * 1e3:,.0f} images/s at batch 32, {64 / floor_ms * 1e3:,.0f} at 64")


def _as_on_cuda(speed, when: str):
    """Make :func:`fsggan.train.speed.build_step` use Adam as a CUDA run does ``now`` (fused: one
    kernel per parameter group) or did ``before`` the hot loop was made lean (torch's CUDA
    default, ``foreach``). On a CPU training keeps the per-tensor loop, which a GPU run never
    launches."""
    speed.adam = lambda params, device, **kw: torch.optim.Adam(params, fused=when == "now",
                                                                foreach=True if when == "before" else None, **kw)


def _step_as(step, when: str):
    """``step`` as it runs ``now``, or followed by a read-back of its losses as ``before`` (the
    non-finite check then ran every step; now it runs at ``train.log_every`` steps)."""
    if when == "now":
        return step

    def reading_back():
        losses = step()
        torch.stack([v.float() for v in losses.values()]).tolist()
    return reading_back


if __name__ == "__main__":
    main()
