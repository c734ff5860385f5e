#!/usr/bin/env python
"""The parts of scripts/gpu_check.py, each run by it in a child process of its own
(``gpu_check_parts.py --part NAME --rows FILE --out DIR --deadline T``): every result is a
JSON row appended to the ``--rows`` file as soon as it is known, so a part killed at its time
limit keeps what it measured. Neither script imports the other.

On CUDA the sizes are the real ones (128 px, default widths, batch 32 / 64); without CUDA
they are tiny (32 px, widths of 4, a few steps): a smoke test of the script, not figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import runpy
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("../shared/data")      # relative to the repository root, as the configs name it
LFW_WEIGHTS = SHARED / "weights" / "mobilefacenet_casia_068.ckpt"
# the cumulative ladder of the throughput part: label, tf32, cudnn.benchmark, amp, channels_last, compile
LADDER = (("fp32 (IEEE, no cudnn.benchmark)", False, False, "none", False, False),
          ("+ TF32", True, False, "none", False, False),
          ("+ cudnn.benchmark", True, True, "none", False, False),
          ("+ bf16 autocast", True, True, "bf16", False, False),
          ("+ channels_last", True, True, "bf16", True, False))
COMPILED = ("+ torch.compile", True, True, "bf16", True, True)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Ctx:
    """What a part needs: the device, tiny sizes or real ones, where to write, its deadline."""

    def __init__(self, args):
        self.cuda = torch.cuda.is_available() and not args.cpu
        self.device = "cuda" if self.cuda else "cpu"
        self.tiny = not self.cuda
        self.out, self.rows, self.deadline = Path(args.out), Path(args.rows), args.deadline
        self.ddp_cpu, self.identity_net = args.ddp_cpu, args.identity_net

    def emit(self, table: str, **row) -> None:
        with open(self.rows, "a") as f:
            f.write(json.dumps({"table": table, **row}) + "\n")
        if row.get("status") == "skipped":
            say(f"skipped {table}, {row['what']}: {row['note']}")

    def left(self) -> float:
        return self.deadline - time.time()


def run_child(args) -> int:
    warnings.filterwarnings("ignore", message="OccludedFaces: .* no landmarks")  # LFW, drawn faces: expected
    if torch.cuda.is_available() and not args.cpu:
        torch.cuda.init()
    else:
        torch.set_num_threads(1)  # tiny sizes: threads only add contention
    ctx = Ctx(args)
    {"stage2": part_stage2, "throughput": part_throughput, "compile": part_compile, "synthesis": part_synthesis,
     "ddp": part_ddp, "recipes": part_recipes, "resume": part_resume, "syncs": part_syncs}[args.part](ctx)
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="one part of scripts/gpu_check.py (which runs this script)")
    p.add_argument("--part", required=True)
    p.add_argument("--rows", required=True, help="JSON rows are appended to this file")
    p.add_argument("--out", required=True, help="the check's output folder")
    p.add_argument("--deadline", type=float, default=float("inf"), help="time.time() when the part must be done")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--ddp-cpu", type=int, default=0)
    p.add_argument("--identity-net", default="lightcnn29v2")
    return p.parse_args(argv)


def _error(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "out of memory", "out of GPU memory"
    return "fail", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _peak_gib(ctx: Ctx) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if ctx.cuda else None


def _reset_peak(ctx: Ctx) -> None:
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats()


# Throughput and compile ----------------------------------------------------------------------

def part_throughput(ctx: Ctx) -> None:
    if ctx.tiny:
        ctx.emit("throughput", status="skipped", what="TF32, cudnn.benchmark, bf16, channels_last; 128 px, batch 32/64",
                 note="GPU settings and sizes: this CPU runs the fp32 row at 32 px, batch 2")
        _ladder(ctx, "throughput", LADDER[:1], [("vae", 2), ("gan", 2)])
    else:
        _ladder(ctx, "throughput", LADDER, [(stage, b) for stage in ("vae", "gan") for b in (32, 64)])


def part_compile(ctx: Ctx) -> None:
    _ladder(ctx, "compile", (COMPILED,), [("gan", 64), ("vae", 64), ("gan", 32), ("vae", 32)], order=len(LADDER))


def _ladder(ctx: Ctx, part: str, ladder, groups, order: int = 0) -> None:
    """One throughput row per (stage, batch) of ``groups`` and setting of ``ladder``."""
    from fsggan.train.runtime import Env, set_cuda_backends
    from fsggan.train.speed import StepSpec, build_step, flops_per_step, seconds_per_step

    env = Env(device=torch.device(ctx.device))
    sizes = (dict(image_size=32, vae_width=4, gen_width=4, head_width=4, identity_net=None) if ctx.tiny else
             dict(image_size=128, identity_net=ctx.identity_net))
    ident = sizes["identity_net"] or "none"
    caption = (f"Real training steps on random batches (fsggan.train.speed), {sizes['image_size']}x"
               f"{sizes['image_size']}: Stage I = V; Stage II = V(x), G step (L1, identity with {ident} "
               f"(random weights), adversarial) and D step. Settings are cumulative down each group; "
               f"MFU = images/s x GFLOP/image / bf16 dense peak; 'x first row' = speed-up over the group's first row.")
    names = {"vae": "Stage I", "gan": "Stage II"}
    flops: dict[str, float | None] = {}

    def gflop_per_image(stage: str) -> float | None:
        """Counted once per stage, in fp32 at batch 2 (FLOPs per image do not depend on the settings)."""
        if stage not in flops:
            flops[stage] = None
            try:
                flops[stage] = flops_per_step(build_step(StepSpec(stage, batch_size=2, **sizes), env)) / 2 / 1e9
            except Exception as exc:  # noqa: BLE001 - said, the rows still run
                say(f"FLOP count of {stage} failed: {_error(exc)[1]}")
            _free()
        return flops[stage]

    worst = 0.0
    for stage, batch in groups:
        for i, (label, tf32, bench, amp, cl, compiled) in enumerate(ladder):
            row = dict(stage=names[stage], batch=batch, settings=label, order=order + i, base=order + i == 0,
                       caption=caption, what=f"{names[stage]} batch {batch} {label}")
            if ctx.left() < 1.3 * worst + 3:
                ctx.emit("throughput", **row, status="skipped", note=f"the part's time limit (more time: "
                         f"--parts {part} --limit {part}=300 --budget 300)")
                continue
            t0 = time.perf_counter()
            row["gflop_per_image"] = gflop_per_image(stage)
            try:
                if ctx.cuda:
                    set_cuda_backends(cudnn_benchmark=bench, tf32=tf32)
                    if compiled:
                        from torch import _dynamo

                        _dynamo.reset()  # each batch size compiled for its own static shapes
                _reset_peak(ctx)
                spec = StepSpec(stage, batch_size=batch, amp=amp, channels_last=cl, compile=compiled, **sizes)
                step = build_step(spec, env)
                w0 = time.perf_counter()
                for _ in range(3 if ctx.cuda else 1):  # compilation, cuDNN's algorithm search
                    step()
                warm = time.perf_counter() - w0
                sec = seconds_per_step(step, env, warmup=0, steps=5 if ctx.cuda else 2,
                                       min_seconds=1.0 if ctx.cuda else 0.0)
                ctx.emit("throughput", **row, status="ok", images_per_sec=batch / sec, peak_gib=_peak_gib(ctx),
                         note=f"compiled in {warm:.0f} s" if compiled else "")
            except Exception as exc:  # noqa: BLE001 - one failing configuration does not stop the others
                status, note = _error(exc)
                ctx.emit("throughput", **row, status=status, note=note)
            finally:
                step = None
                _free()
            worst = max(worst, time.perf_counter() - t0)
            say(f"{names[stage]} batch {batch} {label}: {time.perf_counter() - t0:.1f} s")


# Training runs: Stage I + Stage II resumed, and DDP -----------------------------------------

def _faces(root: Path, size: int, identities: int, per_identity: int) -> None:
    """Drawn faces (a face-sized ellipse on a gradient) in the plain-folder layout, when no LFW."""
    from PIL import Image

    if root.is_dir():
        return
    tmp = root.with_name(root.name + ".tmp")  # renamed when complete: a killed part leaves no half folder
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for p in range(identities):
        (tmp / f"id{p:03d}").mkdir(parents=True)
        base = rng.uniform(0.3, 0.7, 3)
        for i in range(per_identity):
            img = base + 0.2 * np.stack([xx - 0.5, yy - 0.5, xx * yy], -1) + 0.03 * rng.standard_normal((size, size, 3))
            img[((xx - 0.5) / 0.22) ** 2 + ((yy - 0.52) / 0.3) ** 2 < 1] *= 0.8
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(tmp / f"id{p:03d}" / f"{i}.png")
    tmp.rename(root)


def _data(ctx: Ctx) -> tuple[list[str], str]:
    """Data overrides of configs/lfw_*.yaml and what they are: LFW and the real occluders of
    ../shared/data on a GPU when they are there, else drawn faces and procedural occluders."""
    if not ctx.tiny and (SHARED / "lfw").is_dir() and (SHARED / "occluders").is_dir():
        return [], "LFW, real occluders"
    size = 32 if ctx.tiny else 128
    faces = ctx.out / "data" / f"faces{size}"
    _faces(faces, size, 12 if ctx.tiny else 40, 6 if ctx.tiny else 10)
    cfg = {"name": "drawn", "dataset": {"kind": "folder", "root": str(faces), "image_size": size,
                                        "landmarks": "template"},
           "split": {"seed": 0, "test_fraction": 0.2, "val_fraction": 0.25},
           "occluders": {"canvas_size": size, "supersample": 1 if ctx.tiny else 2}}
    path = ctx.out / "data" / f"drawn{size}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return [f"data.config={path}"], "drawn faces, procedural occluders (no LFW in ../shared/data)"


def _overrides(ctx: Ctx, stage: str, run_dir: Path, steps: int, batch: int, vae_ckpt: Path | None = None) -> list[str]:
    from fsggan.train.runtime import gpu_speed_settings

    o = [f"train.device={ctx.device}", "train.progress=false", f"train.steps={steps}", f"train.batch_size={batch}",
         f"train.run_dir={run_dir}", f"train.log_every={1 if ctx.tiny else 10}", "train.sample_every=0",
         "train.val_every=0", "train.ckpt_every=0", "train.snapshot_every=0",
         f"data.val_images={4 if ctx.tiny else 64}",
         f"data.num_workers={0 if ctx.tiny else min(8, os.cpu_count() or 1)}",
         *(f"train.{k}={str(v).lower()}" for k, v in gpu_speed_settings(ctx.device).items()), *_data(ctx)[0]]
    if ctx.tiny:
        o += ["vae.base_channels=4", "vae.latent_dim=8", "vae.image_size=32", "optim.lr=1.0e-3"]
    if stage == "gan":
        o += [f"gan.vae_checkpoint={vae_ckpt}", f"data.occlude_on={'device' if ctx.cuda else 'workers'}"]
        if ctx.tiny:
            o += ["generator.base_channels=4", "discriminator.head_channels=4"]
        if ctx.tiny or not LFW_WEIGHTS.is_file():
            o += ["loss.identity=0"]
    return o


def _stats(run_dir: Path, key: str, after: int = 0) -> tuple[list[float], list[float]]:
    """(values of ``key``, images/s) of the stats.jsonl records after step ``after``."""
    recs = [json.loads(ln) for ln in (run_dir / "stats.jsonl").read_text().splitlines() if ln.strip()]
    recs = [r for r in recs if r["step"] > after and key in r]
    return [float(r[key]) for r in recs], [float(r["speed/images_per_sec"]) for r in recs[1:]]


def _run_row(ctx: Ctx, name: str, run_dir: Path, key: str, steps: int, seconds: float | None, after: int = 0,
             note: str = "", falling: bool = True, peak: bool = True) -> bool:
    values, speed = _stats(run_dir, key, after)
    row = dict(run=name, steps=steps, images_per_sec=f"{np.mean(speed):.1f}" if speed else "-",
               peak_gib=_peak_gib(ctx) if peak else None, seconds=None if seconds is None else round(seconds, 1))
    if not values:
        ctx.emit("runs", **row, status="fail", note=f"no {key} records after step {after} in stats.jsonl; {note}")
        return False
    k = max(1, len(values) // 4)
    first, last = float(np.mean(values[:k])), float(np.mean(values[-k:]))
    problem = "not finite" if not np.isfinite(values).all() else "not falling" if falling and last >= first else ""
    ctx.emit("runs", **row, status="fail" if problem else "ok", loss=f"{key} {first:.3g} -> {last:.3g}",
             note=f"{problem}; {note}" if problem else note)
    return not problem


def _settings(t, ctx: Ctx) -> str:
    cuda = f", cudnn_benchmark {t.cudnn_benchmark}, tf32 {t.tf32}" if ctx.cuda else ""
    return f"amp {t.amp}, channels_last {t.channels_last}{cuda}"


def part_stage2(ctx: Ctx) -> None:
    from fsggan.config import load_config
    from fsggan.train.config import TrainGANConfig, TrainVAEConfig
    from fsggan.train.gan import train_gan
    from fsggan.train.vae import train_vae

    work = ctx.out / "stage2"
    shutil.rmtree(work, ignore_errors=True)
    s1, s2, s3, batch = (4, 8, 12, 4) if ctx.tiny else (150, 200, 300, 32)
    data_note = _data(ctx)[1]

    def timed(fn, cfg, resume=None):
        _reset_peak(ctx)
        t0 = time.perf_counter()
        result = fn(**vars(cfg), resume=resume)
        return result, time.perf_counter() - t0

    cfg = load_config(TrainVAEConfig, "configs/lfw_vae.yaml", _overrides(ctx, "vae", work / "vae", s1, batch))
    _, sec = timed(train_vae, cfg)
    _run_row(ctx, "Stage I (configs/lfw_vae.yaml)", work / "vae", "loss/total", s1, sec,
             note=f"{data_note}; {_settings(cfg.train, ctx)}")
    ckpt = work / "vae" / "checkpoints" / "last.pt"
    o = _overrides(ctx, "gan", work / "gan", s2, batch, ckpt)
    cfg = load_config(TrainGANConfig, "configs/lfw_gan.yaml", o)
    _, sec = timed(train_gan, cfg)
    ident = (f"identity {cfg.loss.identity_net}" if cfg.loss.identity else "identity term off" +
             ("" if ctx.tiny else f" (no MobileFaceNet weights at {LFW_WEIGHTS})"))
    _run_row(ctx, "Stage II (configs/lfw_gan.yaml)", work / "gan", "g/total", s2, sec,
             note=f"paper's G and D, {ident}; occlude_on {cfg.data.occlude_on}")
    cfg = load_config(TrainGANConfig, "configs/lfw_gan.yaml", [*o, f"train.steps={s3}"])
    result, sec = timed(train_gan, cfg, resume=str(work / "gan" / "checkpoints" / "last.pt"))
    _run_row(ctx, "Stage II resumed", work / "gan", "g/total", s3 - s2, sec, after=s2, falling=False,
             note=f"from step {s2} to {result['step']}" + ("" if result["step"] == s3 else f" (expected {s3})"))
    # the whole Stage II curve, both segments: falling from its start
    _run_row(ctx, "Stage II, all steps", work / "gan", "g/total", s3, None, note="first vs last quarter of the records")


def part_ddp(ctx: Ctx) -> None:
    n = torch.cuda.device_count() if ctx.cuda else ctx.ddp_cpu
    work = ctx.out / "ddp"
    shutil.rmtree(work, ignore_errors=True)
    steps, batch = (4, 2 * n) if ctx.tiny else (60, 32 * n)
    ckpt = work / "vae" / "checkpoints" / "last.pt"
    for stage, config in (("vae", "configs/lfw_vae.yaml"), ("gan", "configs/lfw_gan.yaml")):
        o = _overrides(ctx, stage, work / stage, steps, batch, ckpt)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
               "-m", f"fsggan.cli.train_{stage}", "--config", config, *(x for v in o for x in ("--set", v))]
        t0 = time.perf_counter()
        quiet = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), "ignore:OccludedFaces"]))  # as run_child
        rc = subprocess.run(cmd, cwd=REPO, timeout=max(ctx.left(), 10),
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": quiet}).returncode
        name = (f"DDP {'Stage I' if stage == 'vae' else 'Stage II'}, "
                f"{n} {'GPUs (NCCL)' if ctx.cuda else 'CPU processes (gloo)'}")
        if rc != 0:
            ctx.emit("runs", run=name, status="fail", steps=steps, seconds=round(time.perf_counter() - t0, 1),
                     note=f"torchrun exit {rc} (log: logs/ddp.log)")
            return
        _run_row(ctx, name, work / stage, "loss/total" if stage == "vae" else "g/total", steps,
                 time.perf_counter() - t0, falling=False, peak=False, note=f"global batch {batch}")


# Recipes, resume, synchronisations -------------------------------------------------------------

# (config, amp on CUDA): the map loss (quickstart, CPU recipe at 64 and 128 px) under bf16, the EMA
# (quickstart), the tied trunk, and fp16 with its GradScaler
RECIPES = (("configs/cpu/quickstart_gan.yaml", "bf16"), ("configs/cpu/gan.yaml", "bf16"),
           ("configs/cpu/gan128.yaml", "bf16"), ("configs/ablations/trunk_tied.yaml", "bf16"),
           ("configs/cpu/quickstart_gan.yaml", "fp16"))


def _v_checkpoint(ctx: Ctx) -> Path:
    """A Stage I checkpoint for the Stage II parts: the stage2 part's when it ran, else a short run."""
    from fsggan.config import load_config
    from fsggan.train.config import TrainVAEConfig
    from fsggan.train.vae import train_vae

    done = ctx.out / "stage2" / "vae" / "checkpoints" / "last.pt"
    if done.is_file():
        return done
    run = ctx.out / "v_for_checks"
    if not (run / "checkpoints" / "last.pt").is_file():
        shutil.rmtree(run, ignore_errors=True)
        steps, batch = (2, 4) if ctx.tiny else (40, 32)
        train_vae(**vars(load_config(TrainVAEConfig, "configs/lfw_vae.yaml", _overrides(ctx, "vae", run, steps, batch))))
    return run / "checkpoints" / "last.pt"


def _gan_run(ctx: Ctx, config: str, run_dir: Path, steps: int, batch: int, extra=(), resume: Path | None = None):
    """Stage II of ``config`` at the check's sizes: (config, seconds)."""
    from fsggan.config import load_config
    from fsggan.train.config import TrainGANConfig
    from fsggan.train.gan import train_gan

    o = [*_overrides(ctx, "gan", run_dir, steps, batch, _v_checkpoint(ctx)), "gan.init_generator=null",
         *([] if ctx.cuda else ["train.amp=none", "train.channels_last=false"]), *extra]
    cfg = load_config(TrainGANConfig, config, o)
    _reset_peak(ctx)
    t0 = time.perf_counter()
    train_gan(**vars(cfg), resume=None if resume is None else str(resume))
    return cfg, time.perf_counter() - t0


def part_recipes(ctx: Ctx) -> None:
    steps, batch = (3, 4) if ctx.tiny else (30, 32)
    for config, amp in RECIPES:
        what = f"{config}, {amp}"
        if not ctx.cuda and amp == "fp16":
            ctx.emit("runs", run=what, what=what, status="skipped", note="fp16 with a GradScaler: CUDA only")
            continue
        if ctx.left() < 20:
            ctx.emit("runs", run=what, what=what, status="skipped", note="the part's time limit")
            continue
        run_dir = ctx.out / "recipes" / f"{Path(config).stem}_{amp}"
        shutil.rmtree(run_dir, ignore_errors=True)
        try:
            cfg, sec = _gan_run(ctx, config, run_dir, steps, batch, [f"train.amp={amp}"] if ctx.cuda else [])
            _run_row(ctx, what if ctx.cuda else f"{config} (CPU, float32)", run_dir, "g/total", steps, sec,
                     falling=False, note=f"map_bce {cfg.loss.map_bce:g}, ema {cfg.train.ema:g}, trunk "
                     f"{cfg.discriminator.trunk_mode}; {_settings(cfg.train, ctx)}")
        except Exception as exc:  # noqa: BLE001 - one failing recipe does not stop the others
            ctx.emit("runs", run=what, what=what, status=_error(exc)[0], note=_error(exc)[1])
        _free()


def _weights(run_dir: Path) -> dict:
    from fsggan.checkpoint import load_checkpoint

    models = load_checkpoint(run_dir / "checkpoints" / "last.pt")["models"]
    return {f"{m}.{k}": t.double() for m, sd in models.items() for k, t in sd.items() if t.is_floating_point()}


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def part_resume(ctx: Ctx) -> None:
    """The quickstart's Stage II uninterrupted (twice: the floor of the GPU's own non-determinism)
    and stopped half-way then resumed: the final weights compared."""
    config, (steps, batch) = "configs/cpu/quickstart_gan.yaml", ((6, 4) if ctx.tiny else (40, 32))
    work = ctx.out / "resume"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    _gan_run(ctx, config, work / "a", steps, batch)
    _gan_run(ctx, config, work / "b", steps // 2, batch)
    _gan_run(ctx, config, work / "b", steps, batch, resume=work / "b" / "checkpoints" / "last.pt")
    resumed = _max_diff(_weights(work / "a"), _weights(work / "b"))
    row = dict(run=f"Stage II resumed at step {steps // 2} vs uninterrupted ({config})", steps=steps)
    if resumed == 0.0:
        ctx.emit("runs", **row, status="ok", note="bitwise equal", seconds=round(time.perf_counter() - t0, 1))
        return
    _gan_run(ctx, config, work / "a2", steps, batch)
    floor = _max_diff(_weights(work / "a"), _weights(work / "a2"))
    ok = ctx.cuda and resumed <= 10 * floor
    ctx.emit("runs", **row, status="ok" if ok else "fail", seconds=round(time.perf_counter() - t0, 1),
             note=f"max |weight difference| {resumed:.3g}; two uninterrupted runs differ by {floor:.3g} "
                  f"(non-deterministic kernels)")


def part_syncs(ctx: Ctx) -> None:
    """Training steps under ``torch.cuda.set_sync_debug_mode("warn")`` between two log points
    (the housekeeping of log steps, which reads the losses back, is left out): every host
    synchronisation inside a step, with the fsggan line it came from."""
    import traceback
    import warnings as w

    from fsggan.train import gan, monitor

    found: dict[str, int] = {}
    original_due, original_batches = monitor.Monitor.due, gan.device_batches

    def due(self, *args, **kwargs):  # what follows a step starts here: it reads the losses back
        torch.cuda.set_sync_debug_mode(0)
        return original_due(self, *args, **kwargs)

    def batches(*args, **kwargs):  # a step starts with its batch
        stream, done = iter(original_batches(*args, **kwargs)), 0
        while True:
            if done >= 2:  # after the first two steps (cuDNN's algorithm search, lazy initialisation)
                torch.cuda.set_sync_debug_mode("warn")
            yield next(stream)
            done += 1

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            where = [f"{Path(f.filename).name}:{f.lineno}" for f in traceback.extract_stack() if "fsggan" in f.filename]
            key = where[-1] if where else f"{filename}:{lineno}"
            found[key] = found.get(key, 0) + 1

    steps, batch = 12, 32
    monitor.Monitor.due, gan.device_batches = due, batches
    shown = w.showwarning
    try:
        with w.catch_warnings():
            w.simplefilter("always")
            w.showwarning = record
            _gan_run(ctx, "configs/cpu/quickstart_gan.yaml", ctx.out / "syncs", steps, batch,
                     ["train.log_every=6", "train.ema=0.99", "data.occlude_on=workers"])
    finally:
        torch.cuda.set_sync_debug_mode(0)
        monitor.Monitor.due, gan.device_batches = original_due, original_batches
        w.showwarning = shown
    n = sum(found.values())
    ctx.emit("runs", run="host syncs inside Stage II steps (set_sync_debug_mode warn)", steps=steps - 2,
             status="ok" if n == 0 else "fail",
             note="none" if n == 0 else f"{n}: " + ", ".join(f"{k} x{v}" for k, v in sorted(found.items())))


# Occlusion synthesis -------------------------------------------------------------------------

def part_synthesis(ctx: Ctx) -> None:
    from fsggan.data import OccluderLibrary, OcclusionSynthesizer, procedural_occluders

    bench = runpy.run_path(str(REPO / "benchmarks" / "occlusion_throughput.py"))["bench"]
    synth = OcclusionSynthesizer(OccluderLibrary(procedural_occluders(count=40, seed=0)), image_size=128)
    runs = [("cuda", 64, 2.0), ("cuda", 256, 2.0)] if ctx.cuda else [("cpu", 8, 0.5)]
    for device, batch, seconds in runs:
        name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu, 1 thread"
        try:
            rate = bench(synth, device, batch, seconds)
            ctx.emit("synthesis", device=name, batch=batch, images_per_sec=f"{rate:.0f}",
                     occluders="40 procedural", status="ok")
        except Exception as exc:  # noqa: BLE001
            ctx.emit("synthesis", device=name, batch=batch, occluders="40 procedural", status=_error(exc)[0],
                     note=_error(exc)[1])


if __name__ == "__main__":
    raise SystemExit(run_child(parse_args()))
