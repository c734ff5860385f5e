"""Face detection on real photos (fsggan.detect): one face in a clean LFW photo with plausible,
ordered landmarks; two faces side by side; none in a blank image; boxes mapped back to the
full photo when a big photo is shrunk; the MTCNN port equal to facenet-pytorch's own networks on
fixed inputs and its landmarks next to dlib's; one-line errors naming the fix when weights are
missing. Detectors whose package or weights are absent skip with the install line.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.files import SHARED, need
from fsggan.data.landmarks import LANDMARK_NAMES, MEAN_LANDMARKS
from fsggan.detect import DETECTORS, DetectorError, detect_faces, get_detector

pytestmark = pytest.mark.usefixtures("one_thread")

LFW = SHARED / "lfw"
PHOTOS = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0001.jpg")
FAST = ("dlib_hog", "mtcnn")   # dlib_cnn is exercised by benchmarks/detectors.py: seconds per photo


def photo(i: int = 0) -> np.ndarray:
    path = LFW / PHOTOS[i]
    need(path, "LFW photo")
    return np.asarray(Image.open(path).convert("RGB"))


def detector(name: str):
    try:
        return get_detector(name)
    except DetectorError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("name", FAST)
def test_clean_photo_gives_one_face_with_ordered_landmarks(name):
    img = photo(0)
    detector(name)
    faces = detect_faces(img, name)
    assert len(faces) == 1, [f.box for f in faces]
    f = faces[0]
    x0, y0, x1, y1 = f.box
    assert x0 < 125 < x1 and y0 < 125 < y1
    assert f.landmarks.shape == (5, 2) and f.landmarks.dtype == np.float32
    le, re, nose, ml, mr = f.landmarks
    assert le[0] < nose[0] < re[0] and ml[0] < mr[0]          # image-left first (LANDMARK_NAMES)
    assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])     # eyes above nose above mouth
    mean = MEAN_LANDMARKS["lfw"][0]                            # LFW's dlib-measured mean face
    assert np.abs(f.landmarks - mean).max() < 20, f.landmarks
    assert LANDMARK_NAMES[0] == "left_eye"


@pytest.mark.parametrize("name", FAST)
def test_two_photos_side_by_side_give_two_faces(name):
    detector(name)
    img = np.concatenate([photo(0), photo(1)], axis=1)
    faces = sorted(detect_faces(img, name), key=lambda f: f.box[0])
    assert len(faces) == 2, [f.box for f in faces]
    assert faces[0].box[2] <= 260 and faces[1].box[0] >= 240
    assert (faces[1].landmarks[:, 0] > 250).all()


@pytest.mark.parametrize("name", FAST)
def test_blank_image_gives_no_face(name):
    detector(name)
    assert detect_faces(np.full((300, 400, 3), 128, np.uint8), name) == []


@pytest.mark.parametrize("name", FAST)
def test_big_photo_is_shrunk_and_mapped_back(name):
    """A 250x250 face enlarged 4x into a 3000x2000 canvas: found in the 1024-px detection image
    and reported in the big photo's pixels, where the face really is."""
    detector(name)
    face = Image.fromarray(photo(0)).resize((1000, 1000), Image.BILINEAR)
    canvas = np.full((2000, 3000, 3), 90, np.uint8)
    canvas[700:1700, 1500:2500] = np.asarray(face)
    faces = detect_faces(canvas, name)
    assert len(faces) == 1
    expected = 4 * MEAN_LANDMARKS["lfw"][0] + [1500, 700]
    eye_dist = np.linalg.norm(expected[1] - expected[0])
    assert np.linalg.norm(faces[0].landmarks - expected, axis=1).max() < 0.35 * eye_dist
    assert detect_faces(canvas, name, min_face=600) == []


def test_min_face_and_bad_input():
    detector("mtcnn")
    assert detect_faces(photo(0), "mtcnn", min_face=200) == []
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((50, 50), np.uint8), "mtcnn")
    with pytest.raises(ValueError, match="unknown detector"):
        detect_faces(photo(0), "yolo")
    assert set(DETECTORS) == {"mtcnn", "dlib_hog", "dlib_cnn"}


# ---------------------------------------------------------------- the MTCNN port

def pattern(n: int, size: int) -> torch.Tensor:
    """A fixed, smooth normalised input (n, 3, size, size) in [-0.9, 0.9]."""
    b = torch.arange(n).view(n, 1, 1, 1).float()
    c = torch.arange(3).view(1, 3, 1, 1).float()
    i = torch.arange(size).view(1, 1, size, 1).float()
    j = torch.arange(size).view(1, 1, 1, size).float()
    return 0.9 * torch.sin(0.37 * i + 0.23 * j * (c + 1) + 1.1 * b + 0.5 * c)


# facenet-pytorch 2.6.0's own PNet / RNet / ONet classes (run once, outside fsggan) on pattern():
# an independent forward pass over the same weights, which pins the layer order, the pooling
# and the dense layers' flatten order.
REF_PNET_PROB = [0.0035873796, 0.00094055396, 0.022686342, 0.00063260517, 1.4727873e-06, 8.7922917e-06]
REF_PNET_REG = [0.031177737, -0.078129917, -0.11621469, 0.0051100291]
REF_RNET = ([0.0032347974, 0.0014050322], [[-0.25511333, -0.069538772, -0.13971683, 0.44796273],
                                           [-0.22420275, -0.14613366, -0.11598057, 0.37680352]])
REF_ONET_REG = [[0.019301638, -0.093272828, -0.023471653, 0.1677573], [0.056922365, -0.060868546, -0.050135583, 0.16641149]]
REF_ONET_LM = [[0.36354724, 0.66468573, 0.34671581, 0.15600748, 0.38041949, 0.27257127, 0.37156621, 0.59822184, 0.78390783, 0.87514603],
               [0.33780921, 0.62685889, 0.27888334, 0.15571795, 0.34362137, 0.27646768, 0.38496873, 0.60396975, 0.82084203, 0.9157666]]


def test_mtcnn_nets_equal_the_reference_on_fixed_inputs():
    mt = detector("mtcnn")
    close = dict(rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        prob, reg = mt.pnet(pattern(1, 30))
        assert prob.shape == (1, 10, 10) and reg.shape == (1, 4, 10, 10)
        assert torch.allclose(prob[0].flatten()[::17], torch.tensor(REF_PNET_PROB), **close)
        assert torch.allclose(reg[0, :, 4, 5], torch.tensor(REF_PNET_REG), **close)
        prob, reg = mt.rnet(pattern(2, 24))
        assert torch.allclose(prob, torch.tensor(REF_RNET[0]), **close)
        assert torch.allclose(reg, torch.tensor(REF_RNET[1]), **close)
        prob, reg, lm = mt.onet(pattern(2, 48))
        assert torch.allclose(reg, torch.tensor(REF_ONET_REG), **close)
        assert torch.allclose(lm, torch.tensor(REF_ONET_LM), **close)


def test_mtcnn_landmarks_land_near_dlibs():
    detector("mtcnn")
    detector("dlib_hog")
    for i in range(len(PHOTOS)):
        img = photo(i)
        m, d = detect_faces(img, "mtcnn")[0].landmarks, detect_faces(img, "dlib_hog")[0].landmarks
        eye_dist = np.linalg.norm(d[1] - d[0])
        err = np.linalg.norm(m - d, axis=1)
        assert err[:2].max() < 0.15 * eye_dist, err        # eye centres: both mean the pupil
        assert err.max() < 0.3 * eye_dist, err              # nose tip and mouth corners: looser definitions


def test_missing_weights_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(DetectorError, match="pip install --no-deps facenet-pytorch==2.6.0"):
        detect_faces(np.zeros((64, 64, 3), np.uint8), "mtcnn", weights=tmp_path)
    monkeypatch.setenv("FSGGAN_MTCNN_WEIGHTS", str(tmp_path))
    with pytest.raises(DetectorError, match="lacks pnet.pt"):
        get_detector("mtcnn")
    with pytest.raises(DetectorError, match=r"fsggan\[landmarks\]"):
        get_detector("dlib_hog", weights=tmp_path)


def test_mtcnn_weights_found_in_an_installed_package_without_importing_it(tmp_path, monkeypatch):
    from fsggan.detect.mtcnn_nets import FILES, weights_folder

    try:
        real = weights_folder()
    except DetectorError as e:
        pytest.skip(str(e))
    data = tmp_path / "facenet_pytorch" / "data"
    data.mkdir(parents=True)
    (data.parent / "__init__.py").write_text("raise ImportError('fsggan must not import facenet_pytorch')\n")
    for f in FILES:
        (data / f).symlink_to(real / f)
    monkeypatch.delenv("FSGGAN_MTCNN_WEIGHTS", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert weights_folder() == data
    assert "facenet_pytorch" not in sys.modules
