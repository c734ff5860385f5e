"""What a new user meets with bad input: one line (exit status 2) before anything is written,
and nothing silently wrong.

Damaged checkpoints given to fsggan-eval / fsggan-deocclude, option values that cannot work
(--ks 0, an unknown --recognizer, devices that do not exist, --out that is a file), config
files that are not UTF-8 or not YAML, model values the networks cannot take, tiny and very
elongated photos, tensors outside [-1, 1] and other edge cases of the notebook API, PIL
images read as the file path reads them, fsggan-quickstart without a download option,
nothing usable to score, a model and a set of different sizes, the skipped-predictions line
printed once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fsggan.cli import quickstart as quickstart_cli
from fsggan.cli import train_gan as gan_cli
from fsggan.cli import train_vae as vae_cli
from fsggan.cli.deocclude import main as deocclude_main
from fsggan.cli.evaluate import main as eval_main
from fsggan.eval.recognition import recognizer_names
from fsggan.images import read_rgb
from fsggan.api import FSGGAN
from helpers.checkpoints import KINDS, damage
from helpers.cli import one_line
from helpers.files import REPO
from helpers.prepared import copy_as_predictions, make_prepared_set

EXPECT_GAN = "expected an fsggan Stage II (GAN) checkpoint, as fsggan-train-gan writes"
TINY_GAN = str(REPO / "configs" / "tiny_cpu_gan.yaml")
SHORT = ["train.steps=2", "train.batch_size=4", "train.progress=false", "data.num_workers=0", "data.val_images=4",
         "train.num_samples=2", "generator.base_channels=4", "discriminator.head_channels=4"]


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
def test_damaged_gan_checkpoint_for_eval_and_deocclude(kind, runs, faces, tmp_path, capsys):
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


def test_deocclude_minimum_size_and_elongated_photo(runs, faces, tmp_path, capsys):
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


def test_notebook_api_range_check(runs):
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
    capsys.readouterr()
    assert quickstart_cli.main(["--lfw", str(tmp_path / "nowhere"), "--out", str(tmp_path / "qs")]) == 2
    assert one_line(capsys.readouterr().err, "fsggan-quickstart") == (
        f"--lfw {tmp_path / 'nowhere'}: no such folder (expected the standard 'lfw' layout, "
        "<root>/<Person>/<Person>_NNNN.jpg; LFW (lfw.tgz) comes from the University of Massachusetts LFW page, "
        "http://vis-www.cs.umass.edu/lfw/, or a mirror of it)")
    assert not (tmp_path / "qs").exists()


# Config range checks name the key and the value; only files that exist or were given ----------

@pytest.mark.parametrize("override, expected", [
    ("optim.lr=-1", "optim.lr=-1.0: a learning rate must be > 0"),
    ("optim.lr_d=-3", "optim.lr_d=-3.0: a learning rate must be > 0"),
    ("optim.warmup_steps=-2", "optim.warmup_steps=-2: must be >= 0"),
    ("optim.min_lr_ratio=2", "optim.min_lr_ratio=2.0: must be in [0, 1]"),
])
def test_config_range_errors_name_key_and_value(override, expected, tmp_path, capsys):
    from fsggan.cli import train_vae

    tiny = str(REPO / "configs" / "tiny_cpu_vae.yaml")
    assert train_vae.main(["--config", tiny, "--run-dir", str(tmp_path / "r"), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fsggan-train-vae: error: {tiny}: {expected}") and err.count("\n") == 1


def test_saved_run_config_used_elsewhere_names_only_the_users_file(tmp_path, monkeypatch, capsys):
    import yaml

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

def test_deocclude_refuses_a_whole_photo_instead_of_squashing_it(runs):
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
    from helpers.photos import DATA, stub_detect
    from helpers.training import VAE_KW

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


# One-line errors before anything is written -------------------------------------------------

def test_out_that_is_a_file(runs, tmp_path, capsys):
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
def test_devices_that_do_not_exist(device, runs, tmp_path, capsys):
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
def test_config_file_that_is_not_utf8_or_not_yaml(content, expected, tmp_path, capsys):
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
def test_values_the_models_cannot_take(override, expected, data_config, stage1, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["--config", TINY_GAN, "--run-dir", str(run), "--set", f"data.config={data_config}",
            "--set", f"gan.vae_checkpoint={stage1}", "--set", "loss.identity=0", "--set", "train.device=cpu",
            "--set", "generator.output=direct", *(f"--set={o}" for o in SHORT), "--set", override]
    assert gan_cli.main(argv) == 2
    msg = one_line(capsys.readouterr().err, "fsggan-train-gan")
    assert msg == f"{TINY_GAN}: {msg.split(': ', 1)[1]}" and expected in msg
    assert not run.exists()


def test_size_checked_again_with_the_stage1_v(data_config, stage1, tmp_path, capsys):
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
def test_api_reads_pil_images_as_the_file_path_does(mode, runs, tmp_path):
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


def test_allow_missing_with_nothing_usable(tmp_path, capsys):
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
def test_api_edge_cases(images, kwargs, expected, runs):
    m = FSGGAN.from_checkpoints(gan=runs["gan_run"], device="cpu")
    with pytest.raises(ValueError) as e:
        m.deocclude(images, **kwargs)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_model_and_set_of_different_sizes(runs, tmp_path, capsys):
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
