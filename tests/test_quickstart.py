"""End to end: fsggan-quickstart's pipeline (prepare -> Stage I -> Stage II -> evaluate) on a
small LFW-layout folder the test writes, with the real occluders of ../shared/data."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from fsggan.quickstart import run_quickstart

from helpers.files import REPO, SHARED

OCCLUDERS = SHARED / "occluders"


def _face(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:250, 0:250] / 250.0
    img = rng.uniform(0.3, 0.7, 3) + 0.2 * np.stack([xx - 0.5, yy - 0.5, xx * yy], -1)
    img[((xx - 0.5) / 0.22) ** 2 + ((yy - 0.52) / 0.3) ** 2 < 1] *= 0.8  # a face-sized ellipse
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def test_quickstart_end_to_end_on_small_lfw_folder(tmp_path, monkeypatch):
    if not OCCLUDERS.is_dir():
        pytest.skip(f"the occluder cut-outs configs/data/lfw.yaml uses are not at {OCCLUDERS} "
                    "(expected ../shared/data next to the repository)")
    rng = np.random.default_rng(0)
    lfw = tmp_path / "lfw"
    for p in range(10):
        person = f"Person_{p:02d}"
        (lfw / person).mkdir(parents=True)
        for i in range(1, 9):
            Image.fromarray(_face(rng)).save(lfw / person / f"{person}_{i:04d}.jpg", quality=90)
    monkeypatch.chdir(REPO)  # the configs name their files relative to the repository root
    out = tmp_path / "qs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_quickstart(lfw=lfw, out=out, vae_steps=2, gan_steps=2, device="cpu", progress=False,
                                 data_overrides=["protocol.num_identities=4", "protocol.repeats=2"])

    # both runs finished their steps and wrote resumable checkpoints
    for stage in ("vae", "gan"):
        assert (out / stage / "checkpoints" / "last.pt").is_file()
        assert (out / stage / "config.yaml").is_file()
    # each phase's wall time is reported
    assert set(results["timings"]) == {"prepare", "stage1", "stage2", "evaluate", "total"}
    assert all(v > 0 for v in results["timings"].values())
    # the report: tables + machine-readable results that parse and hold the method's row
    report = out / "report"
    assert (report / "deocclusion_grid.png").is_file()
    saved = json.loads((report / "results.json").read_text())
    quality = saved["sets"]["set1-lfw"]
    assert "FSG-GAN (quickstart)" in (report / "results.md").read_text()
    assert json.dumps(results["sets"]["set1-lfw"]["quality"], sort_keys=True, default=str) == \
        json.dumps(quality["quality"], sort_keys=True, default=str)
    # the test identities never reach training: splits are disjoint and the test set holds exactly them
    splits = json.loads((out / "data" / "splits-lfw.json").read_text())
    assert not set(splits["train"]) & set(splits["test"])
    manifest = json.loads((out / "data" / "set1-lfw" / "manifest.json").read_text())
    assert {m["identity"] for m in manifest["images"]} == set(splits["test"])

    # running again resumes instead of starting over: nothing is retrained
    before = (out / "gan" / "checkpoints" / "last.pt").stat().st_mtime_ns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_quickstart(lfw=lfw, out=out, vae_steps=2, gan_steps=2, device="cpu", progress=False,
                       data_overrides=["protocol.num_identities=4", "protocol.repeats=2"])
    assert (out / "gan" / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def _small_lfw(root, people: int = 10, per_person: int = 8):
    rng = np.random.default_rng(0)
    for p in range(people):
        person = f"Person_{p:02d}"
        (root / person).mkdir(parents=True)
        for i in range(1, per_person + 1):
            Image.fromarray(_face(rng)).save(root / person / f"{person}_{i:04d}.jpg", quality=90)
    return root


def test_quickstart_with_lfw_alone_draws_its_occluders_and_trains_without_identity(tmp_path, monkeypatch, capsys):
    """``fsggan-quickstart --lfw DIR`` with an empty data folder (FSGGAN_DATA): no occluder
    cut-outs, so the sets and the training faces get fsggan's drawn occluders of kinds Set3 does
    not hold; no recogniser weights, so Stage II has no identity term; one line says each, and
    the run reaches its report."""
    import yaml

    from fsggan import quickstart
    from fsggan.cli import quickstart as cli
    from fsggan.config import load_config
    from fsggan.data.config import load_data_config
    from fsggan.train.config import TrainGANConfig

    lfw = _small_lfw(tmp_path / "lfw")
    empty = tmp_path / "data"
    empty.mkdir()
    monkeypatch.setenv("FSGGAN_DATA", str(empty))
    monkeypatch.chdir(tmp_path)          # the command changes to the repository root; this puts it back
    run = quickstart.run_quickstart      # driven small, as the test above: few identities in the protocol
    monkeypatch.setattr(quickstart, "run_quickstart", lambda **kw: run(
        **kw, data_overrides=["protocol.num_identities=4", "protocol.repeats=2"]))
    out = tmp_path / "qs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(["--lfw", str(lfw), "--out", str(out), "--vae-steps", "2", "--gan-steps", "2",
                         "--device", "cpu", "--no-progress"])
    assert code == 0
    err = capsys.readouterr().err.splitlines()
    drawn = [line for line in err if "drawn occluders" in line]
    identity = [line for line in err if "without the identity term" in line]
    assert len(drawn) == 1 and str(empty / "occluders") in drawn[0]
    assert len(identity) == 1 and str(empty / "weights") in identity[0]
    assert (out / "report" / "results.md").is_file() and (out / "gan" / "checkpoints" / "last.pt").is_file()

    saved = yaml.safe_load((out / "gan" / "config.yaml").read_text())
    assert saved["loss"]["identity"] == 0
    set3 = set(load_data_config(REPO / "configs" / "data" / "lfw.yaml").occluders.unseen[0].kinds)
    for pool in ("seen", "new"):
        sources = saved["data"]["occluders"][pool]
        assert [s["path"] for s in sources] == ["procedural"]
        assert set(sources[0]["kinds"]) == set(quickstart.FALLBACK_KINDS) and not set3 & set(sources[0]["kinds"])
    placed = json.loads((out / "data" / "set1-lfw" / "manifest.json").read_text())["images"]
    kinds = {p["occluder"].split("/")[-1].rsplit("_", 1)[0]          # procedural/s0/<kind>_NNN
             for it in placed for p in (it["placement"] if isinstance(it["placement"], list) else [it["placement"]])}
    assert kinds and not kinds & set3, kinds
    load_config(TrainGANConfig, out / "gan" / "config.yaml", [])   # the stored config reads back
