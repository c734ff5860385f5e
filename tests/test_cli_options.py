"""One set of options across the commands: ``--device`` (auto, cpu, cuda, cuda:N) and
``--no-progress`` everywhere a model runs (the training commands map them onto
``train.device`` / ``train.progress``), help texts in plain words with their defaults, a
``--help`` that answers without importing torch, and every command that writes refusing an
output inside the folders it reads (docs/cli.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from helpers.files import REPO
from fsggan.cli import deocclude, evaluate, export, prepare_data, quickstart
from fsggan.cli import train as train_cli
from fsggan.cli import train_vae as vae_cli

PARSERS = {
    "fsggan-deocclude": deocclude.build_parser,
    "fsggan-eval": evaluate.build_parser,
    "fsggan-prepare-data": prepare_data.build_parser,
    "fsggan-quickstart": quickstart.build_parser,
    "fsggan-train-vae": lambda: train_cli.build_parser("vae"),
    "fsggan-train-gan": lambda: train_cli.build_parser("gan"),
    "fsggan-export": export.build_parser,
}
MODEL_COMMANDS = [c for c in PARSERS if c not in ("fsggan-prepare-data", "fsggan-export")]  # these run no model
TINY_VAE = str(REPO / "configs" / "tiny_cpu_vae.yaml")


def options(parser):
    return {o: a for a in parser._actions for o in a.option_strings}


@pytest.mark.parametrize("module, call", [
    ("fsggan.cli.deocclude", "build_parser()"), ("fsggan.cli.evaluate", "build_parser()"),
    ("fsggan.cli.prepare_data", "build_parser()"), ("fsggan.cli.quickstart", "build_parser()"),
    ("fsggan.cli.train", "build_parser('vae')"), ("fsggan.cli.train", "build_parser('gan')"),
    ("fsggan.cli.export", "build_parser()")])
def test_parsers_are_built_without_torch(module, call):
    code = f"import sys; from {module} import *; import {module} as m; m.{call}.format_help(); " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("module", ["train_vae", "train_gan", "deocclude", "evaluate", "quickstart", "prepare_data",
                                    "export"])
def test_help_answers_without_torch(module):
    code = (f"import sys\nfrom fsggan.cli.{module} import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint('torch' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stderr.strip() == "False" and "usage:" in out.stdout


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_model_command_has_device_and_the_same_progress_switch(command):
    found = options(PARSERS[command]())
    reference = options(PARSERS["fsggan-deocclude"]())
    assert "--device" in found and "--no-progress" in found
    assert found["--no-progress"].help == reference["--no-progress"].help
    assert "auto" in found["--device"].help and "cuda:N" in found["--device"].help


def test_prepare_data_uses_the_same_progress_switch_and_keeps_quiet():
    p = PARSERS["fsggan-prepare-data"]()
    assert p.parse_args(["--config", "x.yaml", "--no-progress"]).no_progress
    assert p.parse_args(["--config", "x.yaml", "--quiet"]).no_progress  # the old name still works
    assert "--quiet" not in p.format_help()


@pytest.mark.parametrize("command", list(PARSERS))
def test_help_texts_are_plain_short_and_name_their_defaults(command):
    parser = PARSERS[command]()
    text = parser.format_help()
    for markup in ("``", ":func:", ":mod:", ":class:", "fsggan.detect's default", "enough to see occluders"):
        assert markup not in text, (command, markup)
    for action in parser._actions:
        if not action.option_strings or action.help in (None, "==SUPPRESS==") or action.dest == "help":
            continue
        assert "\n" not in action.help and len(action.help) <= 90, (command, action.help)
        if action.default not in (None, False, [], "==SUPPRESS==") and action.dest != "no_progress":
            assert "default" in action.help, (command, action.option_strings, action.help)
    assert "Exit status:" in text


def test_eval_batch_size_and_detector_help():
    assert "default: 64" in options(evaluate.build_parser())["--batch-size"].help
    assert "default: mtcnn" in options(deocclude.build_parser())["--detector"].help


def test_cli_copies_agree_with_the_library():
    """The names the parsers hold so that --help needs no torch are the library's."""
    from fsggan import detect, images
    from fsggan import quickstart as qs

    assert deocclude.DETECTORS == detect.DETECTORS and deocclude.DEFAULT_DETECTOR == detect.DEFAULT_DETECTOR
    assert deocclude.MIN_SIZE == images.MIN_FACE_SIZE and deocclude.SUFFIXES.split() == list(images.IMAGE_EXTENSIONS)
    assert quickstart.REPO_ROOT == qs.REPO_ROOT


def test_training_device_and_progress_map_onto_the_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        vae_cli.main(["--config", TINY_VAE, "--run-dir", str(tmp_path / "r"), "--device", "cpu", "--no-progress",
                      "--print-config"])
    assert e.value.code == 0
    train = yaml.safe_load(capsys.readouterr().out)["train"]
    assert train["device"] == "cpu" and train["progress"] is False


@pytest.mark.parametrize("device", ["tpu", "cuda:x"])
def test_training_device_errors_are_one_line(device, tmp_path, capsys):
    assert vae_cli.main(["--config", TINY_VAE, "--run-dir", str(tmp_path / "r"), "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fsggan-train-vae: error: --device {device!r}: unknown")
    assert not (tmp_path / "r").exists()


def test_quickstart_device_accepts_cuda_n_and_refuses_unknown(tmp_path, capsys):
    p = quickstart.build_parser()
    assert p.parse_args(["--device", "cuda:1"]).device == "cuda:1"  # was refused by argparse's choices
    (tmp_path / "lfw").mkdir()
    assert quickstart.main(["--lfw", str(tmp_path / "lfw"), "--out", str(tmp_path / "qs"), "--device", "tpu"]) == 2
    assert capsys.readouterr().err == ("fsggan-quickstart: error: --device 'tpu': unknown; use auto, cpu, cuda or "
                                       "cuda:N\n")
    assert not (tmp_path / "qs").exists()


# outputs inside the folders a command reads ---------------------------------------------------

def test_quickstart_out_inside_lfw_is_refused(tmp_path, capsys):
    lfw = tmp_path / "lfw"
    (lfw / "A_Person").mkdir(parents=True)
    assert quickstart.main(["--lfw", str(lfw), "--out", str(lfw / "runs"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.startswith(f"fsggan-quickstart: error: --out {lfw / 'runs'}: lies in the LFW "
                                              f"folder {lfw}, which this command reads")
    assert sorted(p.name for p in lfw.iterdir()) == ["A_Person"]


def test_training_run_folder_inside_the_dataset_is_refused(tmp_path, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    run = faces / "run"
    assert vae_cli.main(["--config", TINY_VAE, "--run-dir", str(run), "--set", f"data.dataset.root={faces}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"train.run_dir {run}: lies in the dataset folder (dataset.root) {faces}" in err
    assert not run.exists()


def test_prepare_data_out_inside_the_dataset_is_refused(tmp_path, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    cfg = tmp_path / "d.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": {"kind": "folder", "root": str(faces)}}))
    assert prepare_data.main(["--config", str(cfg), "--out", str(faces / "prepared")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {faces / 'prepared'}: lies in the dataset folder" in err
    assert list(faces.iterdir()) == []


def test_eval_out_inside_a_set_is_refused(tmp_path, capsys):
    from helpers.prepared import make_prepared_set

    prepared = make_prepared_set(tmp_path / "set1-toy", n_ids=2, per_id=2, repeats=1)
    before = sorted(p.name for p in prepared.iterdir())
    for option in ("--out", "--save-predictions"):
        argv = [str(prepared), "--predictions", str(prepared / "occluded"), option, str(prepared / "res"),
                "--workers", "0", "--no-progress"]
        assert evaluate.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"fsggan-eval: error: {option} {prepared / 'res'}: lies in the set {prepared}")
        assert err.count("\n") == 1
    assert sorted(p.name for p in prepared.iterdir()) == before


def test_export_never_replaces_the_run_it_reads(runs, capsys):
    run = runs["gan_run"]
    before = sorted(str(p) for p in run.parent.rglob("*"))
    for out in (run, run.parent, run / "checkpoints" / "model"):
        assert export.main([str(run), str(out), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"OUT {out}: " in err and "which this command reads" in err
    assert sorted(str(p) for p in run.parent.rglob("*")) == before
