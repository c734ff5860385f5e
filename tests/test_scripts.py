"""The helper scripts in scripts/ (not installed; run as files) and the benchmarks (a package
run from the repository root, ``python -m benchmarks.NAME``)."""

from __future__ import annotations

from dataclasses import replace

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.files import REPO

SCRIPTS = REPO / "scripts"


@pytest.fixture(scope="module")
def val_curve():
    return runpy.run_path(str(SCRIPTS / "val_curve.py"))


def write_stats(run: Path, rows: list[dict]) -> Path:
    run.mkdir(parents=True)  # the last line is cut, as in a run still writing
    (run / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 250, "val/ou')
    return run


def val_row(step, psnr, ssim):
    return {"step": step, "val/output_psnr": psnr, "val/output_ssim": ssim,
            "val/input_psnr": 20.5, "val/input_ssim": 0.8}


def test_val_curve_reads_validation_rows_only_and_draws(val_curve, tmp_path):
    run = write_stats(tmp_path / "run", [{"step": 50, "g/loss": 1.0}, val_row(100, 22.0, 0.81),
                                         {"step": 150, "g/loss": 0.9}, val_row(200, 23.5, 0.83)])
    points, inputs = val_curve["read_curve"](run)
    assert points == [(100, 22.0, 0.81), (200, 23.5, 0.83)] and inputs == (20.5, 0.8)
    out = tmp_path / "curve.png"
    assert val_curve["main"]([str(run), "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (760, 300) and len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 2  # drawn


def test_val_curve_errors_name_the_file(val_curve, tmp_path, capsys):
    assert val_curve["main"]([str(tmp_path / "nowhere"), "--out", str(tmp_path / "c.png")]) == 2
    assert "nowhere/stats.jsonl: no such file" in capsys.readouterr().err
    run = write_stats(tmp_path / "early", [{"step": 50, "g/loss": 1.0}])
    assert val_curve["main"]([str(run), "--out", str(tmp_path / "c.png")]) == 2
    assert "early/stats.jsonl: no validation rows" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("script", ["cpu_recipe.sh"])
def test_shell_scripts_parse_and_name_configs_that_load(script):
    """bash -n accepts the script, and every training config it names loads, so a 90-minute
    recipe cannot fail on a typo an hour in; the 128 px stage chains onto the 64 px runs, and a
    size the recipe does not have is a one-line error."""
    import re
    import subprocess

    from fsggan.config import load_config
    from fsggan.train.config import TrainGANConfig, TrainVAEConfig

    text = (SCRIPTS / script).read_text()
    assert subprocess.run(["bash", "-n", str(SCRIPTS / script)]).returncode == 0
    configs = sorted(set(re.findall(r"configs/cpu/\w+\.yaml", text)))
    assert configs, script
    loaded = {c: load_config(TrainVAEConfig if "vae" in c else TrainGANConfig, REPO / c, []) for c in configs}
    if script == "cpu_recipe.sh":
        gan128, gan64 = loaded["configs/cpu/gan128.yaml"], loaded["configs/cpu/gan128_stage64.yaml"]
        assert gan128.gan.init_generator == f"{gan64.train.run_dir}/checkpoints/best.pt"
        assert gan128.gan.vae_checkpoint == f"{loaded['configs/cpu/vae128.yaml'].train.run_dir}/checkpoints/best.pt"
        assert replace(gan128.generator, upsample="nearest") == replace(gan64.generator, upsample="nearest")  # weights fit
        bad = subprocess.run(["bash", str(SCRIPTS / script), "96"], capture_output=True, text=True, cwd=REPO)
        assert bad.returncode == 2 and bad.stderr.strip().startswith("cpu_recipe.sh: error: size 96")


@pytest.mark.parametrize("path", sorted((REPO / "benchmarks").glob("*.py")) + sorted(SCRIPTS.glob("*.py")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_benchmarks_and_scripts_import(path, monkeypatch):
    """Every benchmark and script imports (its module level runs, not its main): a name moved
    inside the package breaks here, not in front of the next user. Benchmarks import as
    ``python -m benchmarks.NAME`` from the repository root has them; scripts as ``python path``."""
    if path.parent.name == "benchmarks":
        import importlib

        monkeypatch.syspath_prepend(str(REPO))
        importlib.import_module(f"benchmarks.{path.stem}")
    else:
        monkeypatch.syspath_prepend(str(path.parent))
        runpy.run_path(str(path), run_name="not_main")


def test_benchmarks_import_each_other_only_as_a_package():
    """No benchmark edits sys.path or imports a sibling by its bare name (which works only when
    that file is run as a script from its own folder)."""
    import ast

    siblings = {p.stem for p in (REPO / "benchmarks").glob("*.py")}
    for path in (REPO / "benchmarks").glob("*.py"):
        text = path.read_text()
        assert "sys.path" not in text, path.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in siblings, f"{path.name}: from {node.module} import ..."
            elif isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & siblings, path.name


def test_before_after_zoom_fits_the_picture_and_keeps_its_pixels():
    zoom = runpy.run_path(str(SCRIPTS / "photo_before_after.py"))["zoom"]
    rng = np.random.default_rng(0)
    before, after = (rng.integers(0, 256, (100, 300, 3), dtype=np.uint8) for _ in range(2))
    z = zoom(before, after, (40, 30, 80, 70), margin=5)  # a 50 px wide window: 3x would not fit
    assert z.shape == (2 * 50, 2 * 50 * 2 + 8, 3)
    assert np.array_equal(z[::2, :100:2], before[25:75, 35:85]) and np.array_equal(z[::2, 108::2], after[25:75, 35:85])
    assert zoom(before, after, (190, 40, 200, 50), margin=2).shape[0] == 3 * 14  # small enough for 3x


def test_demo_cup_is_the_cup_without_saucer_or_table():
    """The demo picture's CC0 cup: opaque on the cup's rim and coffee, clear on the saucer and
    the table, a mouth-region object."""
    cup = runpy.run_path(str(SCRIPTS / "photo_before_after.py"))["coffee_cup"]()
    alpha = cup.rgba[..., 3]
    assert cup.category == "mouth" and cup.rgba.shape[2] == 4
    assert alpha[100, 125] == 255 and alpha[30, 125] == 255  # the coffee (centre) and the rim (top)
    assert alpha[300, 5] == 0 and alpha[5, 5] == 0  # the saucer below left, the table above left
    assert 0.4 < (alpha > 127).mean() < 0.9


def test_cpu_recipe_seed_gives_its_own_chained_run_directories(tmp_path):
    """``cpu_recipe.sh 128 1``: every stage gets train.seed 1 and a ``_s1`` run directory, and
    each stage reads the checkpoints of the stages before it in that seed's directories (the
    fsggan commands are stubs that log their arguments); a seed that is not a whole number is a
    one-line error."""
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for cmd in ("fsggan-train-vae", "fsggan-train-gan", "fsggan-eval", "fsggan-prepare-data"):
        (bin_dir / cmd).write_text(f'#!/bin/sh\necho "{cmd} $*" >> "{tmp_path}/calls"\n')
        (bin_dir / cmd).chmod(0o755)
    for prepared in ("set2-lfw", "set3-lfw"):  # prepared: no preparation step
        (tmp_path / "data128" / prepared).mkdir(parents=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    done = subprocess.run(["bash", str(SCRIPTS / "cpu_recipe.sh"), "128", "1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["fsggan-train-vae", "fsggan-train-gan", "fsggan-train-vae",
                                             "fsggan-train-gan", "fsggan-eval"]
    assert all("--set train.seed=1" in c for c in calls[:4])
    assert "--run-dir runs/cpu_vae_s1 " in calls[0] + " " and "--run-dir runs/cpu_vae128_s1 " in calls[2] + " "
    assert "--run-dir runs/cpu128_gan64_s1 --set train.seed=1 --set gan.vae_checkpoint=runs/cpu_vae_s1/checkpoints/best.pt" in calls[1]
    assert calls[3].endswith("--set gan.vae_checkpoint=runs/cpu_vae128_s1/checkpoints/best.pt "
                             "--set gan.init_generator=runs/cpu128_gan64_s1/checkpoints/best.pt")
    assert "--gan runs/cpu_gan128_s1 " in calls[4] and calls[4].endswith("--out results/cpu128_s1")
    assert "data128/set1-lfw data128/set2-lfw data128/set3-lfw --gan" in calls[4]
    # sets prepared before Set3 existed: only Set3 is prepared
    (tmp_path / "data128" / "set3-lfw").rmdir()
    (tmp_path / "calls").unlink()
    again = subprocess.run(["bash", str(SCRIPTS / "cpu_recipe.sh"), "128", "1"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    first = (tmp_path / "calls").read_text().splitlines()[0]
    assert first.startswith("fsggan-prepare-data --config configs/data/lfw.yaml --out data128 --sets set3")
    bad = subprocess.run(["bash", str(SCRIPTS / "cpu_recipe.sh"), "128", "x"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == "cpu_recipe.sh: error: seed x: give a whole number (default 0)"
