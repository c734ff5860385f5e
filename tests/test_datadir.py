"""The data folder (fsggan.datadir): FSGGAN_DATA first, then data/ in the current directory
when it holds data, then ../shared/data; configs' data paths moved under it."""

from __future__ import annotations

from pathlib import Path

from fsggan.data.config import DataSection
from fsggan.datadir import data_root, in_data_root
from helpers.cli import one_line


def test_the_data_folder_comes_from_the_variable_then_data_then_beside(tmp_path, monkeypatch):
    work = tmp_path / "clone"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("FSGGAN_DATA", raising=False)
    assert data_root() == Path("data")                         # nothing anywhere: data/, named in errors
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert data_root() == Path("../shared/data")               # a data folder beside the clone
    (work / "data" / "prepared").mkdir(parents=True)           # fsggan-prepare-data's output is not data to read
    assert data_root() == Path("../shared/data")
    (work / "data" / "weights").mkdir()
    assert data_root() == Path("data")
    monkeypatch.setenv("FSGGAN_DATA", str(tmp_path / "elsewhere"))
    assert data_root() == tmp_path / "elsewhere"               # the variable wins, existing or not
    assert DataSection().root == str(tmp_path / "elsewhere" / "lfw")


def test_config_paths_move_under_the_data_folder_from_their_data_component(tmp_path):
    assert in_data_root("../shared/data/occluders/fsg/seen", tmp_path) == tmp_path / "occluders" / "fsg" / "seen"
    assert in_data_root("../shared/data/weights/m.ckpt", tmp_path) == tmp_path / "weights" / "m.ckpt"
    assert in_data_root("configs/data/anchors/fsg_seen.yaml", tmp_path) == Path("configs/data/anchors/fsg_seen.yaml")


def test_quickstart_without_lfw_names_the_data_folder_and_the_variable(tmp_path, monkeypatch, capsys):
    from fsggan.cli import quickstart

    monkeypatch.setenv("FSGGAN_DATA", str(tmp_path / "data"))
    assert quickstart.main(["--out", str(tmp_path / "qs")]) == 2
    message = one_line(capsys.readouterr().err, "fsggan-quickstart")
    assert message.startswith(f"no LFW folder at {tmp_path / 'data' / 'lfw'} ")
    assert "FSGGAN_DATA" in message and "\n" not in message and not (tmp_path / "qs").exists()
