"""Whole photos: alignment, paste-back, FSGGAN.deocclude_photo and fsggan-deocclude on
real LFW photos from ../shared/data, with a tiny untrained model (32 px, widths 4).

Faces come from a stub detector that knows where the LFW photos are: each 250x250 tile of a
test photo that is not blank holds one LFW photo, whose landmarks are LFW's mean landmarks
(the template), so the tests do not depend on a detector. One test uses the real detector
(fsggan.detect) and skips where it is not installed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.photos import DATA, OTHER_PHOTO, TILE, lfw, occluded, stub_detect
from helpers.checkpoints import write_checkpoint
from helpers.training import GEN_KW, VAE_KW
from fsggan.cli.deocclude import main as deocclude_main
from fsggan.data.faces import DEFAULT_CROPS
from fsggan.images import crop_resize
from fsggan.models import VAE, UNetGenerator
from fsggan.photos import deocclude_photo, deocclude_photos, estimate_similarity, feather_mask, paste_back, warp_to_crop
from fsggan.photos.align import apply, invert
from fsggan.photos.tone import is_grey_face, to_grey
from fsggan.api import FSGGAN

pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = FSGGAN(VAE(**VAE_KW), UNetGenerator(base_channels=4), device="cpu", image_size=32)
    m.data = DATA
    return m


@pytest.fixture
def photo_checkpoint(tmp_path):
    """A Stage II checkpoint whose config names its dataset (LFW, 32 px)."""
    torch.manual_seed(0)
    return write_checkpoint(tmp_path / "gan.pt", {"generator": UNetGenerator(**GEN_KW), "vae": VAE(**VAE_KW)},
                            {"generator": GEN_KW, "vae": VAE_KW, "data": DATA})


@pytest.fixture
def stub(monkeypatch):
    """fsggan-deocclude finds faces with the stub detector."""
    monkeypatch.setattr("fsggan.photos.deocclude.face_finder", lambda detector, min_face: stub_detect)


# ---------------------------------------------------------------- geometry

def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    angle, scale, shift = np.radians(23.0), 0.37, np.array([12.5, -40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + shift
    m = estimate_similarity(src, dst)
    assert np.allclose(m[:, :2], rot, atol=1e-9) and np.allclose(m[:, 2], shift, atol=1e-7)
    assert np.allclose(apply(invert(m), dst), src, atol=1e-7)
    noisy = estimate_similarity(src, dst + rng.normal(0, 0.5, dst.shape))  # least squares: close, not exact
    assert np.allclose(noisy[:, :2], rot, atol=0.01)
    mirrored = estimate_similarity(src, dst * [-1, 1])  # never a reflection
    assert np.linalg.det(mirrored[:, :2]) > 0
    with pytest.raises(ValueError, match="coincide"):
        estimate_similarity(np.ones((5, 2)), dst)
    # weights: equal weights are plain least squares; a point weighted near zero stops counting
    moved = dst.copy()
    moved[4] += 30.0
    assert np.allclose(estimate_similarity(src, moved, np.full(5, 3.0)), estimate_similarity(src, moved), atol=1e-12)
    assert np.allclose(estimate_similarity(src, moved, [1, 1, 1, 1, 1e-12]), m, atol=1e-6)
    assert not np.allclose(estimate_similarity(src, moved), m, atol=1e-3)


def test_align_then_inverse_warp_round_trips_the_face():
    photo = lfw()
    angle, s = np.radians(12.0), 1.0  # crop pixels = photo pixels, turned: nothing is lost to scale
    rot = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([125.0, 130.0])
    m = np.hstack([rot, (np.array([64.0, 64.0]) - rot @ centre)[:, None]])  # photo -> 128 px crop
    crop = warp_to_crop(photo, m, 128)
    back = np.zeros_like(photo)
    mask = feather_mask(128)
    paste_back(back, crop, m, mask)
    inside = apply(invert(m), np.array([[40, 40], [88, 88]]))  # well inside the crop's feather
    x0, y0 = np.ceil(inside.min(0)).astype(int)
    x1, y1 = np.floor(inside.max(0)).astype(int)
    diff = np.abs(back[y0:y1, x0:x1].astype(float) - photo[y0:y1, x0:x1])
    assert diff.mean() < 2.0, diff.mean()  # two bicubic resamplings of a JPEG


def test_feather_is_narrow_and_zero_at_the_crop_edge():
    """The paste-back feather hands only a 3 px border back to the photo (what it hands back keeps
    the occluder) at any crop size, and never the outermost pixel."""
    for size in (64, 128, 256):
        mask = feather_mask(size)
        assert mask.shape == (size, size)
        assert mask[0].max() == 0 and mask[:, -1].max() == 0
        assert 0 < mask[1, size // 2] < mask[2, size // 2] < 1
        assert np.allclose(mask[3:-3, 3:-3], 1.0)
    with pytest.raises(ValueError, match="erode"):
        feather_mask(8, erode=4)


def test_fill_to_edge_replaces_an_occluder_up_to_the_crop_border_and_feathers_the_kept_face():
    """With ``fill_to_edge`` the pixels the model replaced reach the crop's own edge (the feather
    would leave the occluder's rim there); where the model changed the face by a few levels, its
    change still fades out towards the edge (weight = change / 25 levels)."""
    photo = np.full((96, 96, 3), 120, np.uint8)
    photo[60:, :] = (20, 200, 30)  # an "occluder" across the crop's lower border
    m = np.array([[1.0, 0.0, -16.0], [0.0, 1.0, -16.0]])  # photo (16..80) -> 64 px crop, no resampling
    crop = warp_to_crop(photo, m, 64)
    output = crop.copy()
    output[44:] = 120  # the model removed it
    output[:20] += 6  # and moved the kept face by a few levels
    pasted = {}
    for fill in (False, True):
        pasted[fill] = photo.copy()
        paste_back(pasted[fill], output, m, input_crop=crop, fill_to_edge=fill)
    bottom = slice(76, 80), slice(30, 60)  # the crop's last 4 rows, inside the occluder
    assert np.abs(pasted[True][bottom].astype(float) - 120).max() <= 1  # replaced up to the border
    assert np.abs(pasted[False][bottom].astype(float) - 120).max() > 50  # the feather kept its rim
    top = pasted[True][16, 30:60].astype(float)  # the crop's first row: 6 levels * about 6 / 25
    assert 0 < np.abs(top - 120).max() <= 2 and np.abs(pasted[True][21, 30:60].astype(float) - 126).max() <= 1
    assert np.array_equal(pasted[True][:16], photo[:16]) and np.array_equal(pasted[True][81:], photo[81:])


def test_template_landmarks_give_the_fixed_lfw_crop(model):
    """An LFW photo whose landmarks are the template lands on the fixed --crop lfw crop."""
    photo = lfw()
    _, faces = deocclude_photo(model, photo, detect=stub_detect)
    fixed = crop_resize(photo, DEFAULT_CROPS["lfw"].box_for(TILE, TILE), 32)
    assert np.abs(faces[0].input.astype(float) - fixed).mean() < 0.5  # the same crop, to rounding


# ---------------------------------------------------------------- photos in memory

def test_photo_comes_back_whole_changed_in_the_face_only(model):
    photo = occluded(lfw())
    out, faces = deocclude_photo(model, photo, detect=stub_detect)
    assert out.shape == photo.shape and out.dtype == np.uint8 and len(faces) == 1
    f = faces[0]
    assert f.input.shape == f.output.shape == f.structure.shape == (32, 32, 3)
    diff = np.abs(out.astype(float) - photo) / 255
    x0, y0, x1, y1 = f.region
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert diff[outside].mean() <= 1 / 255 and diff[outside].max() == 0  # untouched, bit for bit
    bx0, by0, bx1, by1 = (int(v) for v in f.box)
    assert diff[by0:by1, bx0:bx1].mean() > 5 / 255  # the (untrained) model changed the face
    assert 40 < x1 - x0 < 200  # the face's region, not the photo


def test_notebook_api_and_pil_photos(model):
    photo = lfw()
    a, _ = model.deocclude_photo(photo, detect=stub_detect)
    b, faces = model.deocclude_photo(Image.fromarray(photo), detect=stub_detect)
    assert np.array_equal(a, b) and len(faces) == 1 and faces[0].to_json()["score"] == 1.0


def test_two_photos_side_by_side_and_one_without_a_face(model):
    pair = np.concatenate([lfw(), lfw(OTHER_PHOTO)], axis=1)
    blank = np.full((TILE, TILE, 3), 120, np.uint8)
    (out, faces), (same, none) = deocclude_photos(model, [pair, blank], detect=stub_detect, batch_size=1)
    assert out.shape == pair.shape and len(faces) == 2
    assert faces[0].box[0] < TILE <= faces[1].box[0]
    assert none == [] and np.array_equal(same, blank)


class _PatchPainter:
    """A stand-in model that keeps the face and paints a skin-coloured patch over its middle,
    as G does on a grey face it takes for an occluder."""
    image_size, data = 32, DATA

    def run(self, x, fill=None, mode=None):
        y = x.clone()
        y[:, 0, 12:20, 8:24], y[:, 1, 12:20, 8:24], y[:, 2, 12:20, 8:24] = 0.5, 0.0, -0.3
        return y, None


def _skimage_photo(name: str) -> np.ndarray:
    """A public-domain / CC0 photograph bundled with scikit-image, as a 250x250 RGB tile."""
    import skimage.data

    im = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return np.array(im.resize((TILE, TILE), Image.Resampling.BICUBIC))


def test_a_black_and_white_photo_comes_back_grey_and_a_colour_one_untouched_by_it():
    """``keep_grey``: the patch painted on a grey face is made grey (the photo stays black and
    white), with a coloured occluder over the face that the model replaced; on a colour face,
    and with ``keep_grey=False``, the model's colours are pasted as they are."""
    grey, painter = _skimage_photo("camera"), _PatchPainter()
    _, (face,) = deocclude_photo(painter, grey, detect=stub_detect)
    (x0, y0), (x1, y1) = apply(invert(face.matrix), np.array([[10.0, 13.0], [22.0, 19.0]])).astype(int)
    grey[y0:y1, x0:x1] = (30, 160, 220)  # a coloured occluder inside the painted patch
    kept, (face,) = deocclude_photo(painter, grey, detect=stub_detect)
    spread = kept.max(-1).astype(int) - kept.min(-1)
    region = (slice(face.region[1], face.region[3]), slice(face.region[0], face.region[2]))
    assert face.output.std(-1).max() == 0  # the output crop is grey
    assert np.percentile(spread[region], 99) <= 3 and spread[region].max() < 40  # the occluder's colour gone (its
    # outline blurred by the paste-back's detail keeping leaves a few levels)
    assert np.abs(kept[y0:y1, x0:x1].astype(int) - grey[y0:y1, x0:x1]).mean() > 50
    coloured, _ = deocclude_photo(painter, grey, detect=stub_detect, keep_grey=False)
    assert np.percentile((coloured.max(-1).astype(int) - coloured.min(-1))[region], 90) > 20
    colour = _skimage_photo("astronaut")
    a, _ = deocclude_photo(painter, colour, detect=stub_detect)
    b, _ = deocclude_photo(painter, colour, detect=stub_detect, keep_grey=False)
    assert np.array_equal(a, b) and not np.array_equal(a, colour)


def test_grey_face_test_sees_jpeg_noise_as_grey_and_a_pale_colour_face_as_colour():
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(40, 200, (32, 32, 1)), 3, axis=2)
    noisy = np.clip(grey + rng.integers(-3, 4, grey.shape), 0, 255).astype(np.uint8)
    assert is_grey_face(noisy, noisy)
    pale = noisy.copy()
    pale[..., 0] = np.clip(pale[..., 0].astype(int) + 12, 0, 255)  # a faint warm cast: still colour
    assert not is_grey_face(pale, pale)
    repainted = noisy.copy()
    repainted[:26] = (200, 60, 40)  # the model replaced most of the crop: too little kept to tell
    assert not is_grey_face(noisy, repainted)
    assert to_grey(np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)).tolist() == [[[76] * 3, [29] * 3]]


@pytest.mark.parametrize("name", ["mtcnn", "dlib_hog"])   # the default, and the dlib alternative
def test_two_photos_side_by_side_with_the_real_detector(name):
    detect = pytest.importorskip("fsggan.detect", reason="fsggan.detect (the face detectors) is not installed")
    try:
        detect.get_detector(name)
    except detect.DetectorError as exc:  # weights from an install line of the README (CI runs it)
        pytest.skip(str(exc))
    pair = np.concatenate([lfw(), lfw(OTHER_PHOTO)], axis=1)
    centres = [np.asarray(f.landmarks, float).mean(0) for f in detect.detect_faces(pair, name)]
    box = DEFAULT_CROPS["lfw"].box
    for x in (0, TILE):  # the person of each photo (LFW photos may show others behind them)
        assert sum(box[0] <= cx - x <= box[2] and box[1] <= cy <= box[3] for cx, cy in centres) == 1


# ---------------------------------------------------------------- fsggan-deocclude

def test_cli_photos_sidecars_faces_and_exif(photo_checkpoint, stub, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(occluded(lfw())).save(src / "one.jpg", quality=95)
    pair = np.concatenate([lfw(), lfw(OTHER_PHOTO)], axis=1)  # 500 wide, 250 high upright
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter; viewers turn it 90 degrees clockwise
    Image.fromarray(pair).transpose(Image.Transpose.ROTATE_90).save(src / "sub" / "pair.jpg", exif=exif, quality=95)
    Image.fromarray(np.full((TILE, TILE, 3), 200, np.uint8)).save(src / "wall.png")
    out = tmp_path / "out"
    assert deocclude_main([str(src), "--gan", str(photo_checkpoint), "--out", str(out), "--save-faces", "--batch-size", "2",
                           "--device", "cpu"]) == 1  # one photo skipped: not all written
    captured = capsys.readouterr()
    assert "wrote 2 photo(s) with 3 face(s)" in captured.out
    assert "1 photo(s) with no face found (skipped, not written):" in captured.err and "wall.png" in captured.err
    assert Image.open(out / "one.jpg").size == (TILE, TILE) and not (out / "wall.png").exists()
    assert Image.open(out / "sub" / "pair.jpg").size == (2 * TILE, TILE)  # upright
    side = json.loads((out / "sub" / "pair.jpg.json").read_text())
    assert (side["width"], side["height"]) == (2 * TILE, TILE) and len(side["faces"]) == 2
    assert set(side["faces"][0]) == {"box", "landmarks", "score"} and len(side["faces"][0]["landmarks"]) == 5
    assert not (out / "wall.png.json").exists()  # nothing is written for a skipped photo
    for kind in ("input", "structure", "output"):
        assert Image.open(out / "faces" / "sub" / f"pair.jpg.face1.{kind}.png").size == (32, 32)


def test_cli_bad_photos_behave_as_crops(photo_checkpoint, stub, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    good = occluded(lfw())
    Image.fromarray(good).save(src / "good.jpg", quality=95)
    data = (src / "good.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(good[:20, :20]).save(src / "tiny.png")
    Image.fromarray((good[..., 0].astype(np.uint16) * 257)).save(src / "deep.png")  # 16-bit gray
    Image.fromarray(good).convert("CMYK").save(src / "print.jpg")
    Image.fromarray(np.tile(good, (2, 2, 1))).save(src / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)  # 500x500 counts as implausibly large
    out = tmp_path / "out"
    assert deocclude_main([str(src), "--gan", str(photo_checkpoint), "--out", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.splitlines()
    i = err.index("3 input(s) could not be read:")
    listed = sorted(err[i + 1:])
    names = [line.split(":")[0].strip() for line in listed]
    assert names == [str(src / n) for n in ("cut.jpg", "huge.png", "tiny.png")]
    assert "corrupt" in listed[0] and "implausibly large" in listed[1] and "smaller than the 32 px" in listed[2]
    assert sorted(p.name for p in out.glob("*.*g")) == ["deep.png", "good.jpg", "print.jpg"]


def test_cli_without_a_detection_module(photo_checkpoint, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(lfw()).save(src / "a.jpg")

    def missing(detector, min_face):
        raise ImportError("face detection is not available (no module); for face crops use --aligned")
    monkeypatch.setattr("fsggan.photos.deocclude.face_finder", missing)
    assert deocclude_main([str(src), "--gan", str(photo_checkpoint), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == ("fsggan-deocclude: error: face detection is not available (no module); "
                                       "for face crops use --aligned\n")
