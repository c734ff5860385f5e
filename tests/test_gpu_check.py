"""scripts/gpu_check.py, the GPU readiness check: it parses, its summary renders the rows a
GPU gives, a part that fails or hangs is recorded, and its CPU path runs end to end (tiny
sizes; each CUDA part skipped with one line saying why)."""

from __future__ import annotations

import argparse
import importlib
import json
import runpy
import sys
import time

import pytest
from helpers.files import REPO

SCRIPTS = REPO / "scripts"


@pytest.fixture(scope="module")
def gpu_check():
    return runpy.run_path(str(SCRIPTS / "gpu_check.py"))


def test_arguments_and_known_peaks(gpu_check):
    parse, peak = gpu_check["parse_args"], gpu_check["peak_tflops"]
    args = parse([])
    assert args.parts == list(gpu_check["PARTS"]) and args.budget == 420 and args.limit == {}
    assert sum(gpu_check["BUDGET_S"][p] for p in args.parts if p != "ddp") <= args.budget + 30
    assert parse(["--parts", "compile", "--limit", "compile=300"]).limit == {"compile": 300.0}
    for bad in (["--parts", "tests,bogus"], ["--limit", "compile"], ["--limit", "gpu=3"]):
        with pytest.raises(SystemExit):
            parse(bad)
    assert peak("NVIDIA H200") == peak("NVIDIA H100 80GB HBM3") == 989
    assert (peak("NVIDIA H100 PCIe"), peak("NVIDIA A100-SXM4-80GB"), peak("NVIDIA L4"), peak("NVIDIA L40S")) == \
        (756, 312, 121, 362)
    assert peak("NVIDIA GeForce RTX 4090") == 165 and peak("Tesla T4") is None


def throughput_row(batch, settings, order, ips, **kw):
    return {"table": "throughput", "stage": "Stage II", "batch": batch, "settings": settings, "order": order,
            "base": order == 0, "caption": "caption", "gflop_per_image": 60.0, "images_per_sec": ips,
            "status": "ok", "peak_gib": 20.5, "what": f"Stage II batch {batch} {settings}", **kw}


def test_summary_renders_gpu_rows(gpu_check):
    machine = {"cuda": True, "device": "NVIDIA H200", "capability": "sm_90", "memory_gib": 139.8, "gpus": 1,
               "cpus": 16, "torch": "2.14.1", "cuda_version": "13.0", "cudnn": 91000, "peak_bf16_tflops": 989.0,
               "commit": "abc1234"}
    rows = [throughput_row(64, "+ bf16 autocast", 3, 2000.0), throughput_row(64, "fp32 (IEEE)", 0, 1000.0),
            throughput_row(64, "+ torch.compile", 5, None, status="fail", note="BackendCompilerFailed: x"),
            throughput_row(32, "+ torch.compile", 5, None, status="skipped", note="the part's time limit"),
            {"table": "runs", "run": "Stage II resumed", "status": "ok", "steps": 100, "loss": "g/total 9 -> 8",
             "images_per_sec": "900.0", "peak_gib": 12.0, "seconds": 20.1, "note": "from step 200 to 300"},
            {"table": "synthesis", "device": "NVIDIA H200", "batch": 256, "images_per_sec": "50000",
             "occluders": "40 procedural", "status": "ok"}]
    parts = [{"part": "tests", "status": "ok", "seconds": 30.0, "note": "9 passed in 25.0s"},
             {"part": "ddp", "status": "skipped", "seconds": 0.0, "note": "1 GPU visible: DDP needs two or more"}]
    text = gpu_check["render"]({"machine": machine, "budget_s": 330, "seconds": 300.0, "parts": parts, "rows": rows})
    assert "NVIDIA H200 (sm_90, 139.8 GiB) x1" in text and "bf16 dense peak: 989 TFLOP/s" in text
    # images/s x GFLOP/image / peak: 2000 x 60 GFLOP/s = 120 TFLOP/s = 12.1 % of 989; 32 ms per step of 64
    assert "| Stage II | 64 | + bf16 autocast | 2000.0 | 32.0 | 60.0 | 12.1 % | 20.5 | 2.00 | ok |" in text
    assert "| Stage II | 64 | fp32 (IEEE) | 1000.0 | 64.0 | 60.0 | 6.1 % | 20.5 | 1.00 | ok |" in text
    assert "| - | - | 60.0 | - | 20.5 | - | fail: BackendCompilerFailed: x |" in text
    assert text.index("fp32 (IEEE)") < text.index("+ bf16 autocast")  # the ladder's order
    assert "| Stage II resumed | ok | 100 | g/total 9 -> 8 | 900.0 |" in text
    assert "| NVIDIA H200 | 256 | 50000 |" in text
    assert "- ddp: 1 GPU visible: DDP needs two or more" in text
    assert "- throughput, Stage II batch 32 + torch.compile: the part's time limit" in text


def test_a_failing_or_hanging_part_is_recorded(gpu_check, tmp_path):
    run_part = gpu_check["run_part"]
    status, _ = run_part("x", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], 60, tmp_path / "x.log")
    assert status == "failed (exit 3)" and "boom" in (tmp_path / "x.log").read_text()
    t0 = time.perf_counter()
    status, _ = run_part("y", [sys.executable, "-c", "import time; time.sleep(60)"], 1, tmp_path / "y.log")
    assert status == "timed out (1 s)" and time.perf_counter() - t0 < 20


def test_throughput_rows_stop_at_the_part_deadline(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    parts = importlib.import_module("gpu_check_parts")
    args = argparse.Namespace(cpu=True, out=str(tmp_path), rows=str(tmp_path / "rows.jsonl"), deadline=time.time(),
                              ddp_cpu=0, identity_net="none")
    parts._ladder(parts.Ctx(args), "compile", (parts.COMPILED,), [("gan", 64)])
    (row,) = [json.loads(ln) for ln in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert row["status"] == "skipped" and "--parts compile --limit compile=300" in row["note"]


def test_cpu_path_end_to_end(gpu_check, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # main() works from the repository root; restored afterwards
    t0 = time.perf_counter()
    assert gpu_check["main"](["--cpu", "--out", str(tmp_path / "gc")]) == 0
    seconds = time.perf_counter() - t0
    summary = json.loads((tmp_path / "gc" / "summary.json").read_text())
    status = {p["part"]: p["status"] for p in summary["parts"]}
    assert status == {"tests": "skipped", "stage2": "ok", "throughput": "ok", "synthesis": "ok", "recipes": "ok",
                      "resume": "ok", "syncs": "skipped", "ddp": "skipped", "compile": "skipped"}
    assert seconds < 300
    err = capsys.readouterr().err
    for part in ("tests", "syncs", "ddp", "compile"):  # one line each, saying why
        (line,) = [ln for ln in err.splitlines() if ln.startswith(f"skipped {part}: ")]
        assert "--cpu given" in line
    runs = {r["run"]: r for r in summary["rows"] if r["table"] == "runs"}
    assert all(r["status"] in ("ok", "skipped") for r in runs.values()), runs
    assert runs["Stage II resumed"]["note"] == "from step 8 to 12"
    assert {r["run"] for r in runs.values() if r["status"] == "skipped"} == {"configs/cpu/quickstart_gan.yaml, fp16"}
    (resumed,) = [r for name, r in runs.items() if name.startswith("Stage II resumed at step")]
    assert resumed["note"] == "bitwise equal"
    assert "configs/cpu/gan128.yaml (CPU, float32)" in runs  # the map loss at 128 px
    md_skipped = (tmp_path / "gc" / "summary.md").read_text().split("## Skipped")[1]
    for what in ("tests", "syncs", "ddp", "compile", "configs/cpu/quickstart_gan.yaml, fp16"):  # every CUDA part
        assert what in md_skipped
    thr = [r for r in summary["rows"] if r["table"] == "throughput" and r["status"] == "ok"]
    assert {r["stage"] for r in thr} == {"Stage I", "Stage II"} and all(r["images_per_sec"] > 0 for r in thr)
    md = (tmp_path / "gc" / "summary.md").read_text()
    assert "## Training throughput" in md and "## Training runs" in md and "## Skipped" in md
    print(f"\ngpu_check CPU path: {seconds:.1f} s")


def test_gpu_sized_runs_load_as_configs(monkeypatch, tmp_path):
    """The overrides the stage2 and ddp parts give configs/lfw_*.yaml on a GPU (checked here
    as configs only: the runs themselves need the GPU)."""
    import torch

    from fsggan.config import load_config
    from fsggan.train.config import TrainGANConfig, TrainVAEConfig

    monkeypatch.syspath_prepend(str(SCRIPTS))
    parts = importlib.import_module("gpu_check_parts")
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    ctx = parts.Ctx(argparse.Namespace(cpu=False, out=str(tmp_path), rows=str(tmp_path / "rows.jsonl"),
                                       deadline=float("inf"), ddp_cpu=0, identity_net="lightcnn29v2"))
    assert (ctx.device, ctx.tiny) == ("cuda", False)
    vae = load_config(TrainVAEConfig, "configs/lfw_vae.yaml", parts._overrides(ctx, "vae", tmp_path / "v", 150, 32))
    gan = load_config(TrainGANConfig, "configs/lfw_gan.yaml",
                      parts._overrides(ctx, "gan", tmp_path / "g", 200, 32, tmp_path / "v" / "last.pt"))
    for cfg in (vae, gan):
        t = cfg.train
        assert (t.device, t.amp, t.channels_last, t.cudnn_benchmark, t.tf32, t.batch_size) == \
            ("cuda", "bf16", True, True, True, 32)
        assert cfg.vae.image_size == 128 and cfg.data.dataset.image_size == 128 and cfg.data.num_workers >= 1
    assert (gan.generator.base_channels, gan.discriminator.head_channels, gan.data.occlude_on) == (64, 64, "device")
    assert gan.loss.identity == (50.0 if (REPO / parts.LFW_WEIGHTS).is_file() else 0.0)
    for config, amp in parts.RECIPES:  # the recipes part: each config on the GPU under its amp
        cfg = load_config(TrainGANConfig, config, [*parts._overrides(ctx, "gan", tmp_path / "r", 30, 32, tmp_path / "v.pt"),
                                                   "gan.init_generator=null", f"train.amp={amp}"])
        assert (cfg.train.device, cfg.train.amp, cfg.vae.image_size) == ("cuda", amp, 128)
    assert {c for c, _ in parts.RECIPES if "map_bce" in (REPO / c).read_text()} >= {
        "configs/cpu/quickstart_gan.yaml", "configs/cpu/gan.yaml", "configs/cpu/gan128.yaml"}


def test_neither_script_imports_the_other():
    """gpu_check.py runs gpu_check_parts.py as a child process; the parts script is standalone."""
    import ast

    for name, other in (("gpu_check.py", "gpu_check_parts"), ("gpu_check_parts.py", "gpu_check")):
        tree = ast.parse((SCRIPTS / name).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert other not in imported, f"{name} imports {other}"


def test_syncs_part_reports_each_synchronisation(monkeypatch, tmp_path):
    """The syncs part's bookkeeping, without a GPU: what torch's sync debug mode warns about in
    the steps is counted and named in the row, and the training code is left as it was."""
    import torch

    from fsggan.train import gan, monitor

    monkeypatch.syspath_prepend(str(SCRIPTS))
    parts = importlib.import_module("gpu_check_parts")
    modes = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def steps(*args, **kwargs):  # what a synchronising step makes torch say
        import warnings

        warnings.warn("called a synchronizing CUDA operation", UserWarning)

    monkeypatch.setattr(parts, "_gan_run", steps)
    before = monitor.Monitor.due, gan.device_batches
    ctx = parts.Ctx(argparse.Namespace(cpu=True, out=str(tmp_path), rows=str(tmp_path / "rows.jsonl"),
                                       deadline=float("inf"), ddp_cpu=0, identity_net="none"))
    parts.part_syncs(ctx)
    (row,) = [json.loads(ln) for ln in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert row["status"] == "fail" and row["note"].startswith("1: ") and "test_gpu_check.py" in row["note"]
    assert (monitor.Monitor.due, gan.device_batches) == before and modes[-1] == 0
