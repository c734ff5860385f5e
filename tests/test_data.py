"""Data: image reading (bad inputs), readers, identity-disjoint splits, protocol, prepare."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fsggan.data import (
    DEFAULT_CROPS,
    DatasetError,
    FaceRecord,
    ImageError,
    PreparedSet,
    SplitError,
    check_disjoint,
    load_face,
    make_protocol,
    protocol_identities,
    read_celeba,
    read_celeba_partition,
    read_identity_list,
    read_image_folder,
    read_lfw,
    read_rgb,
    read_rgba,
    split_identities,
    validate_protocol,
)
from fsggan.cli.prepare_data import main as prepare_data_main
from fsggan.data.config import load_data_config
from fsggan.data.prepare import prepare_data

from helpers.files import REPO, SHARED, need

LFW = SHARED / "lfw"


def need_lfw():
    need(LFW, "real LFW")


def face_image(seed: int, size=(250, 250)) -> np.ndarray:
    """A synthetic 'face': smooth colour field with a darker ellipse, enough to crop and encode."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(60, 200, 3)
    img = base + 30 * np.sin(xx[..., None] / (15 + seed % 7)) + 20 * np.cos(yy[..., None] / 23)
    inside = ((xx - w / 2) / (w * 0.25)) ** 2 + ((yy - h / 2) / (h * 0.33)) ** 2 < 1
    img[inside] *= 0.7
    return np.clip(img, 0, 255).astype(np.uint8)


def write_lfw_fixture(root: Path, people: dict[str, int]) -> Path:
    for p, n in people.items():
        (root / p).mkdir(parents=True)
        for i in range(1, n + 1):
            Image.fromarray(face_image(hash((p, i)) % 1000)).save(root / p / f"{p}_{i:04d}.jpg", quality=90)
    return root


# ============================================================ images / bad input
def test_read_rgb_conversions(tmp_path):
    g = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (40, 1))[:, :40]
    Image.fromarray(g, "L").save(tmp_path / "gray.jpg")
    arr, note = read_rgb(tmp_path / "gray.jpg")
    assert arr.shape == (40, 40, 3) and note == "grayscale"
    assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])

    # 16-bit grayscale PNG: scaled by the bit depth, not clipped at 255
    v = np.full((40, 40), 32896, np.uint16)
    v[:, :20] = 65535
    Image.fromarray(v).save(tmp_path / "deep.png")
    arr, note = read_rgb(tmp_path / "deep.png")
    assert note == "16bit" and arr[0, 0, 0] == 255 and arr[0, 30, 0] == 128

    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    arr, note = read_rgb(tmp_path / "cmyk.jpg")
    assert note == "cmyk" and arr[20, 20, 0] > 200 and arr[20, 20, 1] < 60  # red

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[:, :20, 3] = 255  # left half opaque blue, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    arr, note = read_rgb(tmp_path / "rgba.png")
    assert note == "alpha" and tuple(arr[0, 0]) == (0, 0, 255) and tuple(arr[0, 39]) == (255, 255, 255)

    Image.fromarray(face_image(1)[:, :, 0], "L").convert("P").save(tmp_path / "pal.png")
    assert read_rgb(tmp_path / "pal.png")[0].shape == (250, 250, 3)


def test_read_rgb_bad_files_raise_clear_errors(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(face_image(3)).save(good, quality=95)
    data = good.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (tmp_path / "text.jpg").write_bytes(b"this is not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    Image.fromarray(face_image(4)[:8, :8]).save(tmp_path / "tiny.png")
    cases = {
        "trunc.jpg": "corrupt",
        "garbage.jpg": "corrupt",
        "text.jpg": "not_an_image",
        "empty.jpg": "empty",
        "missing.jpg": "missing",
        "tiny.png": "too_small",
    }
    for name, reason in cases.items():
        with pytest.raises(ImageError) as ei:
            read_rgb(tmp_path / name, min_size=32)
        assert ei.value.reason == reason, name
        assert name in str(ei.value)  # names the file
        assert any(w in str(ei.value) for w in ("delete", "re-download", "check", "lower", "replace")), str(ei.value)


def test_read_rgba_occluder_without_alpha(tmp_path):
    Image.fromarray(face_image(5)).save(tmp_path / "rgb.png")
    opaque = np.dstack([face_image(5), np.full((250, 250), 255, np.uint8)])
    Image.fromarray(opaque, "RGBA").save(tmp_path / "opaque.png")
    for name in ("rgb.png", "opaque.png"):
        with pytest.raises(ImageError) as ei:
            read_rgba(tmp_path / name)
        assert ei.value.reason == "no_alpha" and name in str(ei.value) and "transparent" in str(ei.value)


# ============================================================ readers
def test_read_lfw_real():
    need_lfw()
    recs = read_lfw(LFW)
    counts = Counter(r.identity for r in recs)
    assert len(counts) == 610 and len(recs) == 6733
    assert sum(n > 6 for n in counts.values()) == 256
    assert all(r.landmarks is None for r in recs)
    assert recs == sorted(recs, key=lambda r: (r.identity, str(r.path)))
    face, lm, note = load_face(recs[0], crop=DEFAULT_CROPS["lfw"], image_size=128)
    assert face.shape == (128, 128, 3) and face.dtype == np.uint8 and lm is None and note == ""


def test_read_lfw_layouts_and_errors(tmp_path):
    write_lfw_fixture(tmp_path / "lfw-deepfunneled", {"Ann_A": 2, "Bob_B": 1})
    recs = read_lfw(tmp_path)  # parent folder holding lfw-deepfunneled/
    assert [r.identity for r in recs] == ["Ann_A", "Ann_A", "Bob_B"]
    with pytest.raises(DatasetError, match="does not exist"):
        read_lfw(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        read_lfw(tmp_path / "empty")


def write_celeba_fixture(root: Path, n_ids=6, per_id=8, landmarks=True, partition=True) -> Path:
    img = root / "celeba" / "img_align_celeba"
    img.mkdir(parents=True)
    ident_lines, lm_lines, part_lines = [], [], []
    k = 0
    for ident in range(1, n_ids + 1):
        for _ in range(per_id):
            k += 1
            name = f"{k:06d}.jpg"
            Image.fromarray(face_image(k, size=(178, 218))).save(img / name, quality=90)
            ident_lines.append(f"{name} {ident * 10}")
            dx = (k % 5) - 2
            lm_lines.append(f"{name} {69 + dx} 111 {107 + dx} 111 88 135 72 152 105 152")
            part_lines.append(f"{name} {0 if ident <= n_ids - 2 else 2}")
    (root / "celeba" / "identity_CelebA.txt").write_text("\n".join(ident_lines) + "\n")
    if landmarks:
        (root / "celeba" / "list_landmarks_align_celeba.txt").write_text(
            f"{k}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n"
            + "\n".join(lm_lines)
            + "\n"
        )
    if partition:
        (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
    return root


def test_read_celeba_fixture(tmp_path):
    write_celeba_fixture(tmp_path, n_ids=3, per_id=2)
    recs = read_celeba(tmp_path)
    assert len(recs) == 6 and recs[0].identity == "10"
    assert recs[0].landmarks.shape == (5, 2) and recs[0].landmarks[0, 0] == 68  # 69 + (1 % 5) - 2
    part = read_celeba_partition(tmp_path)
    assert part["000001.jpg"] == 0 and part["000006.jpg"] == 2
    face, lm, _ = load_face(recs[0], crop=DEFAULT_CROPS["celeba"], image_size=128)
    assert face.shape == (128, 128, 3)
    # landmarks follow the crop: left eye x 68 -> (68 - 26) * 128 / 124
    assert abs(lm[0, 0] - (68 - 26) * 128 / 124) < 1e-3


def test_read_celeba_missing_and_malformed_labels(tmp_path):
    write_celeba_fixture(tmp_path, n_ids=2, per_id=2, landmarks=False)
    with pytest.warns(UserWarning, match="list_landmarks_align_celeba.txt"):
        recs = read_celeba(tmp_path)
    assert all(r.landmarks is None for r in recs)
    # an image listed but missing on disk: left out with a warning
    (tmp_path / "celeba" / "img_align_celeba" / "000001.jpg").unlink()
    with pytest.warns(UserWarning, match="1 images listed"):
        assert len(read_celeba(tmp_path, landmarks=False)) == 3
    ident = tmp_path / "celeba" / "identity_CelebA.txt"
    ident.write_text(ident.read_text() + "000099.jpg\n")
    with pytest.raises(DatasetError, match=r"identity_CelebA.txt, line 5"):
        read_celeba(tmp_path, landmarks=False)
    ident.unlink()
    with pytest.raises(DatasetError, match="identity_CelebA.txt is missing"):
        read_celeba(tmp_path)
    with pytest.raises(DatasetError, match="does not look like CelebA"):
        read_celeba(tmp_path / "celeba" / "img_align_celeba")


def test_read_image_folder(tmp_path):
    (tmp_path / "p1").mkdir()
    Image.fromarray(face_image(1)).save(tmp_path / "p1" / "a.png")
    Image.fromarray(face_image(2)).save(tmp_path / "solo.jpg")
    (tmp_path / "notes.txt").write_text("x")
    recs = read_image_folder(tmp_path)
    assert [(r.identity, r.path.name) for r in recs] == [("solo", "solo.jpg"), ("p1", "a.png")]


# ============================================================ splits and protocol
def test_split_identities_disjoint_and_seeded():
    recs = [FaceRecord(Path(f"{i}_{k}.jpg"), f"id{i:03d}") for i in range(100) for k in range(3)]
    s = split_identities(recs, test_fraction=0.1, val_fraction=0.05, seed=3)
    ids = {k: s.identities(k) for k in ("train", "val", "test")}
    assert len(ids["test"]) == 10 and len(ids["val"]) == round(0.05 * 90) and len(ids["train"]) == 90 - len(ids["val"])
    assert not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"]) and not (ids["train"] & ids["val"])
    assert len(s.train) + len(s.val) + len(s.test) == len(recs)
    assert split_identities(recs, seed=3).to_json() == s.to_json()
    assert split_identities(recs, seed=4).to_json() != s.to_json()
    fixed = split_identities(recs, test_identities={"id001", "id002"}, seed=0)
    assert fixed.identities("test") == {"id001", "id002"}
    with pytest.raises(SplitError, match="id005"):
        check_disjoint(train={"id005", "id006"}, test={"id005"})


def test_identity_list_file(tmp_path):
    f = tmp_path / "test.txt"
    f.write_text("000005.jpg 9295\n000024.jpg 9290\n\n")
    assert read_identity_list(f) == ({"9295", "9290"}, {"000005.jpg", "000024.jpg"})
    f.write_text("alice\nbob\n")
    assert read_identity_list(f) == ({"alice", "bob"}, None)
    f.write_text("a 1\nb\n")
    with pytest.raises(DatasetError, match="line 2"):
        read_identity_list(f)
    if (SHARED / "CelebA_test.txt").is_file():
        ids, imgs = read_identity_list(SHARED / "CelebA_test.txt")
        assert len(imgs) == 17466 and len(ids) > 100


def test_lfw_protocol_shape_and_split_real():
    need_lfw()
    recs = read_lfw(LFW)
    cfg = load_data_config(REPO / "configs" / "data" / "lfw.yaml")
    from fsggan.data.build import build_splits

    splits, proto_ids = build_splits(cfg, recs)
    counts = Counter(r.identity for r in recs)
    assert len(proto_ids) == 200 and all(counts[i] > 6 for i in proto_ids)
    assert splits.identities("test") == set(proto_ids)  # test identities contain the protocol ones
    splits.check()
    assert not (splits.identities("train") | splits.identities("val")) & set(proto_ids)
    names = {}
    for r in splits.test:
        names.setdefault(r.identity, []).append(r.path.name)
    proto = make_protocol(names, queries_per_identity=5, repeats=5, seed=0)
    validate_protocol(proto, [n for v in names.values() for n in v])
    assert proto["num_identities"] == 200 and len(proto["repeats"]) == 5
    for rep in proto["repeats"]:
        assert len(rep["gallery"]) == 200 and all(len(q) == 5 for q in rep["queries"].values())
    assert proto["repeats"][0]["gallery"] != proto["repeats"][1]["gallery"]  # repeats differ
    assert make_protocol(names, seed=0) == proto  # seeded


def test_protocol_identities_too_few():
    with pytest.warns(UserWarning, match="only 2 identities"):
        assert protocol_identities({"a": 7, "b": 9, "c": 3}, num_identities=5) == ["a", "b"]
    with pytest.raises(SplitError, match="no identity"):
        protocol_identities({"a": 2}, num_identities=5)
    with pytest.raises(SplitError, match="fewer than 6"):
        make_protocol({"a": ["1", "2"]})


# ============================================================ prepare (end to end)
def small_config(tmp_path: Path, root: Path, kind="lfw", extra=()):
    over = [
        f"dataset.kind={kind}",
        f"dataset.root={root}",
        "dataset.landmarks=template" if kind != "celeba" else "dataset.landmarks=auto",
        "protocol.num_identities=3",
        "protocol.repeats=2",
        "split.val_fraction=0.3",
        "output.val_max_images=4",
        "occluders.seen=[{path: procedural, count: 6, seed: 0, kinds: [sunglasses, mask, polygon]}]",
        "occluders.new=[{path: procedural, count: 6, seed: 1, kinds: [round_glasses, scarf, blob]}]",
        "occluders.unseen=[{path: procedural, count: 4, seed: 3, kinds: [bar, stripes]}]",
        *extra,
    ]
    return load_data_config(REPO / "configs" / "data" / "lfw.yaml", over)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_prepare_lfw_fixture_deterministic_with_bad_files(tmp_path):
    people = {"Person_A": 8, "Person_B": 7, "Person_C": 7, "Few_F": 7, "Small_S": 3, "Train_T": 4, "Train_U": 4, "Train_V": 4}
    root = write_lfw_fixture(tmp_path / "lfw", people)
    # bad files in a test identity: Few_F drops below the 7 images the protocol needs
    (root / "Few_F" / "Few_F_0001.jpg").write_bytes(b"\xff\xd8\xff\xe0broken")
    good = (root / "Few_F" / "Few_F_0003.jpg").read_bytes()
    (root / "Few_F" / "Few_F_0002.jpg").write_bytes(good[: len(good) // 3])
    Image.fromarray(face_image(9)[:10, :10]).save(root / "Person_A" / "Person_A_0008.jpg")  # too small
    Image.fromarray(face_image(9)[:, :, 0], "L").save(root / "Person_B" / "Person_B_0008.jpg")  # an 8th, grayscale
    cfg = small_config(tmp_path, root, extra=["protocol.num_identities=5"])
    logs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s1 = prepare_data(cfg, out=tmp_path / "a", progress=False, log=logs.append)
        prepare_data(cfg, out=tmp_path / "b", progress=False, log=lambda *_: None)
    text = "\n".join(logs)
    assert "corrupt 2" in text and "too_small 1" in text and "grayscale 1" in text and "occluded area" in text
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")  # byte-identical
    st = s1["sets"]["set1"]
    assert st["written"] == 8 + 8 + 7 + 7 - 3 and st["skipped"] == {"corrupt": 2, "too_small": 1}
    assert s1["protocol"]["identities"] == 3 and s1["protocol"]["identities_with_too_few_images"] == 1

    for name in ("set1-lfw", "set2-lfw", "set3-lfw", "val-lfw"):
        folder = tmp_path / "a" / name
        ds = PreparedSet(folder)
        item = ds[0]
        assert item["occluded"].shape == (3, 128, 128) and item["mask"].shape == (1, 128, 128)
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert float(item["occluded"].min()) >= -1 and float(item["occluded"].max()) <= 1
        diff = (item["occluded"] - item["clean"]).abs().sum(0) > 0.1
        assert diff[item["mask"][0] > 0].float().mean() > 0.8  # masked pixels really changed
        for sub in ("occluded", "clean", "mask"):
            assert sorted(p.name for p in (folder / sub).iterdir()) == sorted(ds.names)
        m = json.loads((folder / "manifest.json").read_text())
        e = m["images"][0]
        assert {"name", "source", "identity", "occluder", "placement", "seed"} <= set(e)
        assert not Path(e["source"]).is_absolute()
    p1 = PreparedSet(tmp_path / "a" / "set1-lfw").protocol
    assert p1 == PreparedSet(tmp_path / "a" / "set2-lfw").protocol
    validate_protocol(p1, PreparedSet(tmp_path / "a" / "set1-lfw").names)
    assert p1["num_identities"] == 3 and len(p1["repeats"]) == 2
    assert PreparedSet(tmp_path / "a" / "val-lfw").protocol is None
    # set1 and set2: same images, different occluder pools
    m1 = json.loads((tmp_path / "a" / "set1-lfw" / "manifest.json").read_text())
    m2 = json.loads((tmp_path / "a" / "set2-lfw" / "manifest.json").read_text())
    assert [e["name"] for e in m1["images"]] == [e["name"] for e in m2["images"]]
    assert not set(m1["occluders"]) & set(m2["occluders"])
    # set3: the same images and protocol again, under kinds of object the seen pool does not draw
    m3 = json.loads((tmp_path / "a" / "set3-lfw" / "manifest.json").read_text())
    assert [e["name"] for e in m3["images"]] == [e["name"] for e in m1["images"]]
    assert m3["occluder_pool"] == "unseen" and PreparedSet(tmp_path / "a" / "set3-lfw").protocol == p1
    assert {e["occluder"].rsplit("/", 1)[1].rsplit("_", 1)[0] for e in m3["images"]} <= {"bar", "stripes"}
    assert not set(m1["occluders"]) & set(m3["occluders"])
    sp = json.loads((tmp_path / "a" / "splits-lfw.json").read_text())
    check_disjoint(train=sp["train"], val=sp["val"], test=sp["test"])
    assert set(sp["test"]) >= set(sp["protocol_identities"])


def test_set3_refuses_a_kind_that_training_draws(tmp_path):
    root = write_lfw_fixture(tmp_path / "lfw", {"Person_A": 7, "Train_T": 4})
    cfg = small_config(tmp_path, root, extra=["occluders.unseen=[{path: procedural, count: 4, kinds: [bar, mask]}]"])
    with pytest.raises(DatasetError, match=r"occluders.unseen draws kinds the seen pool also draws \(mask\)"):
        prepare_data(cfg, out=tmp_path / "out", sets=["set3"], progress=False, log=lambda *_: None)
    assert not (tmp_path / "out" / "set3-lfw").exists()
    with pytest.raises(ValueError, match="occluders.unseen is empty"):
        small_config(tmp_path, root, extra=["occluders.unseen=[]"])


def test_prepare_celeba_fixture_uses_landmark_file(tmp_path):
    write_celeba_fixture(tmp_path, n_ids=6, per_id=8)
    (tmp_path / "test_list.txt").write_text("\n".join(f"{k:06d}.jpg {i * 10}" for i in (5, 6) for k in range((i - 1) * 8 + 1, i * 8 + 1)))
    cfg = small_config(
        tmp_path, tmp_path, kind="celeba", extra=[f"split.test_list={tmp_path / 'test_list.txt'}", "split.test_from_protocol=false", "name=celeba"]
    )
    logs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = prepare_data(cfg, out=tmp_path / "out", progress=False, log=logs.append)
    assert summary["landmark_source"] == "file"
    assert summary["sets"]["set1"]["landmarks"] == {"file": 16}
    sp = json.loads((tmp_path / "out" / "splits-celeba.json").read_text())
    assert sp["test"] == ["50", "60"] and not set(sp["train"]) & {"50", "60"}
    assert PreparedSet(tmp_path / "out" / "set1-celeba").protocol["num_identities"] == 2


def test_prepare_cli_errors_and_limit(tmp_path, capsys):
    assert prepare_data_main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\ndataset: {kind: lfw, root: /nonexistent/lfw, colour: red}\n")
    assert prepare_data_main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "colour" in err and "valid keys" in err
    cfg.write_text("name: x\ndataset: {kind: lfw, root: /nonexistent/lfw}\n")
    assert prepare_data_main(["--config", str(cfg)]) == 2
    assert "/nonexistent/lfw" in capsys.readouterr().err
    root = write_lfw_fixture(tmp_path / "lfw", {f"P_{c}": 7 for c in "ABC"} | {"T_1": 2, "T_2": 2})
    rc = prepare_data_main(
        [
            "--config", str(REPO / "configs" / "data" / "procedural.yaml"),
            "--set", f"dataset.root={root}", "--set", "dataset.landmarks=template",
            "--set", "protocol.num_identities=2", "--set", "split.val_fraction=0.5",
            "--out", str(tmp_path / "out"), "--limit", "4", "--sets", "set1,set2", "--contact-sheet", "--quiet",
        ]
    )
    assert rc == 0
    assert len(PreparedSet(tmp_path / "out" / "set1-procedural")) == 4
    assert not (tmp_path / "out" / "val-procedural").exists()
    sheet = Image.open(tmp_path / "out" / "contact_sheet-set1-procedural.png")
    assert sheet.width > 300 and sheet.height > 250


def test_make_occluded_dataset_uses_training_identities_only(tmp_path):
    from fsggan.data.build import make_occluded_dataset

    root = write_lfw_fixture(tmp_path / "lfw", {f"P_{c}": 7 for c in "AB"} | {f"T_{i}": 2 for i in range(6)})
    cfg = small_config(tmp_path, root, extra=["protocol.num_identities=2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = make_occluded_dataset(cfg, "train", seed=1)
        val = make_occluded_dataset(cfg, "val", seed=1)
    ids_train = {r.identity for r in train.records}
    ids_val = {r.identity for r in val.records}
    assert ids_train and ids_val and not ids_train & ids_val
    assert not (ids_train | ids_val) & {"P_A", "P_B"}  # protocol (test) identities never in training
    item = train[0]
    assert item["occluded"].shape == (3, 128, 128) and item["mask"].sum() > 0
    with pytest.raises(ValueError, match="train"):
        make_occluded_dataset(cfg, "test")
