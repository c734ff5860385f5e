#!/usr/bin/env python
"""GPU readiness check: one command that runs everything worth knowing about fsggan's CUDA
path in a few minutes and writes a summary to paste into docs/results.md, "GPU check".

    pip install -e ".[dev]" && python scripts/gpu_check.py      # from the repository root
    python scripts/gpu_check.py --out gpu_check --budget 420     # the defaults
    python scripts/gpu_check.py --parts throughput,compile --budget 300

Parts, in this order, each in its own process (scripts/gpu_check_parts.py, which this script
runs and never imports) under its own time limit (a failure, a crash or a timeout is recorded
in the table and the check goes on):

  tests       pytest -m cuda: the tests that need a CUDA device
  stage2      Stage I, then Stage II at 128 px with the paper's model (configs/lfw_*.yaml; LFW
              from ../shared/data when there, else drawn faces) under the GPU speed settings of
              fsggan-quickstart --full, occluding on the GPU, resumed once: loss finite and falling
  throughput  Stage I and II steps (fsggan.train.speed) at 128 px, batch 32 and 64: fp32 (IEEE,
              no cudnn.benchmark), + TF32, + cudnn.benchmark, + bf16 autocast, + channels_last:
              images/s, GFLOP per image, MFU against the GPU's bf16 dense peak, peak memory
  synthesis   occlusion synthesis on the GPU, images/s
  recipes     Stage II of the quickstart and CPU-recipe configs (map loss on, EMA) and the tied-trunk
              ablation on the GPU under bf16 autocast, and the quickstart under fp16 with a GradScaler:
              a few steps each, loss finite
  resume      Stage II resumed half-way against the same run uninterrupted: final weights compared
  syncs       torch.cuda.set_sync_debug_mode("warn") over training steps between two log points:
              every host synchronisation inside a step, with where it came from (expected: none)
  ddp         both stages under torchrun over all GPUs (NCCL), when there are two or more
  compile     the throughput rows with torch.compile on top (last: the slowest to start)

Without CUDA (or with --cpu) the CPU-safe parts run at tiny sizes, a smoke test of this script
(tests/test_gpu_check.py), and each other part is one line saying it was skipped and why.
Writes <out>/summary.md, <out>/summary.json and <out>/logs/<part>.log; exit status 1 when a
part failed or ran out of time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("../shared/data")      # relative to the repository root, as the configs name it
PARTS = ("tests", "stage2", "throughput", "synthesis", "recipes", "resume", "syncs", "ddp", "compile")
BUDGET_S = {"tests": 60, "stage2": 80, "throughput": 80, "synthesis": 15, "recipes": 80, "resume": 45, "syncs": 30,
            "ddp": 60, "compile": 50}
PARTS_SCRIPT = Path(__file__).resolve().with_name("gpu_check_parts.py")
CPU_LIMIT_S = 600                    # per part without CUDA (tiny sizes: seconds of CPU time; a busy machine)
# bf16 dense tensor-core peaks, TFLOP/s (vendor data sheets); the first name found in the device name counts
PEAK_BF16_TFLOPS = (("H100 PCIe", 756), ("H100 NVL", 835), ("H200 NVL", 835), ("GH200", 989), ("H200", 989),
                    ("H100", 989), ("A100", 312), ("L40S", 362), ("L40", 181), ("L4", 121), ("RTX 4090", 165),
                    ("RTX 3090", 71))

def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def peak_tflops(name: str) -> float | None:
    return next((float(t) for key, t in PEAK_BF16_TFLOPS if key in name), None)


# Parent: run the parts, write the summary ----------------------------------------------------

def machine(cpu_only: bool) -> dict:
    import torch

    cuda = torch.cuda.is_available() and not cpu_only
    info = {"cuda": cuda, "torch": torch.__version__, "cuda_version": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "cpus": os.cpu_count(), "gpus": 0, "device": "cpu",
            "peak_bf16_tflops": None}
    if cuda:
        p = torch.cuda.get_device_properties(0)
        info.update(gpus=torch.cuda.device_count(), device=p.name, capability=f"sm_{p.major}{p.minor}",
                    memory_gib=round(p.total_memory / 2**30, 1), peak_bf16_tflops=peak_tflops(p.name))
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
        info["commit"] = git.stdout.strip() or "unknown"
    except OSError:
        info["commit"] = "unknown (no git)"
    return info


def skip_reason(part: str, info: dict, args) -> str | None:
    if not info["cuda"]:
        why = "--cpu given" if args.cpu else "no CUDA device (torch.cuda.is_available() is False)"
        if part == "tests":
            return f"{why}: the cuda-marked tests need one"
        if part == "compile":
            return f"{why}: torch.compile is measured on the GPU only"
        if part == "syncs":
            return f"{why}: torch.cuda.set_sync_debug_mode reports CUDA synchronisations only"
        if part == "ddp" and args.ddp_cpu < 2:
            return f"{why}: DDP over NCCL needs two or more GPUs (--ddp-cpu N tries gloo on this CPU)"
    elif part == "ddp" and info["gpus"] < 2:
        return f"{info['gpus']} GPU visible: DDP needs two or more (the gloo path is in tests/test_train.py)"
    return None


def run_part(name: str, cmd: list[str], limit: float, log: Path) -> tuple[str, float]:
    """Run ``cmd`` in its own process group, echoing and logging its output; kill it after
    ``limit`` seconds. Returns (status, seconds)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                cwd=REPO, start_new_session=True)

        def pump():
            for line in proc.stdout:
                f.write(line)
                f.flush()
                say(f"  [{name}] {line.rstrip()}")
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=limit)
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):  # already gone
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            status = f"timed out ({limit:.0f} s)"
        reader.join(timeout=5)
    return status, time.perf_counter() - t0


def pytest_note(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    return lines[-1].strip("= ") if lines else "no pytest summary line"


def last_error(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)  # the configs name their files relative to the repository root
    out = Path(args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    info = machine(args.cpu)
    say(f"gpu_check: {info['device']} x{max(info['gpus'], 1)}, torch {info['torch']}, CUDA {info['cuda_version']}, "
        f"budget {args.budget:.0f} s" + ("" if info["cuda"] else " (no CUDA: tiny CPU parts only)"))
    parts, rows = [], []
    for name in args.parts:
        reason = skip_reason(name, info, args)
        left = args.budget - (time.perf_counter() - t_start)
        limit = min(args.limit.get(name, BUDGET_S[name]), left) if info["cuda"] else CPU_LIMIT_S
        if reason is None and limit < 10:
            reason = f"the check's time budget ({args.budget:.0f} s) is spent"
        if reason:
            say(f"skipped {name}: {reason}")
            parts.append({"part": name, "status": "skipped", "seconds": 0.0, "note": reason})
            continue
        say(f"== {name} (limit {limit:.0f} s)")
        log, row_file = out / "logs" / f"{name}.log", out / "logs" / f"{name}.rows.jsonl"
        row_file.unlink(missing_ok=True)
        if name == "tests":
            cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
        else:
            cmd = [sys.executable, str(PARTS_SCRIPT), "--part", name, "--rows", str(row_file),
                   "--out", str(out), "--deadline", str(time.time() + limit - 5), "--ddp-cpu", str(args.ddp_cpu),
                   "--identity-net", args.identity_net, *(["--cpu"] if args.cpu else [])]
        status, seconds = run_part(name, cmd, limit, log)
        got = [json.loads(ln) for ln in row_file.read_text().splitlines()] if row_file.is_file() else []
        rows += got
        bad = [r for r in got if r.get("status") not in ("ok", "skipped")]
        note = pytest_note(log) if name == "tests" else f"{len(got)} rows"
        if status == "ok" and bad:
            status = "failed"
            note += f", {len(bad)} failed: {bad[0].get('note', '')}"
        elif status.startswith("failed"):
            note += f"; {last_error(log)}"
        parts.append({"part": name, "status": status, "seconds": round(seconds, 1), "note": note})
    summary = {"machine": info, "budget_s": args.budget, "seconds": round(time.perf_counter() - t_start, 1),
               "parts": parts, "rows": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = render(summary)
    (out / "summary.md").write_text(text)
    print(text)
    say(f"gpu_check: {summary['seconds']:.0f} s; summary in {out / 'summary.md'} and summary.json")
    return 0 if all(p["status"] in ("ok", "skipped") for p in parts) else 1


# Summary ---------------------------------------------------------------------------------------

def table(columns: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join("" if v is None else str(v) for v in r) + " |" for r in rows), ""]


def render(s: dict) -> str:
    m, rows = s["machine"], s["rows"]
    peak = m["peak_bf16_tflops"]
    gpu = (f"{m['device']} ({m['capability']}, {m['memory_gib']} GiB) x{m['gpus']}" if m["cuda"] else
           "no GPU (CPU smoke run, tiny sizes)")
    lines = ["# fsggan GPU check", "",
             f"- machine: {gpu}, {m['cpus']} CPUs; torch {m['torch']}, CUDA {m['cuda_version']}, cuDNN {m['cudnn']}",
             f"- bf16 dense peak: {f'{peak:.0f} TFLOP/s' if peak else 'unknown'} (scripts/gpu_check.py table)",
             f"- commit {m['commit']}; {s['seconds']:.0f} s in all " +
             (f"(budget {s['budget_s']:.0f} s)" if m["cuda"] else f"(no budget without CUDA: {CPU_LIMIT_S} s a part)"),
             "",
             "## Parts", ""]
    lines += table(["part", "status", "seconds", "note"],
                   [[p["part"], p["status"], p["seconds"], p["note"]] for p in s["parts"]])
    thr = [r for r in rows if r["table"] == "throughput" and "stage" in r]
    if thr:
        base = {(r["stage"], r["batch"]): r["images_per_sec"] for r in thr if r.get("base") and r.get("images_per_sec")}
        out = []
        for r in sorted(thr, key=lambda r: (r["stage"] != "Stage I", r["batch"], r["order"])):
            ips, gf = r.get("images_per_sec"), r.get("gflop_per_image")
            mfu = f"{100 * ips * gf / (peak * 1e3):.1f} %" if ips and gf and peak else "-"
            ref = base.get((r["stage"], r["batch"]))
            out.append([r["stage"], r["batch"], r["settings"], f"{ips:.1f}" if ips else "-",
                        f"{1e3 * r['batch'] / ips:.1f}" if ips else "-", f"{gf:.1f}" if gf else "-", mfu,
                        r.get("peak_gib", "-"), f"{ips / ref:.2f}" if ips and ref else "-",
                        r["status"] + (f": {r['note']}" if r.get("note") else "")])
        lines += ["## Training throughput", "", thr[0]["caption"], ""]
        lines += table(["stage", "batch", "settings (cumulative)", "images/s", "ms/step", "GFLOP/image", "MFU",
                        "peak GiB", "x first row", "status"], out)
    runs = [r for r in rows if r["table"] == "runs"]
    if runs:
        lines += ["## Training runs", ""]
        lines += table(["run", "status", "steps", "loss first -> last", "images/s", "peak GiB", "seconds", "note"],
                       [[r["run"], r["status"], r.get("steps"), r.get("loss"), r.get("images_per_sec"),
                         r.get("peak_gib", "-"), r.get("seconds"), r.get("note", "")] for r in runs])
    syn = [r for r in rows if r["table"] == "synthesis"]
    if syn:
        lines += ["## Occlusion synthesis (128x128)", ""]
        lines += table(["device", "batch", "images/s", "occluders", "status"],
                       [[r["device"], r["batch"], r.get("images_per_sec"), r["occluders"], r["status"]] for r in syn])
    skipped = [p for p in s["parts"] if p["status"] == "skipped"]
    skipped_rows = [r for r in rows if r.get("status") == "skipped"]
    if skipped or skipped_rows:
        lines += ["## Skipped", ""]
        lines += [f"- {p['part']}: {p['note']}" for p in skipped]
        lines += [f"- {r['table']}, {r['what']}: {r['note']}" for r in skipped_rows]
        lines.append("")
    return "\n".join(lines)


def _limit(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    try:
        return name, float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PART=SECONDS, got {text!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_check", help="output folder (default gpu_check/)")
    p.add_argument("--budget", type=float, default=420.0,
                   help="seconds for all parts together (default 420: with a 1-2 min install, under 10 min)")
    p.add_argument("--parts", type=lambda s: [x for x in s.split(",") if x], default=list(PARTS),
                   help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--limit", type=_limit, action="append", default=[], metavar="PART=SECONDS",
                   help="a part's own time limit (defaults: " + ", ".join(f"{k} {v}" for k, v in BUDGET_S.items())
                   + "); --parts compile --limit compile=300 --budget 300 gives compile more time")
    p.add_argument("--cpu", action="store_true", help="behave as on a machine without CUDA (the tiny CPU parts)")
    p.add_argument("--ddp-cpu", type=int, default=0, metavar="N",
                   help="without CUDA, run the ddp part with N gloo processes (a check of this script)")
    p.add_argument("--identity-net", default="lightcnn29v2", help="F in the throughput part (random weights)")
    args = p.parse_args(argv)
    args.limit = dict(args.limit)
    unknown = [x for x in [*args.parts, *args.limit] if x not in PARTS]
    if unknown:
        p.error(f"unknown part {', '.join(unknown)} (known: {', '.join(PARTS)})")
    return args


if __name__ == "__main__":
    raise SystemExit(main())
