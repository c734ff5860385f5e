"""Starting and resuming training safely: a damaged checkpoint is one line (exit 2, no
traceback, nothing written), a resume validates before it writes, only some keys may
change on resume, a complete run is left alone, a failed start leaves no run directory,
and a save killed half-way (SIGKILL) leaves neither a stale temp file nor duplicate
``stats.jsonl`` records once the run is resumed.

Same tiny setting as tests/test_train.py (tests/helpers/training.py: 32 px synthetic faces, widths of 4, CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fsggan.checkpoint import load_checkpoint, remove_stale_temps, save_checkpoint
from fsggan.cli import train_gan as gan_cli
from fsggan.cli import train_vae as vae_cli
from fsggan.train import vae
from fsggan.train.monitor import Monitor
from fsggan.train.state import RESUMABLE_KEYS
from helpers.checkpoints import KINDS, copy_with_misfit_weights, damage
from helpers.cli import one_line
from helpers.files import REPO, snapshot
from helpers.training import TRAIN, same_state, vae_config

pytestmark = pytest.mark.usefixtures("one_thread")
EXPECT_VAE = ("expected an fsggan Stage I (VAE) training checkpoint, as fsggan-train-vae writes "
              "(checkpoints/last.pt)")
EXPECT_GAN = ("expected an fsggan Stage II (GAN) training checkpoint, as fsggan-train-gan writes "
              "(checkpoints/last.pt)")


@pytest.mark.parametrize("where", ["file", "run dir"])
@pytest.mark.parametrize("kind", KINDS)
def test_vae_resume_damaged_checkpoint_is_one_line(kind, where, stage1, stage2, tmp_path, capsys):
    run = Path(shutil.copytree(stage1.parents[1], tmp_path / "run"))
    last = run / "checkpoints" / "last.pt"
    what = damage(last, kind, stage1.parent / "last.pt", stage2 / "checkpoints" / "last.pt")
    before = snapshot(run)
    assert vae_cli.main(["--resume", str(last if where == "file" else run)]) == 2
    err = capsys.readouterr().err
    assert err == f"fsggan-train-vae: error: {last}: {what}; {EXPECT_VAE}\n"
    assert snapshot(run) == before  # nothing in the run directory changed


@pytest.mark.parametrize("kind", ["truncated", "text", "forbidden global", "wrong stage (Stage I)"])
def test_gan_resume_damaged_checkpoint_is_one_line(kind, stage1, stage2, tmp_path, capsys):
    run = Path(shutil.copytree(stage2, tmp_path / "run"))
    last = run / "checkpoints" / "last.pt"
    if kind.startswith("wrong stage"):
        shutil.copy(stage1.parent / "last.pt", last)
        what = "a Stage I (VAE) checkpoint (models: vae)"
    else:
        what = damage(last, kind, stage2 / "checkpoints" / "last.pt", last)
    before = snapshot(run)
    assert gan_cli.main(["--resume", str(run)]) == 2
    assert capsys.readouterr().err == f"fsggan-train-gan: error: {last}: {what}; {EXPECT_GAN}\n"
    assert snapshot(run) == before


def test_mapped_checkpoint_reads_as_the_loaded_one(stage1):
    # the command line maps a checkpoint (mmap) to read its config before a resume
    read = load_checkpoint(stage1.parent / "last.pt", stage="vae", resumable=True)
    mapped = load_checkpoint(stage1.parent / "last.pt", stage="vae", resumable=True, mmap=True)
    assert mapped["config"] == read["config"] and mapped["step"] == read["step"]
    assert mapped["models"]["vae"].keys() == read["models"]["vae"].keys()
    assert all(torch.equal(mapped["models"]["vae"][k], v) for k, v in read["models"]["vae"].items())


def test_resume_weights_that_do_not_fit_the_config(stage1, tmp_path, capsys):
    run = copy_with_misfit_weights(stage1, tmp_path)
    last = run / "checkpoints" / "last.pt"
    before = snapshot(run)
    assert vae_cli.main(["--resume", str(run), "--set", "train.steps=5"]) == 2
    assert capsys.readouterr().err == (
        f"fsggan-train-vae: error: {last}: the stored 'vae' weights do not fit the VAE built from the config: "
        "130 shape(s) differ, 0 tensor(s) missing, 0 unexpected (first: encoder.body.stem.0.weight is "
        "(4, 3, 3, 3) in the file, (8, 3, 3, 3) in the model)\n")
    assert snapshot(run) == before


def test_resume_refuses_unsafe_overrides_and_changes_nothing(stage1, tmp_path, capsys):
    run = Path(shutil.copytree(stage1.parents[1], tmp_path / "run"))
    last = run / "checkpoints" / "last.pt"
    before = snapshot(run)
    assert vae_cli.main(["--resume", str(run), "--set", "vae.base_channels=16", "--set", "optim.lr=0.5",
                         "--set", "train.steps=10"]) == 2
    assert capsys.readouterr().err == (
        f"fsggan-train-vae: error: cannot resume {last} with a changed optim.lr (0.001 in the checkpoint, 0.5 now), "
        f"vae.base_channels (4 in the checkpoint, 16 now): only {', '.join(RESUMABLE_KEYS)} may change on resume; "
        "start a new run (another --run-dir) to change the others\n")
    assert snapshot(run) == before  # config.yaml still says base_channels 4


@pytest.mark.parametrize("steps", [3, 2])
def test_resume_of_a_complete_run_says_so_and_writes_nothing(steps, stage1, tmp_path, capsys):
    run = Path(shutil.copytree(stage1.parents[1], tmp_path / "run"))
    before = snapshot(run)
    assert vae_cli.main(["--resume", str(run), "--set", f"train.steps={steps}"]) == 0
    assert capsys.readouterr().err == (
        f"{run / 'checkpoints' / 'last.pt'} is already at step 3 of train.steps={steps}: nothing to train, "
        "nothing written (to continue, raise it: --set train.steps=N with N > 3)\n")
    assert snapshot(run) == before


def test_failed_start_leaves_no_run_directory(data_config, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["--config", str(REPO / "configs" / "tiny_cpu_vae.yaml"), "--run-dir", str(run),
            "--set", f"data.config={data_config}", "--set", f"data.dataset.root={tmp_path / 'no_faces'}",
            "--set", "train.device=cpu", "--set", "data.num_workers=0"]
    assert vae_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fsggan-train-vae: error: ") and err.count("\n") == 1 and "no_faces" in err
    assert not run.exists()


def test_gan_vae_checkpoint_that_is_not_stage1(data_config, stage2, tmp_path, capsys):
    base = ["--config", str(REPO / "configs" / "tiny_cpu_gan.yaml"), "--run-dir", str(tmp_path / "run"),
            "--set", f"data.config={data_config}", "--set", "loss.identity=0", "--set", "train.device=cpu"]
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    stage2 = stage2 / "checkpoints" / "last.pt"
    expected = "expected an fsggan Stage I (VAE) checkpoint, as fsggan-train-vae writes"
    for path, what in [(text, "a text file, not a PyTorch checkpoint"),
                       (stage2, "a Stage II (GAN) checkpoint (models: discriminator, generator, vae)")]:
        assert gan_cli.main([*base, "--set", f"gan.vae_checkpoint={path}"]) == 2
        assert capsys.readouterr().err == f"fsggan-train-gan: error: gan.vae_checkpoint: {path}: {what}; {expected}\n"
    assert gan_cli.main([*base, "--set", f"gan.vae_checkpoint={tmp_path / 'none.pt'}"]) == 2
    assert "no Stage I checkpoint at" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# Saving: temp files of killed saves, stats.jsonl after a resume ------------------------------

def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_save_removes_temp_files_of_killed_saves_only(tmp_path):
    stale = tmp_path / f".last.pt.tmp{dead_pid()}"
    alive = tmp_path / f".last.pt.tmp{os.getppid()}"  # a running process: maybe saving right now
    other = tmp_path / "notes.tmp123"
    for p in (stale, alive, other):
        p.write_bytes(b"half a checkpoint")
    save_checkpoint(tmp_path / "best.pt", {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["best.pt", alive.name, other.name])
    assert remove_stale_temps(tmp_path) == []


KILL_SCRIPT = """
import os, signal, sys, torch
torch.set_num_threads(1)
from fsggan.config import load_config
from fsggan.train import vae
from fsggan.train.config import TrainVAEConfig

real_replace = os.replace
def replace(src, dst):  # SIGKILL in the middle of saving last.pt at step 6: written, not yet renamed
    if str(dst).endswith("last.pt") and torch.load(src, weights_only=True)["step"] == 6:
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
os.replace = replace
vae.train_vae(**vars(load_config(TrainVAEConfig, None, sys.argv[1:])))
"""


def test_kill_during_save_then_resume(data_config, tmp_path, monkeypatch):
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    run, ref = tmp_path / "run", tmp_path / "ref"
    overrides = ["vae.base_channels=4", "vae.latent_dim=8", "vae.image_size=32", f"data.config={data_config}",
                 f"train.run_dir={run}", *TRAIN]
    proc = subprocess.Popen([sys.executable, str(script), *overrides], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -9, err[-2000:]
    ckpts = run / "checkpoints"
    temps = [p.name for p in ckpts.iterdir() if ".tmp" in p.name]
    assert temps == [f".last.pt.tmp{proc.pid}"]
    assert load_checkpoint(ckpts / "last.pt")["step"] == 3  # the previous last.pt, whole

    def steps(path):
        return [(r["step"], "val/structure_psnr" in r) for r in map(json.loads, path.read_text().splitlines())]

    assert steps(run / "stats.jsonl") == [(2, False), (3, True), (4, False), (6, False), (6, True)]

    # resume: the temp file is gone before the first step, and no step is logged twice
    seen = []
    original = Monitor.__init__

    def spy(self, **kwargs):
        seen.append(sorted(p.name for p in ckpts.iterdir()))
        original(self, **kwargs)

    monkeypatch.setattr(Monitor, "__init__", spy)
    assert vae_cli.main(["--resume", str(run)]) == 0
    assert seen == [["best.pt", "last.pt"]]
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.pt", "last.pt"]
    assert steps(run / "stats.jsonl") == [(2, False), (3, True), (4, False), (6, False), (6, True)]
    # and the run ends where an uninterrupted one does
    vae.train_vae(**vars(vae_config(data_config, ref)))
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (ref, run))
    assert b["step"] == 6 and same_state(a["models"], b["models"]) and same_state(a["optimizers"], b["optimizers"])


# Run folders that travel and never collide ------------------------------------------------

VAE_SMALL = ["vae.base_channels=4", "vae.latent_dim=8", "vae.image_size=32"]


def start_relative_run(data_config: Path, run: str, steps: int) -> None:
    """A Stage I run started from the data folder with RELATIVE paths (data YAML, faces, run)."""
    (data_config.parent / "empty.yaml").write_text("{}\n")  # every setting below, as tests/helpers/training.py's
    assert vae_cli.main(["--config", "empty.yaml", "--run-dir", run, "--set", "data.config=tiny_data.yaml",
                         "--set", "data.dataset.root=faces", *(f"--set={o}" for o in [*VAE_SMALL, *TRAIN]),
                         "--set", f"train.steps={steps}"]) == 0


def test_copied_run_resumes_elsewhere_from_another_directory(data_config, tmp_path, monkeypatch, capsys):
    home = data_config.parent
    monkeypatch.chdir(home)
    start_relative_run(data_config, "runs/r18", 3)
    start_relative_run(data_config, "runs/r18_ref", 6)  # the uninterrupted run to compare with
    original = home / "runs" / "r18"
    before = snapshot(original)
    assert "runs/r18" in (original / "config.yaml").read_text()  # paths as they were given
    moved = Path(shutil.copytree(original, tmp_path / "elsewhere" / "moved", symlinks=True))
    monkeypatch.chdir(tmp_path)  # outside the folder the run started from: relative paths no longer resolve here
    assert vae_cli.main(["--resume", str(moved), "--set", "train.steps=6"]) == 0, capsys.readouterr().err
    assert snapshot(original) == before  # the original is byte-identical
    a = load_checkpoint(home / "runs" / "r18_ref" / "checkpoints" / "last.pt")
    b = load_checkpoint(moved / "checkpoints" / "last.pt")
    assert b["step"] == 6 and same_state(a["models"], b["models"]) and same_state(a["optimizers"], b["optimizers"])
    assert b["origin"] == str(home)  # the data config and faces were read relative to where it started
    assert "train.run_dir" not in str(b["config"]["train"]["run_dir"])
    assert b["config"]["train"]["run_dir"] == str(moved)


def test_gan_copy_resumes_into_itself_only(stage2, tmp_path, monkeypatch):
    before = snapshot(stage2)
    moved = Path(shutil.copytree(stage2, tmp_path / "gan_moved"))
    monkeypatch.chdir(tmp_path)
    assert gan_cli.main(["--resume", str(moved), "--set", "train.steps=3"]) == 0
    assert snapshot(stage2) == before
    assert load_checkpoint(moved / "checkpoints" / "last.pt")["step"] == 3
    assert len((moved / "stats.jsonl").read_text().splitlines()) >= len((stage2 / "stats.jsonl").read_text()
                                                                        .splitlines())


def test_resume_into_another_runs_folder_is_refused(stage2, stage1, tmp_path, capsys):
    gan = Path(shutil.copytree(stage2, tmp_path / "gan"))
    vae = Path(shutil.copytree(stage1.parents[1], tmp_path / "vae"))
    before = snapshot(vae), snapshot(gan)
    assert gan_cli.main(["--resume", str(gan), "--run-dir", str(vae), "--set", "train.steps=3"]) == 2
    msg = one_line(capsys.readouterr().err, "fsggan-train-gan")
    assert msg.startswith(f"{vae} holds another run ({vae / 'checkpoints' / 'last.pt'}); resume "
                          f"{gan / 'checkpoints' / 'last.pt'} in its own folder ({gan})")
    assert (snapshot(vae), snapshot(gan)) == before
    # a new folder is fine: the run forks there, the original stays as it was
    assert gan_cli.main(["--resume", str(gan), "--run-dir", str(tmp_path / "fork"), "--set", "train.steps=3"]) == 0
    assert snapshot(gan) == before[1] and load_checkpoint(tmp_path / "fork")["step"] == 3


def test_complete_run_whose_weights_do_not_fit_its_config(stage1, tmp_path, capsys):
    run = copy_with_misfit_weights(stage1, tmp_path)
    last = run / "checkpoints" / "last.pt"
    before = snapshot(run)
    assert vae_cli.main(["--resume", str(run)]) == 2  # step 3 of 3: complete, yet checked
    msg = one_line(capsys.readouterr().err, "fsggan-train-vae")
    assert msg.startswith(f"{last}: the stored 'vae' weights do not fit the VAE built from the config")
    assert snapshot(run) == before
