"""FSGGAN notebook API and fsggan-deocclude / fsggan-eval --gan, from tiny checkpoints
written here (32 px, widths 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fsggan.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from fsggan.cli.deocclude import main as deocclude_main
from fsggan.cli.evaluate import main as eval_main
from fsggan.models import VAE, UNetGenerator
from fsggan.api import FSGGAN
from helpers.training import VAE_KW

def test_round_trip_all_input_kinds(runs):
    m = FSGGAN.from_checkpoints(gan=runs["gan_run"], device="cpu")  # VAE found through the config
    assert m.image_size == 32 and m.checkpoints["vae"].endswith("best.pt")
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        want = runs["gen"](x, runs["vae"](x))
    y = m.deocclude(x, batch_size=2)  # tensor batch in -> tensor batch out
    assert torch.allclose(y, want, atol=1e-5)
    assert torch.allclose(m.structure(x[0]), runs["vae"](x[:1])[0], atol=1e-5)  # (3,H,W) in -> (3,H,W) out

    u8 = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    out = m.deocclude(u8[0])
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    batch = m.deocclude(u8)
    assert batch.shape == (3, 32, 32, 3) and np.array_equal(batch[0], out)
    f = m.deocclude(u8[0].astype(np.float32) / 255)
    assert f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1
    assert np.abs(f * 255 - out).max() <= 1.0
    pil = m.deocclude([Image.fromarray(a) for a in u8])
    assert isinstance(pil, list) and pil[0].size == (32, 32) and np.array_equal(np.asarray(pil[0]), out)
    with pytest.raises(ValueError, match="face crops of the model's size, 32x32; got 64x64"):
        m.deocclude(Image.fromarray(u8[0]).resize((64, 64)))  # never squeezed silently


def test_explicit_vae_and_checkpoint_errors(runs, tmp_path):
    m = FSGGAN.from_checkpoints(vae=runs["vae_run"] / "checkpoints" / "best.pt",
                                gan=runs["gan_run"] / "checkpoints" / "last.pt", device="cpu")
    assert m.uses_structure
    assert resolve_checkpoint(runs["gan_run"]).name == "last.pt"  # no best.pt there
    with pytest.raises(CheckpointError, match=r"a Stage I \(VAE\) checkpoint .*expected an fsggan Stage II"):
        FSGGAN.from_checkpoints(gan=runs["vae_run"])  # a Stage I checkpoint given as Stage II
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad, require="vae")
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="bad.pt.*expected an fsggan Stage I"):
        load_checkpoint(bad, require="vae")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FSGGAN.from_checkpoints(gan=tmp_path / "nowhere")


def test_deocclude_cli(runs, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(src / f"face{i}.png")
    Image.fromarray(rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)).save(src / "photo.jpg")
    out = tmp_path / "out"
    rc = deocclude_main([str(src), "--gan", str(runs["gan_run"]), "--vae", str(runs["vae_run"]),
                         "--out", str(out), "--structure", "--strip", "--batch-size", "2", "--device", "cpu",
                         "--crop", "lfw"])  # a fixed face box (photos without --crop: tests/test_photos.py)
    assert rc == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["face0.png", "face1.png", "face2.png", "photo.png"]
    assert Image.open(out / "photo.png").size == (32, 32)
    assert Image.open(out / "strip" / "face0.png").size == (96, 32)
    assert (out / "structure" / "face1.png").is_file()
    # --aligned: only resized; a 32x32 input then gives exactly the notebook API's output
    out2 = tmp_path / "out2"
    assert deocclude_main([str(src / "face0.png"), "--gan", str(runs["gan_run"]), "--out", str(out2),
                           "--aligned", "--device", "cpu"]) == 0
    m = FSGGAN.from_checkpoints(gan=runs["gan_run"], device="cpu")
    want = m.deocclude(Image.open(src / "face0.png"))
    assert np.array_equal(np.asarray(Image.open(out2 / "face0.png")), np.asarray(want))


def test_eval_with_checkpoints_matches_saved_predictions(runs, tmp_path):
    from helpers.prepared import make_prepared_set

    s = make_prepared_set(tmp_path / "set1-toy", n_ids=3, per_id=2, repeats=1)
    res, preds = tmp_path / "res", tmp_path / "preds"
    assert eval_main([str(s), "--gan", str(runs["gan_run"]), "--out", str(res), "--save-predictions", str(preds),
                      "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    assert len(list((preds / "set1-toy").glob("*.png"))) == 6
    res2 = tmp_path / "res2"
    assert eval_main([str(s), "--predictions", str(preds), "--method-name", "FSG-GAN", "--out", str(res2),
                      "--workers", "0", "--no-progress"]) == 0
    a = json.loads((res / "results.json").read_text())["sets"]["set1-toy"]["quality"]["FSG-GAN"]
    b = json.loads((res2 / "results.json").read_text())["sets"]["set1-toy"]["quality"]["FSG-GAN"]
    assert a == b  # scoring in memory == scoring the saved files


def test_structure_passes_come_from_the_training_config_unless_given(runs, tmp_path, capsys):
    """gan.structure_passes of the Stage II config sets how the model runs; from_checkpoints,
    fsggan-eval and fsggan-deocclude may override it; the report records the value used."""
    from helpers.prepared import make_prepared_set

    ckpt = torch.load(runs["gan_run"] / "checkpoints" / "last.pt", weights_only=True)
    ckpt["config"]["gan"]["structure_passes"] = 2
    path = tmp_path / "two.pt"
    torch.save(ckpt, path)
    def v_calls(model) -> int:  # how often V runs for one batch (the numbers: tests/test_models.py)
        calls = []
        hook = model.vae.register_forward_hook(lambda *_: calls.append(1))
        model.deocclude(torch.rand(2, 3, 32, 32) * 2 - 1)
        hook.remove()
        return len(calls)

    assert v_calls(FSGGAN.from_checkpoints(gan=runs["gan_run"], device="cpu")) == 1  # a config without it: 1
    m = FSGGAN.from_checkpoints(gan=path, device="cpu")
    assert m.structure_passes == 2 and v_calls(m) == 2
    assert v_calls(FSGGAN.from_checkpoints(gan=path, device="cpu", structure_passes=1)) == 1
    s = make_prepared_set(tmp_path / "set1-toy", n_ids=2, per_id=2, repeats=1)
    res = tmp_path / "res"
    assert eval_main([str(s), "--gan", str(path), "--structure-passes", "3", "--out", str(res), "--recognizer",
                      "none", "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((res / "results.json").read_text())["source"]["structure_passes"] == 3
    capsys.readouterr()
    assert eval_main([str(s), "--gan", str(path), "--structure-passes", "0", "--out", str(tmp_path / "r0")]) == 2
    assert eval_main([str(s), "--predictions", str(s), "--structure-passes", "2", "--out", str(tmp_path / "r1")]) == 2
    assert deocclude_main([str(s), "--gan", str(path), "--structure-passes", "0", "--aligned",
                           "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "--structure-passes 0: must be >= 1" in err[0] and "goes with --gan" in err[1]
    assert "--structure-passes 0: must be >= 1" in err[2]
    assert not (tmp_path / "r0").exists() and not (tmp_path / "d").exists()  # refused before anything is written


def test_stored_vae_preferred_and_mismatch_warned(runs, tmp_path):
    """Stage II checkpoints of fsggan.train also hold V as G was trained with it."""
    torch.manual_seed(1)
    drifted = VAE(**VAE_KW)  # e.g. after trunk_mode "tied"
    ckpt = torch.load(runs["gan_run"] / "checkpoints" / "last.pt", weights_only=True)
    ckpt["models"]["vae"] = drifted.state_dict()
    path = tmp_path / "stage2.pt"
    torch.save(ckpt, path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    m = FSGGAN.from_checkpoints(gan=path, device="cpu")
    assert m.checkpoints["vae"] == str(path)
    assert torch.allclose(m.structure(x), drifted.eval()(x), atol=1e-5)
    with pytest.warns(UserWarning, match="differs from the one stored"):
        FSGGAN.from_checkpoints(vae=runs["vae_run"], gan=path, device="cpu")


def test_generator_without_structure_input(tmp_path):
    gen = UNetGenerator(in_channels=3, base_channels=4)
    path = tmp_path / "noV.pt"
    torch.save({"models": {"generator": gen.state_dict()}, "config": {"generator": {"in_channels": 3, "base_channels": 4}}},
               path)
    m = FSGGAN.from_checkpoints(gan=path, device="cpu")
    assert m.vae is None and not m.uses_structure and m.image_size == 128
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    assert torch.allclose(m.deocclude(x), gen.eval()(x), atol=1e-5)
    with pytest.raises(ValueError, match="no structure image"):
        m.structure(x)
