"""Reliability, case by case: a run folder can be moved and never overwrites another, and every
bad value is a one-line error (exit status 2) before anything is written.

Cases 1-3 and 10: run folders that travel (resume writes into the folder given, reads the
data config stored in the checkpoint, works from any working directory, refuses another
run's folder, checks a complete run's weights). Cases 4-7: one-line errors at start (output
paths, devices, config files, model values). Cases 8-12: nothing silently wrong (one image
reader, nothing scored is a failure, API edge cases, model and set sizes).

Same tiny setting as tests/test_train.py (32 px synthetic faces, widths of 4, CPU).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsggan.checkpoint import load_checkpoint
from fsggan.cli import train_gan as gan_cli
from fsggan.cli import train_vae as vae_cli
from fsggan.cli.deocclude import main as deocclude_main
from fsggan.cli.evaluate import main as eval_main
from fsggan.images import read_rgb
from fsggan.pipeline import FSGGAN
from test_eval import copy_as_predictions, make_prepared_set
from test_pipeline import runs  # noqa: F401 (fixture)
from test_resume import copy_with_misfit_weights, gan_run, snapshot  # noqa: F401 (fixture)
from conftest import REPO
from test_train import TRAIN, data_config, same_state, stage1  # noqa: F401 (fixtures)

ROOT = REPO
pytestmark = pytest.mark.usefixtures("one_thread")
TINY_GAN = str(ROOT / "configs" / "tiny_cpu_gan.yaml")


def one_line(err: str, prog: str) -> str:
    assert err.startswith(f"{prog}: error: ") and err.count("\n") == 1, err
    return err[len(f"{prog}: error: "):-1]


# Run folders that travel and never collide ------------------------------------------------

VAE_SMALL = ["vae.base_channels=4", "vae.latent_dim=8", "vae.image_size=32"]
SHORT = ["train.steps=2", "train.batch_size=4", "train.progress=false", "data.num_workers=0", "data.val_images=4",
         "train.num_samples=2", "generator.base_channels=4", "discriminator.head_channels=4"]


def start_relative_run(data_config: Path, run: str, steps: int) -> None:  # noqa: F811
    """A Stage I run started from the data folder with RELATIVE paths (data YAML, faces, run)."""
    (data_config.parent / "empty.yaml").write_text("{}\n")  # every setting below, as tests/test_train.py's
    assert vae_cli.main(["--config", "empty.yaml", "--run-dir", run, "--set", "data.config=tiny_data.yaml",
                         "--set", "data.dataset.root=faces", *(f"--set={o}" for o in [*VAE_SMALL, *TRAIN]),
                         "--set", f"train.steps={steps}"]) == 0


def test_case01_03_copied_run_resumes_elsewhere_from_another_directory(data_config, tmp_path,  # noqa: F811
                                                                       monkeypatch, capsys):
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
    assert snapshot(original) == before  # case 1: the original is byte-identical
    a = load_checkpoint(home / "runs" / "r18_ref" / "checkpoints" / "last.pt")
    b = load_checkpoint(moved / "checkpoints" / "last.pt")
    assert b["step"] == 6 and same_state(a["models"], b["models"]) and same_state(a["optimizers"], b["optimizers"])
    assert b["origin"] == str(home)  # case 3: the data config and faces were read relative to where it started
    assert "train.run_dir" not in str(b["config"]["train"]["run_dir"])
    assert b["config"]["train"]["run_dir"] == str(moved)


def test_case01_gan_copy_resumes_into_itself_only(gan_run, tmp_path, monkeypatch):  # noqa: F811
    before = snapshot(gan_run)
    moved = Path(shutil.copytree(gan_run, tmp_path / "gan_moved"))
    monkeypatch.chdir(tmp_path)
    assert gan_cli.main(["--resume", str(moved), "--set", "train.steps=3"]) == 0
    assert snapshot(gan_run) == before
    assert load_checkpoint(moved / "checkpoints" / "last.pt")["step"] == 3
    assert len((moved / "stats.jsonl").read_text().splitlines()) >= len((gan_run / "stats.jsonl").read_text()
                                                                        .splitlines())


def test_case02_resume_into_another_runs_folder_is_refused(gan_run, stage1, tmp_path, capsys):  # noqa: F811
    gan = Path(shutil.copytree(gan_run, tmp_path / "gan"))
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


def test_case10_complete_run_whose_weights_do_not_fit_its_config(stage1, tmp_path, capsys):  # noqa: F811
    run = copy_with_misfit_weights(stage1, tmp_path)
    last = run / "checkpoints" / "last.pt"
    before = snapshot(run)
    assert vae_cli.main(["--resume", str(run)]) == 2  # step 3 of 3: complete, yet checked
    msg = one_line(capsys.readouterr().err, "fsggan-train-vae")
    assert msg.startswith(f"{last}: the stored 'vae' weights do not fit the VAE built from the config")
    assert snapshot(run) == before


# One-line errors before anything is written -------------------------------------------------

def test_case04_out_that_is_a_file(runs, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "taken.txt"
    out.write_text("not a folder\n")
    faces = tmp_path / "in"
    faces.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(faces / "a.png")
    assert deocclude_main([str(faces), "--gan", str(runs["gan_run"]), "--out", str(out), "--device", "cpu"]) == 2
    assert one_line(capsys.readouterr().err, "fsggan-deocclude") == (
        f"--out {out}: a file, not a folder; give a folder (new or existing)")
    prepared = make_prepared_set(tmp_path / "set1-toy", n_ids=2, per_id=2, repeats=1)
    assert eval_main([str(prepared), "--gan", str(runs["gan_run"]), "--out", str(out), "--workers", "0",
                      "--no-progress", "--device", "cpu"]) == 2
    assert one_line(capsys.readouterr().err, "fsggan-eval") == (
        f"--out {out}: a file, not a folder; give a folder (new or existing)")
    assert eval_main([str(prepared), "--gan", str(runs["gan_run"]), "--save-predictions", str(out / "sub"),
                      "--workers", "0", "--no-progress"]) == 2
    assert "is a file, so no folder can be made there" in capsys.readouterr().err
    assert out.read_text() == "not a folder\n"


@pytest.mark.parametrize("device", ["tpu", "cuda", "cuda:7", "cpu:x"])
def test_case05_devices(device, runs, tmp_path, capsys):  # noqa: F811
    if device.startswith("cuda") and torch.cuda.is_available() and (
            device == "cuda" or torch.cuda.device_count() > 7):
        pytest.skip("this machine has that CUDA device")
    out = tmp_path / "out"
    assert deocclude_main([str(tmp_path), "--gan", str(runs["gan_run"]), "--out", str(out), "--device", device]) == 2
    msg = one_line(capsys.readouterr().err, "fsggan-deocclude")
    assert msg.startswith(f"--device {device!r}: ") and not out.exists()
    prepared = make_prepared_set(tmp_path / "set1-toy", n_ids=2, per_id=2, repeats=1)
    assert eval_main([str(prepared), "--gan", str(runs["gan_run"]), "--device", device, "--workers", "0"]) == 2
    assert one_line(capsys.readouterr().err, "fsggan-eval") == msg
    with pytest.raises(ValueError, match=f"^device {device!r}: "):
        FSGGAN.from_checkpoints(gan=runs["gan_run"], device=device)


@pytest.mark.parametrize("content, expected", [
    (b"\xff\xfe", "not UTF-8 text (byte 0xff at offset 0); save it as UTF-8 YAML"),
    (b"train:\n  steps: [1,\n  batch_size: 2\n", "not valid YAML ("),
    (b"train: {steps: 3\n", "not valid YAML ("),
    (b"- a\n- b\n", "top level must be a mapping of sections, got list"),
])
def test_case06_config_file_that_is_not_utf8_or_not_yaml(content, expected, tmp_path, capsys):
    bad = tmp_path / "b.yaml"
    bad.write_bytes(content)
    run = tmp_path / "run"
    assert vae_cli.main(["--config", str(bad), "--run-dir", str(run)]) == 2
    msg = one_line(capsys.readouterr().err, "fsggan-train-vae")
    assert expected in msg and str(bad) in msg and not run.exists()


@pytest.mark.parametrize("override, expected", [
    ("vae.image_size=60", "vae.image_size=60: V halves the image 4 times, so it must be a multiple of 16"),
    ("discriminator.levels=[5]", "discriminator.levels=[5]: give distinct levels from [1, 2, 3, 4]"),
    ("discriminator.lam=-1", "discriminator.lam=-1.0: must be a finite number >= 0"),
    ("generator.hdc_rates=[]", "generator.hdc_rates=[]: give one or more dilation rates >= 1"),
    ("generator.in_channels=3", "generator.in_channels=3: Stage II feeds G the face x and V's structure image"),
    ("loss.map_bce=1", "loss.map_bce=1: this term trains the blend head's occlusion map; set generator.output: blend"),
    ("optim.lr=.nan", "optim.lr: expected a finite number, got nan"),
    ("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
])
def test_case07_values_the_models_cannot_take(override, expected, data_config, stage1, tmp_path,  # noqa: F811
                                              capsys):
    run = tmp_path / "run"
    argv = ["--config", TINY_GAN, "--run-dir", str(run), "--set", f"data.config={data_config}",
            "--set", f"gan.vae_checkpoint={stage1}", "--set", "loss.identity=0", "--set", "train.device=cpu",
            "--set", "generator.output=direct", *(f"--set={o}" for o in SHORT), "--set", override]
    assert gan_cli.main(argv) == 2
    msg = one_line(capsys.readouterr().err, "fsggan-train-gan")
    assert msg == f"{TINY_GAN}: {msg.split(': ', 1)[1]}" and expected in msg
    assert not run.exists()


def test_case07_size_checked_again_with_the_stage1_v(data_config, stage1, tmp_path, capsys):  # noqa: F811
    # V of stage1 works at 32 px: a PatchGAN of 4 halvings leaves nothing to judge (fine for the YAML's 128 px)
    run = tmp_path / "run"
    argv = ["--config", TINY_GAN, "--run-dir", str(run), "--set", f"data.config={data_config}",
            "--set", f"gan.vae_checkpoint={stage1}", "--set", "loss.identity=0", "--set", "train.device=cpu",
            *(f"--set={o}" for o in SHORT), "--set", "gan.d_arch=patch", "--set", "patch_discriminator.n_layers=4"]
    assert gan_cli.main(argv) == 2
    msg = one_line(capsys.readouterr().err, "fsggan-train-gan")
    assert msg.startswith("patch_discriminator.n_layers=4: too deep for 32x32 faces") and not run.exists()


# Nothing silently wrong ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["I;16", "I", "F", "LA", "P"])
def test_case08_api_reads_pil_images_as_the_file_path_does(mode, runs, tmp_path):  # noqa: F811
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 65536, (32, 32)).astype(np.uint16)
    if mode in ("I;16", "I"):
        im = Image.fromarray(gray)
        im = im if mode == "I;16" else im.convert("I")
        assert im.mode == mode
    elif mode == "F":
        im = Image.fromarray(gray.astype(np.float32) / 65535, "F")
    elif mode == "LA":
        im = Image.fromarray(np.stack([gray >> 8, gray & 255], -1).astype(np.uint8), "LA")
    else:
        im = Image.fromarray((gray >> 8).astype(np.uint8), "L").convert("P")
    path = tmp_path / ("face.tif" if mode in ("F", "I") else "face.png")
    im.save(path)
    m = FSGGAN.from_checkpoints(gan=runs["gan_run"], device="cpu")
    with Image.open(path) as reread:
        reread.load()
    try:
        arr, _ = read_rgb(path)
    except ValueError as exc:  # the file path refuses this mode: the API refuses it the same way
        with pytest.raises(ValueError, match="pixel format"):
            m.deocclude(reread)
        assert "pixel format" in str(exc)
        return
    assert 5 < arr.mean() < 250  # not all white
    out = m.deocclude(reread)
    assert np.array_equal(np.asarray(out), m.deocclude(arr))


def test_case09_allow_missing_with_nothing_usable(tmp_path, capsys):
    prepared = make_prepared_set(tmp_path / "set1-toy", n_ids=2, per_id=2, repeats=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    wrong = copy_as_predictions(prepared, tmp_path / "wrong")
    for p in wrong.iterdir():
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(p)
    for folder, why in [(empty, "4 missing, 0 unreadable"), (wrong, "0 missing, 4 unreadable")]:
        out = tmp_path / f"res_{folder.name}"
        assert eval_main([str(prepared), "--predictions", str(folder), "--allow-missing", "--out", str(out),
                          "--workers", "0", "--no-progress"]) == 2
        msg = one_line(capsys.readouterr().err, "fsggan-eval")
        assert msg.startswith(f"set {prepared}: no usable prediction in {folder} ({why}") and "nothing to score" in msg
        assert not out.exists()


@pytest.mark.parametrize("images, kwargs, expected", [
    (torch.zeros(0, 3, 32, 32), {}, "a tensor batch of 0 images"),
    (torch.zeros(1, 3, 32, 32), {"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    (torch.zeros(1, 3, 32, 32), {"batch_size": -1}, "batch_size must be an integer >= 1, got -1"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.complex64), {}, "must be a float tensor in [-1, 1], got torch.complex64"),
    (torch.zeros(1, 3, 0, 0), {}, "images need at least one pixel"),
    (torch.ones(1, 3, 32, 32, dtype=torch.uint8), {}, "must be a float tensor in [-1, 1], got torch.uint8"),
    (torch.ones(1, 3, 32, 32, dtype=torch.bool), {}, "must be a float tensor in [-1, 1], got torch.bool"),
    (np.zeros((0, 0, 3), np.uint8), {}, "images need at least one pixel"),
    (np.zeros((32, 32, 3), np.int64), {}, "must be uint8 in [0, 255] or float in [0, 1], got int64"),
])
def test_case11_api_edge_cases(images, kwargs, expected, runs):  # noqa: F811
    m = FSGGAN.from_checkpoints(gan=runs["gan_run"], device="cpu")
    with pytest.raises(ValueError) as e:
        m.deocclude(images, **kwargs)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_case12_model_and_set_of_different_sizes(runs, tmp_path, capsys):  # noqa: F811
    prepared = make_prepared_set(tmp_path / "set1-big", n_ids=2, per_id=2, repeats=1)
    for sub in ("clean", "occluded", "mask"):
        for p in (prepared / sub).iterdir():
            with Image.open(p) as im:
                im.resize((64, 64)).save(p)
    out = tmp_path / "res"
    assert eval_main([str(prepared), "--gan", str(runs["gan_run"]), "--out", str(out), "--workers", "0",
                      "--no-progress", "--device", "cpu"]) == 2
    msg = one_line(capsys.readouterr().err, "fsggan-eval")
    assert msg.startswith(f"--gan {runs['gan_run']} works at 32x32 (its vae.image_size), but {prepared} holds "
                          "64x64 faces") and "dataset.image_size=32" in msg
    assert not out.exists()
