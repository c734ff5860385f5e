"""Identity networks: official checkpoint formats, the FaceEmbedder interface, real weights on LFW."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fsggan.models.identity import (
    EMBEDDER_NAMES, ArcFaceEmbedder, FaceEmbedder, IResNet, LightCNN9, LightCNN29, LightCNN29v2,
    MobileFaceNet, WeightsError, build_embedder, iresnet100,
)
from fsggan.models.identity.base import center_crop_aspect

from helpers.files import SHARED
from helpers.identity import genuine_impostor

LIGHTCNN_KEYS = SHARED / "reference" / "lightcnn_official_keys.json"
MOBILEFACENET = SHARED / "weights" / "mobilefacenet_casia_068.ckpt"
LIGHTCNN = {"lightcnn9": ("LightCNN-9", LightCNN9), "lightcnn29": ("LightCNN-29", LightCNN29),
            "lightcnn29v2": ("LightCNN-29v2", LightCNN29v2)}
DIMS = {"lightcnn9": 256, "lightcnn29": 256, "lightcnn29v2": 256, "mobilefacenet": 128,
        "arcface_r50": 512, "arcface_r100": 512}


def images(b=2, h=64, w=64, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def randomize_bn_stats(net: nn.Module, seed=0):
    """Give BatchNorm buffers non-default values so a round trip checks them too."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


# ------------------------------------------------------------------ LightCNN

@pytest.mark.parametrize("name", list(LIGHTCNN))
def test_lightcnn_keys_and_shapes_equal_official(name):
    if not LIGHTCNN_KEYS.is_file():
        pytest.skip(f"reference key list not found at {LIGHTCNN_KEYS}")
    ref_name, cls = LIGHTCNN[name]
    official = json.loads(LIGHTCNN_KEYS.read_text())[ref_name]
    ours = {"module." + k: list(v.shape) for k, v in cls().state_dict().items()}
    assert ours == official


@pytest.mark.parametrize("name", list(LIGHTCNN))
def test_lightcnn_loads_official_format(name, tmp_path):
    src = build_embedder(name)
    path = tmp_path / f"{name}.pth.tar"
    sd = {"module." + k: v for k, v in src.net.state_dict().items()}
    torch.save({"epoch": 80, "arch": name, "state_dict": sd, "prec1": torch.tensor(98.0)}, path)
    dst = build_embedder(name, path)
    x = images(1, 128, 128)
    torch.testing.assert_close(dst(x), src(x), rtol=0, atol=1e-6)
    assert dst(x).shape == (1, 256)


def test_lightcnn_accepts_bare_state_dict_and_other_class_count(tmp_path):
    src = LightCNN9(num_classes=10)
    torch.save(src.state_dict(), tmp_path / "bare.pth")
    dst = build_embedder("lightcnn9", tmp_path / "bare.pth")
    assert dst.net.fc2.out_features == 10
    x = images(1) * 0.5
    assert torch.equal(dst.net(dst.preprocess(x)), src(dst.preprocess(x)))


def test_lightcnn_input_is_gray_01_at_128():
    emb = build_embedder("lightcnn9")
    x = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 40, 30)  # pure red
    g = emb.preprocess(x)
    assert g.shape == (1, 1, 128, 128)
    torch.testing.assert_close(g, torch.full_like(g, 0.299))
    assert emb.preprocess(torch.ones(1, 3, 128, 128)).min() == pytest.approx(1.0)
    assert emb.preprocess(-torch.ones(1, 3, 128, 128)).max() == pytest.approx(0.0)


# ------------------------------------------------------------------ ArcFace iResNet

def test_arcface_r50_strict_round_trip(tmp_path):
    src = ArcFaceEmbedder(50)
    randomize_bn_stats(src.net)
    sd = src.net.state_dict()
    for key in ("conv1.weight", "bn1.running_var", "prelu.weight", "layer1.0.bn1.weight", "layer1.0.bn3.bias",
                "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_mean", "layer3.13.conv2.weight",
                "bn2.weight", "fc.weight", "features.weight", "features.running_var"):
        assert key in sd, key
    assert sd["fc.weight"].shape == (512, 512 * 7 * 7)
    torch.save(sd, tmp_path / "backbone.pth")  # arcface_torch saves backbone.state_dict() as is
    dst = build_embedder("arcface_r50", tmp_path / "backbone.pth")  # load_state_dict(strict=True) inside
    x = images(1, 112, 112)
    torch.testing.assert_close(dst(x), src(x), rtol=0, atol=1e-6)


def test_arcface_r100_shapes():
    with torch.device("meta"):  # no memory, no init time
        net = iresnet100()
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [3, 13, 30, 3]
    sd = net.state_dict()
    assert "layer3.29.bn3.running_var" in sd and "layer4.0.downsample.0.weight" in sd
    assert sd["fc.weight"].shape == (512, 25088) and isinstance(net.features, nn.BatchNorm1d)
    assert isinstance(net, IResNet)


# ------------------------------------------------------------------ wrong files

def test_weights_errors_name_the_file(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    wrong_keys = tmp_path / "wrong_keys.pth"
    torch.save({"state_dict": {"module.foo.weight": torch.zeros(3)}}, wrong_keys)
    a_list = tmp_path / "a_list.pth"
    torch.save([torch.zeros(1)], a_list)
    cases = [("lightcnn29v2", tmp_path / "missing.pth.tar", "no such file"),
             ("arcface_r50", text, "not a readable PyTorch checkpoint"),
             ("lightcnn9", wrong_keys, "foo.weight"),
             ("mobilefacenet", a_list, "not a state dict")]
    for name, path, problem in cases:
        with pytest.raises(WeightsError) as info:
            build_embedder(name, path)
        msg = str(info.value)
        assert str(path) in msg and problem in msg and "Official weights" in msg, msg
        assert isinstance(info.value, RuntimeError)
    with pytest.raises(WeightsError, match=r"'state_dict' whose keys start with 'module\.'.*AlfredXiangWu/LightCNN"):
        build_embedder("lightcnn29", wrong_keys)
    with pytest.raises(WeightsError, match="arcface_torch"):
        build_embedder("arcface_r50", wrong_keys)


def test_shape_mismatch_lists_the_key(tmp_path):
    sd = MobileFaceNet().state_dict()
    sd["linear1.conv.weight"] = torch.zeros(64, 512, 1, 1)
    path = tmp_path / "mfn.ckpt"
    torch.save({"epoch": 1, "net_state_dict": sd}, path)
    with pytest.raises(WeightsError, match=r"shape mismatch: linear1\.conv\.weight \(64, 512, 1, 1\)") as info:
        build_embedder("mobilefacenet", path)
    assert "Xiaoccer/MobileFaceNet_Pytorch" in str(info.value)


def test_unknown_name():
    with pytest.raises(ValueError, match="lightcnn29v2"):
        build_embedder("vggface")


# ------------------------------------------------------------------ interface

@pytest.mark.parametrize("name", [n for n in EMBEDDER_NAMES if n != "arcface_r100"])
def test_embedder_interface(name):
    emb = build_embedder(name)
    assert isinstance(emb, FaceEmbedder) and emb.dim == DIMS[name]
    assert not any(p.requires_grad for p in emb.parameters())

    parent = nn.Sequential(nn.Conv2d(3, 3, 1), emb)
    parent.train()
    emb.train(True)
    assert not any(m.training for m in emb.modules())
    assert parent[0].training

    b = 2 if name in ("lightcnn9", "mobilefacenet") else 1  # keep the big nets cheap on CPU
    x = images(b, 72, 60).requires_grad_(True)
    f = emb(x)
    assert f.shape == (b, emb.dim) and f.dtype == torch.float32
    torch.testing.assert_close(f.norm(dim=1), torch.ones(b))
    f[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(emb.embed(x), f)


def test_all_names_build():
    assert set(EMBEDDER_NAMES) == set(DIMS)
    with torch.device("meta"):
        assert build_embedder("arcface_r100").dim == 512


def test_mobilefacenet_crop_and_flip():
    assert center_crop_aspect(torch.zeros(1, 3, 128, 128), 112, 96).shape[-2:] == (128, 110)
    assert center_crop_aspect(torch.zeros(1, 3, 100, 200), 112, 96).shape[-2:] == (100, 86)
    emb = build_embedder("mobilefacenet", flip=True, align=False)  # the template warp is not mirror-exact
    assert emb.dim == 256
    x = images(1, 128, 128)
    x = torch.cat([x[..., :64], x[..., :64].flip(-1)], dim=-1)  # mirror-symmetric face
    f = emb(x)
    assert f.shape == (1, 256)
    torch.testing.assert_close(f[:, :128], f[:, 128:], atol=1e-5, rtol=0)
    assert build_embedder("mobilefacenet", aspect="resize").preprocess(x).shape == (1, 3, 112, 96)



def test_mobilefacenet_folded_batchnorm_is_the_same_function(tmp_path):
    net = MobileFaceNet()
    randomize_bn_stats(net)
    torch.save({"epoch": 1, "net_state_dict": net.state_dict()}, tmp_path / "mfn.ckpt")
    emb = build_embedder("mobilefacenet", tmp_path / "mfn.ckpt").place("cpu")  # folded, channels_last
    assert not any(isinstance(m, nn.BatchNorm2d) for m in emb.modules())
    assert emb.net.conv1.conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = emb.preprocess(images(2, 64, 64))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    fa, fb = net.eval()(xa), emb.net(xb)
    torch.testing.assert_close(fb, fa, atol=1e-4, rtol=1e-4)
    w = torch.randn_like(fa)
    (fa * w).sum().backward()
    (fb * w).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, atol=1e-4, rtol=1e-3)  # the identity loss's gradient to G

# ------------------------------------------------------------------ real weights

def _lfw_people(root: Path, people: int, per_person: int):
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    chosen = [f for f in folders if len(list(f.glob("*.jpg"))) >= per_person]
    step = max(1, len(chosen) // people)
    return [sorted(f.glob("*.jpg"))[:per_person] for f in chosen[::step][:people]]


def _load_center(path: Path, crop: int) -> torch.Tensor:
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    t = torch.from_numpy(img).permute(2, 0, 1)
    top, left = (t.shape[1] - crop) // 2, (t.shape[2] - crop) // 2
    return t[:, top : top + crop, left : left + crop]


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def _real_mobilefacenet_and_lfw_people(people: int, per_person: int) -> list:
    """LFW image groups for the real-weights tests; skips when the weights or faces are absent."""
    lfw = SHARED / "lfw"
    if not MOBILEFACENET.is_file():
        pytest.skip(f"real MobileFaceNet weights not found at {MOBILEFACENET}")
    if not lfw.is_dir():
        pytest.skip(f"LFW images not found at {lfw}")
    groups = _lfw_people(lfw, people=people, per_person=per_person)
    if len(groups) < people:
        pytest.skip(f"need {people} LFW people with >= {per_person} images under {lfw}, found {len(groups)}")
    return groups


def test_mobilefacenet_real_weights_verify_lfw():
    """Real CASIA MobileFaceNet on unaligned LFW centre crops: same-person pairs are far
    more similar than different-person pairs. Measured (12 people x 3 images, 120 px
    centre crop): genuine ~0.49, impostor ~0.05, AUC ~0.98; the bounds leave margin."""
    groups = _real_mobilefacenet_and_lfw_people(people=12, per_person=3)

    emb = build_embedder("mobilefacenet", MOBILEFACENET)
    x = torch.stack([_load_center(p, 120) for g in groups for p in g])
    ids = np.repeat(np.arange(len(groups)), 3)
    with torch.no_grad():
        genuine, impostor = genuine_impostor(emb(x), ids)
    auc = _auc(genuine, impostor)
    print(f"\nMobileFaceNet on LFW ({len(groups)} people x 3, {len(genuine)} genuine / {len(impostor)} impostor pairs): "
          f"genuine {genuine.mean():.3f}, impostor {impostor.mean():.3f}, "
          f"gap {genuine.mean() - impostor.mean():.3f}, ROC AUC {auc:.3f}")
    assert genuine.mean() - impostor.mean() > 0.25
    assert auc > 0.9


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["lightcnn29v2", "mobilefacenet", "arcface_r50"])
def test_embedder_bf16_autocast_cuda(name):
    emb = build_embedder(name).cuda()
    x = images(2, 128, 128).cuda().requires_grad_(True)
    with torch.no_grad():
        ref = emb(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        f = emb(x)
    assert f.dtype == torch.float32 and torch.isfinite(f).all()
    torch.testing.assert_close(f.norm(dim=1), torch.ones(2, device="cuda"))
    # bf16 features point where the fp32 ones do (loose bound: random weights, not calibrated on a GPU)
    assert (f * ref).sum(dim=1).min() > 0.95
    f.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_crop_template_matches_data_template():
    from fsggan.data.landmarks import template_landmarks
    from fsggan.models.identity.base import FSGGAN_CROP_TEMPLATE

    measured = template_landmarks("lfw", image_size=128) / 128.0
    assert np.allclose(np.asarray(FSGGAN_CROP_TEMPLATE), measured, atol=2e-3)


@pytest.mark.parametrize("size,reference", [((112, 96), "REFERENCE_112x96"), ((112, 112), "REFERENCE_112x112")])
def test_align_to_reference_puts_landmarks_on_the_reference(size, reference):
    from fsggan.models.identity import base

    ref = getattr(base, reference)
    # A bright dot at each template landmark must land on the reference point, up to the
    # residual of a scale + translation fit between two slightly different face shapes.
    for k in range(5):
        img = -torch.ones(1, 1, 128, 128)
        u, v = base.FSGGAN_CROP_TEMPLATE[k]
        cx, cy = int(u * 128), int(v * 128)
        img[0, 0, cy - 1:cy + 2, cx - 1:cx + 2] = 1.0
        out = base.align_to_reference(img, size, ref)[0, 0]
        iy, ix = divmod(int(out.argmax()), size[1])
        assert abs(ix - ref[k][0]) <= 3.5 and abs(iy - ref[k][1]) <= 3.5, (k, ix, iy, ref[k])


# ------------------------------------------------------------------ LightCNN alignment

def test_lightcnn_alignment_puts_eye_and_mouth_centres_on_the_authors_template():
    """LightCNN's test faces (authors' README): 128x128, eye centre horizontally centred and
    40 px from the top, mouth centre 48 px below it. A dot at the eye (mouth) centre of
    fsggan's crop template must land there."""
    from fsggan.models.identity.base import FSGGAN_CROP_TEMPLATE, rgb_to_gray01

    emb = build_embedder("lightcnn9")
    t = np.asarray(FSGGAN_CROP_TEMPLATE)
    for points, target in (((0, 1), (64, 40)), ((3, 4), (64, 88))):
        u, v = t[list(points)].mean(0) * 128
        img = -torch.ones(1, 3, 128, 128)
        img[..., round(v) - 1:round(v) + 2, round(u) - 1:round(u) + 2] = 1.0
        out = emb.preprocess(img)[0, 0]
        assert out.shape == (128, 128)
        iy, ix = divmod(int(out.argmax()), 128)
        assert abs(ix - target[0]) <= 1 and abs(iy - target[1]) <= 1, (points, ix, iy)
    # align=False: the former resize-only input, for faces already aligned the LightCNN way
    x = images(1, 128, 128)
    plain = build_embedder("lightcnn9", align=False).preprocess(x)
    assert torch.equal(plain, rgb_to_gray01(x))
    assert (emb.preprocess(x) - plain).abs().mean() > 0.05


def _load_fsggan_crop(path: Path) -> torch.Tensor:
    """An LFW image cut like fsggan's LFW faces (fsggan.data.faces.DEFAULT_CROPS["lfw"]), 128 px."""
    from PIL import Image

    img = Image.open(path).convert("RGB").crop((61, 66, 189, 194)).resize((128, 128), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)


def test_eye_mouth_alignment_with_real_mobilefacenet():
    """The LightCNN warp (align_eyes_mouth), checked with real weights: LightCNN's are not
    here, so MobileFaceNet stands in, fed through the same rule set to ITS template (eye
    centre (48, 51.6), mouth centre 40.7 px below). On fsggan's LFW crops it must agree
    with the 5-point fit the MobileFaceNet wrapper uses; an 8 px error in the rule must not.
    Measured (12 people x 3, 128 px): AUC unaligned 0.963, 5-point 0.996, eye/mouth rule
    0.997; cosine to the 5-point embedding: rule 0.98, rule with ec_y + 8 px 0.64,
    unaligned 0.54 (100 people: AUC 0.955 / 0.995 / 0.994; cosine 0.98 / 0.68 / 0.51)."""
    from fsggan.models.identity.base import REFERENCE_112x96, align_eyes_mouth, align_to_reference

    groups = _real_mobilefacenet_and_lfw_people(people=12, per_person=3)

    net = build_embedder("mobilefacenet", MOBILEFACENET, align=False, aspect="resize")  # input as given
    ref = np.asarray(REFERENCE_112x96)
    ec_y = ref[:2, 1].mean()
    ec_mc_y = ref[3:5, 1].mean() - ec_y
    x = torch.stack([_load_fsggan_crop(p) for g in groups for p in g])
    ids = np.repeat(np.arange(len(groups)), 3)
    with torch.no_grad():
        five = net(align_to_reference(x, (112, 96)))
        rule = net(align_eyes_mouth(x, (112, 96), ec_mc_y, ec_y))
        off = net(align_eyes_mouth(x, (112, 96), ec_mc_y, ec_y + 8))
        unaligned = build_embedder("mobilefacenet", MOBILEFACENET, align=False)(x)
    iu = np.triu_indices(len(ids), 1)
    same = ids[iu[0]] == ids[iu[1]]

    def auc(f):
        sim = (f @ f.T).numpy()[iu]
        return _auc(sim[same], sim[~same])

    agree = {k: (f * five).sum(1).mean().item() for k, f in (("rule", rule), ("off", off), ("unaligned", unaligned))}
    aucs = {k: auc(f) for k, f in (("unaligned", unaligned), ("five", five), ("rule", rule))}
    print(f"\nMobileFaceNet on fsggan LFW crops: AUC {aucs}; cosine to the 5-point embedding {agree}")
    assert agree["rule"] > 0.95 and agree["off"] < 0.8 and agree["unaligned"] < 0.8
    assert aucs["rule"] > 0.98 and aucs["rule"] >= aucs["unaligned"]
