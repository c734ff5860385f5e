"""fsggan-deocclude and the user's files: inputs are never overwritten (whatever the path
spelling: ``.``, ``..``, symbolic links), everything is checked before the model loads,
nothing is created for inputs that are not written, outputs are whole files (even when the
process is killed half-way), one rule for symbolic links and multi-frame images, and the
exit status says what was written (docs/cli.md, "Safety of your files").

Tiny models (32 px, widths 4: the ``runs`` fixture of tests/conftest.py); faces from the stub detector of
tests/helpers/photos.py where photos need one.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.cli import one_line
from helpers.files import REPO
from fsggan.cli.deocclude import main as deocclude_main

pytestmark = pytest.mark.usefixtures("one_thread")
PROG = "fsggan-deocclude"


def face(path: Path, seed: int = 0, size: int = 40) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture
def gan(runs):
    return str(runs["gan_run"])


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the model is loaded: the case must be decided before."""
    def refuse(*a, **k):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr("fsggan.api.FSGGAN.from_checkpoints", refuse)


# 1. inputs are never overwritten ----------------------------------------------------------

@pytest.mark.parametrize("mode", [[], ["--aligned"], ["--crop", "lfw"]])
def test_out_equal_to_the_folder_of_a_named_input(mode, gan, tmp_path, monkeypatch, capsys, no_model):
    photo = face(tmp_path / "photo.png")
    before = digest(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert deocclude_main(["photo.png", "--gan", gan, "--out", ".", "--device", "cpu", *mode]) == 2
    msg = one_line(capsys.readouterr().err, PROG)
    assert msg.startswith("--out .: would write photo.png over the input photo.png; give an output folder outside")
    assert digest(tmp_path) == before and photo.exists()


@pytest.mark.parametrize("spelling", ["in", "in/sub", "in/sub/..", "link", "link/deeper"])
@pytest.mark.parametrize("mode", [[], ["--aligned"]])
def test_out_in_or_below_an_input_folder(spelling, mode, gan, tmp_path, monkeypatch, capsys, no_model):
    face(tmp_path / "in" / "a.png")
    face(tmp_path / "in" / "sub" / "b.png", 1)
    (tmp_path / "link").symlink_to(tmp_path / "in")
    before = digest(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    assert deocclude_main(["in", "--gan", gan, "--out", spelling, "--device", "cpu", *mode]) == 2
    msg = one_line(capsys.readouterr().err, PROG)
    assert msg.startswith(f"--out {spelling}: lies in the input folder in, which this command reads")
    assert digest(tmp_path / "in") == before and not (tmp_path / "in" / "deeper").exists()


def test_out_through_a_symlink_onto_a_named_file(gan, tmp_path, capsys, no_model):
    photo = face(tmp_path / "album" / "me.png")
    (tmp_path / "elsewhere").symlink_to(tmp_path / "album")
    before = photo.read_bytes()
    assert deocclude_main([str(photo), "--gan", gan, "--out", str(tmp_path / "elsewhere"), "--aligned"]) == 2
    assert "over the input" in one_line(capsys.readouterr().err, PROG)
    assert photo.read_bytes() == before


def test_face_crops_cannot_land_on_an_input(gan, tmp_path, capsys, no_model):
    """--save-faces writes OUT/faces/<name>.face<k>.*.png: an input of that name is refused too."""
    photo = face(tmp_path / "x.png")
    crop = face(tmp_path / "faces" / "x.png.face0.input.png", 1)
    assert deocclude_main([str(photo), str(crop), "--gan", gan, "--out", str(tmp_path / "faces" / ".."),
                           "--save-faces"]) == 2
    assert "over the input" in one_line(capsys.readouterr().err, PROG)


# 2. checked before the model loads, written only on success -------------------------------

@pytest.mark.parametrize("kind", ["text", "one_pixel", "empty", "dotname"])
def test_a_single_unusable_input_is_one_line_and_creates_nothing(kind, gan, tmp_path, capsys, no_model):
    src = tmp_path / "in"
    src.mkdir()
    path = src / (".jpg" if kind == "dotname" else "bad.jpg" if kind != "one_pixel" else "dot.png")
    if kind in ("text", "dotname"):
        path.write_text("not an image\n")
    elif kind == "one_pixel":
        Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(path)
    else:
        path.write_bytes(b"")
    out = tmp_path / "out"
    assert deocclude_main([str(path), "--gan", gan, "--out", str(out)]) == 2
    msg = one_line(capsys.readouterr().err, PROG)
    assert str(path) in msg and not out.exists()


def test_a_folder_without_images_is_one_line_before_the_model(gan, tmp_path, capsys, no_model):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("hello\n")
    out = tmp_path / "out"
    assert deocclude_main([str(tmp_path / "in"), "--gan", gan, "--out", str(out)]) == 2
    assert one_line(capsys.readouterr().err, PROG).startswith(f"no image in {tmp_path / 'in'} (looked for .png")
    assert not out.exists()


def test_an_output_that_cannot_be_written_is_one_line_before_the_model(gan, tmp_path, capsys, no_model):
    face(tmp_path / "a.png")
    assert deocclude_main([str(tmp_path / "a.png"), "--gan", gan, "--out", "/proc/x"]) == 2
    assert one_line(capsys.readouterr().err, PROG).startswith("--out /proc/x: no file can be written in /proc")


def test_an_output_that_fails_half_way_is_one_line(gan, tmp_path, capsys, monkeypatch):
    face(tmp_path / "in" / "a.png")
    out = tmp_path / "out"

    def full(src, dst):
        raise OSError(28, "No space left on device", str(src))
    monkeypatch.setattr(os, "replace", full)
    assert deocclude_main([str(tmp_path / "in"), "--gan", gan, "--out", str(out), "--aligned", "--no-progress"]) == 2
    msg = one_line(capsys.readouterr().err, PROG)
    assert msg.startswith(f"{out / 'a.png'}: cannot write it (No space left on device)")


def test_exit_status_says_what_was_written(gan, tmp_path, capsys):
    src = tmp_path / "in"
    for i in range(2):
        face(src / f"f{i}.png", i)
    out = tmp_path / "out"
    assert deocclude_main([str(src), "--gan", gan, "--out", str(out), "--aligned", "--no-progress"]) == 0
    (src / "cut.png").write_bytes((src / "f0.png").read_bytes()[:200])  # header fine, data truncated
    assert deocclude_main([str(src), "--gan", gan, "--out", str(tmp_path / "o2"), "--aligned", "--no-progress"]) == 1
    assert "1 input(s) could not be read:" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["f0.png", "f1.png"]


def test_no_face_photos_get_no_sidecar_and_status_3(gan, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("fsggan.photos.deocclude.face_finder", lambda detector, min_face: lambda image: [])
    face(tmp_path / "in" / "wall.png")
    out = tmp_path / "out"
    assert deocclude_main([str(tmp_path / "in"), "--gan", gan, "--out", str(out), "--no-progress"]) == 3
    assert "1 photo(s) with no face found (skipped, not written):" in capsys.readouterr().err
    assert not out.exists()  # no folder, no sidecar


# 3. symbolic links and multi-frame images: one rule, named or in a folder -------------------

def test_symlinks_read_when_named_not_followed_in_folders(gan, tmp_path, capsys):
    outside = face(tmp_path / "outside" / "far.png", 3)
    face(tmp_path / "outside" / "deep" / "deeper.png", 4)
    src = tmp_path / "in"
    face(src / "own.png")
    (src / "far.png").symlink_to(outside)
    (src / "dir").symlink_to(tmp_path / "outside" / "deep")
    out = tmp_path / "out"
    assert deocclude_main([str(src), "--gan", gan, "--out", str(out), "--aligned", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "2 symbolic link(s) inside the input folders not followed" in err
    assert sorted(p.name for p in out.iterdir()) == ["own.png"]
    out2 = tmp_path / "out2"
    assert deocclude_main([str(src / "far.png"), "--gan", gan, "--out", str(out2), "--aligned",
                           "--no-progress"]) == 0  # named: read
    assert sorted(p.name for p in out2.iterdir()) == ["far.png"]


def test_multi_frame_images_refused_named_or_in_a_folder(gan, tmp_path, capsys):
    src = tmp_path / "in"
    face(src / "still.png")
    frames = [Image.fromarray(np.full((40, 40, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(src / "moving.webp", save_all=True, append_images=frames[1:], lossless=True)
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    out = tmp_path / "out"
    assert deocclude_main([str(src), "--gan", gan, "--out", str(out), "--aligned", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{src / 'moving.webp'}: holds 2 frames (animated or multi-page)" in err
    assert sorted(p.name for p in out.iterdir()) == ["still.png"]
    assert deocclude_main([str(tmp_path / "anim.gif"), "--gan", gan, "--out", str(out), "--aligned"]) == 2
    assert one_line(capsys.readouterr().err, PROG).startswith(f"{tmp_path / 'anim.gif'}: not an image type fsggan reads")


# atomic writes: a killed run leaves whole files ---------------------------------------------

def test_killed_half_way_leaves_only_whole_files(runs, tmp_path):
    src = tmp_path / "in"
    for i in range(400):
        face(src / f"f{i:03d}.png", i, size=64)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "fsggan.cli.deocclude", str(src), "--gan", str(runs["gan_run"]),
                             "--out", str(out), "--aligned", "--batch-size", "1", "--device", "cpu",
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(p.suffix == ".png" for p in out.iterdir()):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed half-way"
    written = [p for p in out.iterdir() if p.suffix == ".png"]
    assert 0 < len(written) < 400
    for p in written:
        with Image.open(p) as im:
            im.load()  # a half-written PNG fails here
            assert im.size == (32, 32)
    others = [p.name for p in out.iterdir() if p.suffix != ".png"]
    assert all(n.startswith(".") and n.endswith(".part") for n in others), others


def test_an_interrupted_write_leaves_no_partial_file(gan, tmp_path, monkeypatch, capsys):
    """The encoder stops half-way through a file (as a kill would): the output is absent, not
    half a PNG, and no temporary file stays behind."""
    face(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()

    def half(im, fp, filename, *args, **kwargs):
        fp.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
        raise KeyboardInterrupt
    monkeypatch.setitem(Image.SAVE, "PNG", half)
    with pytest.raises(KeyboardInterrupt):
        deocclude_main([str(tmp_path / "in"), "--gan", gan, "--out", str(out), "--aligned", "--no-progress"])
    assert list(out.iterdir()) == []
