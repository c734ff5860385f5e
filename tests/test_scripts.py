"""The helper scripts in scripts/ (not installed; run as files)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO

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
        assert im.size == (760, 300) and len(set(im.getdata())) > 2  # something was drawn


def test_val_curve_errors_name_the_file(val_curve, tmp_path, capsys):
    assert val_curve["main"]([str(tmp_path / "nowhere"), "--out", str(tmp_path / "c.png")]) == 2
    assert "nowhere/stats.jsonl: no such file" in capsys.readouterr().err
    run = write_stats(tmp_path / "early", [{"step": 50, "g/loss": 1.0}])
    assert val_curve["main"]([str(run), "--out", str(tmp_path / "c.png")]) == 2
    assert "early/stats.jsonl: no validation rows" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()
