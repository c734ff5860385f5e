"""End to end: fsggan-quickstart's pipeline (prepare -> Stage I -> Stage II -> evaluate) on a
small LFW-layout folder the test writes, with the real occluders of ../shared/data."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from fsggan.quickstart import run_quickstart

from conftest import REPO, SHARED

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
