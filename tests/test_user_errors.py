"""What a new user meets with bad input, outside training: damaged checkpoints given to
fsggan-eval / fsggan-deocclude (one line, exit 2), option values that cannot work (--ks 0,
an unknown --recognizer), tiny and very elongated photos, tensors outside [-1, 1] in the
notebook API, fsggan-quickstart without a download option, the skipped-predictions line
printed once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fsggan.cli import quickstart as quickstart_cli
from fsggan.cli.deocclude import main as deocclude_main
from fsggan.cli.evaluate import main as eval_main
from fsggan.eval.recognition import recognizer_names
from fsggan.pipeline import FSGGAN
from test_eval import copy_as_predictions, make_prepared_set
from test_pipeline import runs  # noqa: F401 (fixture)
from test_resume import KINDS, damage

EXPECT_GAN = "expected an fsggan Stage II (GAN) checkpoint, as fsggan-train-gan writes"


@pytest.fixture
def faces(tmp_path):
    """Two 40x40 photos to de-occlude."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(src / f"face{i}.png")
    return src


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "wrong stage"] + ["wrong stage (Stage I)", "shapes"])
def test_damaged_gan_checkpoint_for_eval_and_deocclude(kind, runs, faces, tmp_path, capsys):  # noqa: F811
    bad = tmp_path / "bad.pt"
    good = runs["gan_run"] / "checkpoints" / "last.pt"
    if kind.startswith("wrong stage"):
        bad.write_bytes((runs["vae_run"] / "checkpoints" / "best.pt").read_bytes())
        what = "a Stage I (VAE) checkpoint (models: vae)"
    elif kind == "shapes":
        ckpt = torch.load(good, weights_only=True)
        ckpt["config"]["generator"]["base_channels"] = 8  # the weights are base_channels 4
        torch.save(ckpt, bad)
        with pytest.raises(ValueError) as e:
            FSGGAN.from_checkpoints(gan=bad)
        assert str(e.value).startswith(f"{bad}: the stored 'generator' weights do not fit "
                                       "UNetGenerator(base_channels=8): ")
        assert "(first: encoders.0.0.0.weight is (4, 6, 3, 3) in the file, (8, 6, 3, 3) in the model)" in str(e.value)
        what = str(e.value)[len(f"{bad}: "):]
    else:
        what = damage(bad, kind, good, good)
    prepared = make_prepared_set(tmp_path / "set1-toy", n_ids=2, per_id=2, repeats=1)
    line = f"{bad}: {what}" + ("" if kind == "shapes" else f"; {EXPECT_GAN}")
    assert eval_main([str(prepared), "--gan", str(bad), "--workers", "0", "--no-progress", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == f"fsggan-eval: error: {line}\n"
    out = tmp_path / "out"
    assert deocclude_main([str(faces), "--gan", str(bad), "--out", str(out), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == f"fsggan-deocclude: error: {line}\n"
    assert not out.exists()


def test_deocclude_minimum_size_and_elongated_photo(runs, faces, tmp_path, capsys):  # noqa: F811
    Image.fromarray(np.full((1, 1, 3), 128, np.uint8)).save(faces / "dot.png")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (200, 2000, 3), dtype=np.uint8)).save(faces / "banner.jpg")
    out = tmp_path / "out"
    assert deocclude_main([str(faces), "--gan", str(runs["gan_run"]), "--out", str(out), "--device", "cpu",
                           "--crop", "lfw"]) == 1  # a fixed face box, as before photos were detected
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-2:] == [  # after the progress bar
        "1 input(s) could not be read:",
        f"  {faces / 'dot.png'}: image is 1x1, smaller than the 32 px needed to crop a face; "
        "replace it with a larger image"]
    assert sorted(p.name for p in out.glob("*.png")) == ["banner.png", "face0.png", "face1.png"]
    assert Image.open(out / "banner.png").size == (32, 32)  # the model's size, whatever came in


def test_deocclude_help_names_no_fixed_size(capsys):
    with pytest.raises(SystemExit):
        deocclude_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "128x128 faces out" not in text and "the size the model works at" in text and "32 px" in text


def test_eval_option_values_that_cannot_work(tmp_path, capsys):
    prepared = make_prepared_set(tmp_path / "set1-toy", n_ids=2, per_id=2, repeats=1)
    assert eval_main([str(prepared), "--recognizer", "mobilefacenet", "--recognizer-weights", "random",
                      "--ks", "1", "0", "--workers", "0"]) == 2
    assert capsys.readouterr().err == ("fsggan-eval: error: --ks 1 0: ranks start at 1 (rank-1 = the best match), "
                                       "got 0\n")
    # an unknown recognizer is named before any weights are asked for
    assert eval_main([str(prepared), "--recognizer", "facenet"]) == 2
    assert capsys.readouterr().err == (f"fsggan-eval: error: --recognizer facenet: unknown name; choose from none, "
                                       f"{', '.join(recognizer_names())}\n")
    assert eval_main([str(prepared), "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == "fsggan-eval: error: --batch-size 0: must be >= 1\n"


def test_allow_missing_skip_line_printed_once(tmp_path, capsys):
    prepared = make_prepared_set(tmp_path / "set1-toy", n_ids=3, per_id=2, repeats=1)
    preds = copy_as_predictions(prepared, tmp_path / "preds")
    (preds / "person_1_0001.png").unlink()
    assert eval_main([str(prepared), "--predictions", str(preds), "--method-name", "Partial", "--allow-missing",
                      "--out", str(tmp_path / "res"), "--workers", "0", "--no-progress"]) == 0
    captured = capsys.readouterr()
    both = captured.out + captured.err
    assert both.count("- Partial on set1-toy: 1 missing, 0 unreadable prediction(s) left out of 6") == 1
    assert "- set1-toy: 5 images of 3 identities (1 of 6 left out of every row: no usable prediction)" in both


def test_notebook_api_range_check(runs):  # noqa: F811
    m = FSGGAN.from_checkpoints(gan=runs["gan_run"], device="cpu")
    x = torch.rand(2, 3, 32, 32) * 255
    with pytest.raises(ValueError) as e:
        m.deocclude(x)
    assert str(e.value) == ("a tensor input must hold values in [-1, 1] (fsggan's convention; from [0, 1] use "
                            f"x * 2 - 1, from [0, 255] x / 127.5 - 1); got values in [{x.min():g}, {x.max():g}]")
    with pytest.raises(ValueError, match=r"in \[-1, 1\].*got values in \[nan, nan\]"):
        m.structure(torch.full((3, 32, 32), float("nan")))
    with pytest.raises(ValueError, match=r"a float array must hold values in \[0, 1\]"):
        m.deocclude(np.full((32, 32, 3), 200.0, np.float32))
    assert m.deocclude(x / 127.5 - 1).shape == (2, 3, 32, 32)  # in range: fine


def test_quickstart_has_no_download_option_and_says_where_lfw_comes_from(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        quickstart_cli.build_parser().parse_args(["--download"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        quickstart_cli.main(["--lfw", str(tmp_path / "nowhere"), "--out", str(tmp_path / "qs")])
    assert e.value.code == (f"fsggan-quickstart: error: --lfw {tmp_path / 'nowhere'}: no such folder (expected the "
                            "standard 'lfw' layout, <root>/<Person>/<Person>_NNNN.jpg; LFW (lfw.tgz) comes from the "
                            "University of Massachusetts LFW page, http://vis-www.cs.umass.edu/lfw/, or a mirror of it)")
    assert not (tmp_path / "qs").exists()


# Config range checks name the key and the value; only files that exist or were given ----------

@pytest.mark.parametrize("override, expected", [
    ("optim.lr=-1", "optim.lr=-1.0: a learning rate must be > 0"),
    ("optim.lr_d=-3", "optim.lr_d=-3.0: a learning rate must be > 0"),
    ("optim.warmup_steps=-2", "optim.warmup_steps=-2: must be >= 0"),
    ("optim.min_lr_ratio=2", "optim.min_lr_ratio=2.0: must be in [0, 1]"),
])
def test_config_range_errors_name_key_and_value(override, expected, tmp_path, capsys):
    from conftest import REPO
    from fsggan.cli import train_vae

    tiny = str(REPO / "configs" / "tiny_cpu_vae.yaml")
    assert train_vae.main(["--config", tiny, "--run-dir", str(tmp_path / "r"), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fsggan-train-vae: error: {tiny}: {expected}") and err.count("\n") == 1


def test_saved_run_config_used_elsewhere_names_only_the_users_file(tmp_path, monkeypatch, capsys):
    import yaml

    from conftest import REPO
    from fsggan.cli import train_vae
    from fsggan.config import load_config, to_dict
    from fsggan.train.config import TrainVAEConfig

    saved = tmp_path / "config.yaml"  # what a run folder holds: every data key, and data.config as it was given
    monkeypatch.chdir(REPO)
    saved.write_text(yaml.safe_dump(to_dict(load_config(TrainVAEConfig, "configs/tiny_cpu_vae.yaml")), sort_keys=False))
    named = yaml.safe_load(saved.read_text())["data"]["config"]
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / named).exists()
    assert train_vae.main(["--config", str(saved), "--set", "data.num_workers=0", "--run-dir", "r"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fsggan-train-vae: error: {saved}: data.config={named!r} is not found from {tmp_path}")
    assert "config file" not in err and err.count("\n") == 1 and not (tmp_path / "r").exists()
    assert "--set data.config=null" in err
    with pytest.raises(SystemExit):  # the fix the message gives works
        train_vae.main(["--config", str(saved), "--set", "data.config=null", "--run-dir", "r", "--print-config"])


# The notebook API takes what a notebook holds ---------------------------------------------------

def test_deocclude_refuses_a_whole_photo_instead_of_squashing_it(runs):  # noqa: F811
    m = FSGGAN.from_checkpoints(gan=runs["gan_run"], device="cpu")
    photo = np.random.default_rng(0).integers(0, 256, (250, 250, 3), dtype=np.uint8)
    for given in (photo, Image.fromarray(photo), [photo[:32, :32], photo], torch.zeros(3, 250, 250)):
        with pytest.raises(ValueError) as e:
            m.deocclude(given)
        assert str(e.value) == ("deocclude takes face crops of the model's size, 32x32; got 250x250: for a whole "
                                "photo use deocclude_photo (faces found, aligned, pasted back), or resize aligned "
                                "crops to 32x32")
    assert m.deocclude(photo[:32, :32]).shape == (32, 32, 3)


def test_deocclude_photo_takes_a_path_and_a_float_array(tmp_path):
    from test_photos import DATA, VAE_KW, stub_detect

    from fsggan.models import VAE, UNetGenerator

    torch.manual_seed(0)
    m = FSGGAN(VAE(**VAE_KW), UNetGenerator(base_channels=4), device="cpu", image_size=32)
    m.data = DATA
    photo = np.random.default_rng(0).integers(0, 256, (250, 250, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "p.png")
    want, faces = m.deocclude_photo(photo, detect=stub_detect)
    assert len(faces) == 1
    for given in (str(tmp_path / "p.png"), tmp_path / "p.png", photo.astype(np.float32) / 255):
        got, _ = m.deocclude_photo(given, detect=stub_detect)
        assert np.array_equal(got, want)
    with pytest.raises(ValueError, match=r"a float photo must hold values in \[0, 1\] .*got values in \[0, 255\]"):
        m.deocclude_photo(photo.astype(np.float32), detect=stub_detect)
