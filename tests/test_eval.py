"""Evaluation: metrics against scikit-image, rank-k on a toy gallery, fsggan-eval on a tiny
prepared set written here (no weights needed), results files, --compare."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fsggan import metrics
from fsggan.eval import evaluate, recognition, report
from fsggan.eval.evaluate import MissingPredictionsError, evaluate_set
from fsggan.eval.report import CLEAN, OCCLUDED
from fsggan.cli.evaluate import main as eval_main
from fsggan.models.identity import FaceEmbedder
from helpers.prepared import SIZE, copy_as_predictions, make_prepared_set


# ---------------------------------------------------------------- fixtures

class PoolEmbedder(FaceEmbedder):
    """A weight-free 'recognizer': the 4x4 average-pooled image, flattened (48-d)."""

    def __init__(self):
        super().__init__(torch.nn.Flatten(), dim=48)

    def preprocess(self, x):
        return F.adaptive_avg_pool2d(x, 4)


@pytest.fixture
def prepared(tmp_path):
    return make_prepared_set(tmp_path / "set1-toy")


# ---------------------------------------------------------------- metrics

def test_metrics_equal_scikit_image():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    af, bf = a / 255.0, b / 255.0
    want_psnr = peak_signal_noise_ratio(af, bf, data_range=1.0)
    want_ssim = structural_similarity(af, bf, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False)
    assert metrics.psnr(b, a) == pytest.approx(want_psnr, abs=1e-10)
    assert metrics.ssim(b, a) == pytest.approx(want_ssim, abs=1e-10)
    assert metrics.psnr_pm1(b, a) == pytest.approx(want_psnr - 20 * math.log10(2), abs=1e-10)
    # tensors in [-1, 1] give the same numbers as the uint8 arrays they hold
    ta = torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1
    tb = torch.from_numpy(b).permute(2, 0, 1).float() / 127.5 - 1
    assert metrics.psnr(tb, ta) == pytest.approx(want_psnr, abs=1e-6)
    assert metrics.ssim(tb, ta) == pytest.approx(want_ssim, abs=1e-6)
    # the [-1, 1] convention: 10 log10(1 / MSE) computed on [-1, 1] values
    mse = torch.mean((tb.double() - ta.double()) ** 2).item()
    assert metrics.psnr_pm1(tb, ta) == pytest.approx(10 * math.log10(1 / mse), abs=1e-6)



@pytest.mark.parametrize("size", [(40, 36), (64, 64), (9, 12)])  # (9, 12): smaller than the SSIM window
def test_batch_metrics_equal_the_per_image_ones(size):
    rng = np.random.default_rng(2)
    target = rng.integers(0, 256, (5, *size, 3), dtype=np.uint8)
    pred = np.clip(target.astype(int) + rng.integers(-40, 40, target.shape), 0, 255).astype(np.uint8)
    pred[1] = target[1]  # identical: infinite PSNR, SSIM 1
    pred[2, : size[0] // 2] = 0  # a large error in half the image
    if min(size) < 11:
        with pytest.raises(ValueError):
            metrics.image_metrics_batch(pred, target)
        return
    got = metrics.image_metrics_batch(pred, target)
    for i, g in enumerate(got):
        want = metrics.image_metrics(pred[i], target[i])
        assert g.keys() == want.keys()
        for k in want:
            assert g[k] == pytest.approx(want[k], abs=1e-10), (i, k)
    assert math.isinf(got[1]["psnr"]) and got[1]["ssim"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one shape"):
        metrics.image_metrics_batch(pred[:2], target)

def test_identical_images_infinite_psnr_summarised_and_json_safe():
    a = np.full((16, 16, 3), 77, np.uint8)
    b = a.copy()
    b[0, 0, 0] = 80
    assert metrics.psnr(a, a) == math.inf
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    s = metrics.summarize([metrics.psnr(a, a), metrics.psnr(b, a), metrics.psnr(b, a)])
    assert s["n"] == 2 and s["n_inf"] == 1 and s["mean"] == pytest.approx(metrics.psnr(b, a))
    assert math.isnan(metrics.summarize([math.inf])["mean"])
    text = json.dumps(report.to_json({"psnr": [math.inf, 1.5, math.nan]}), allow_nan=False)
    assert json.loads(text) == {"psnr": ["inf", 1.5, None]}


# ---------------------------------------------------------------- rank-k

def test_rank_k_on_toy_gallery_with_known_answer():
    gallery = torch.eye(4)  # identity i <-> unit vector e_i
    # query q_r's true identity is 0; its similarities make identity 0 come r-th
    queries = torch.tensor([
        [1.0, 0.5, 0.2, 0.1],   # rank 1
        [0.5, 1.0, 0.2, 0.1],   # rank 2
        [0.3, 1.0, 0.9, 0.1],   # rank 3
        [0.0, 1.0, 0.9, 0.8],   # rank 4
    ])
    queries = F.normalize(queries, dim=1)
    truth = torch.zeros(4, dtype=torch.long)
    assert recognition.identification_ranks(gallery, queries, truth).tolist() == [1, 2, 3, 4]
    acc = recognition.rank_k_accuracy(gallery, queries, truth, ks=(1, 2, 3, 10))
    assert acc == {1: 0.25, 2: 0.5, 3: 0.75, 10: 1.0}


def test_evaluate_protocol_repeats_and_missing_queries():
    feats = {"a1": torch.tensor([1.0, 0.0]), "b1": torch.tensor([0.0, 1.0])}
    queries = {"a2": torch.tensor([0.9, 0.1]), "b2": torch.tensor([0.9, 0.1])}  # b2 looks like a
    proto = {"repeats": [{"gallery": {"a": "a1", "b": "b1"}, "queries": {"a": ["a2"], "b": ["b2", "b3"]}}] * 2}
    out = recognition.evaluate_protocol(proto, feats, {k: F.normalize(v, dim=0) for k, v in queries.items()},
                                        ks=(1, 2))
    assert out["rank1"]["mean"] == 0.5 and out["rank2"]["mean"] == 1.0 and out["rank1"]["std"] == 0.0
    assert out["rank1"]["values"] == [0.5, 0.5]
    assert out["n_queries"] == 4 and out["n_missing"] == 2  # b3 has no feature, twice


def test_dlib_recognizer_weights_file_errors_name_the_file(tmp_path):
    from fsggan.models.identity.base import WeightsError

    bad = tmp_path / "dlib.dat"
    for content in (b"", b"not dlib", b"\x01\x01\x01\x0dloss_metric_2" + bytes(64)):
        bad.write_bytes(content)
        with pytest.raises(WeightsError, match="dlib.dat"):
            recognition.build_recognizer("dlib_resnet", bad)
    with pytest.raises(WeightsError, match="no_such.dat"):
        recognition.build_recognizer("dlib_resnet", tmp_path / "no_such.dat")


# ---------------------------------------------------------------- evaluate on a tiny set

def test_baseline_rows_and_recognition_on_tiny_set(prepared):
    res = evaluate_set(prepared, recognizers={"pool": PoolEmbedder()}, ks=(1, 5), progress=False)
    assert res["num_images"] == 18 and set(res["quality"]) == {OCCLUDED}
    q = res["quality"][OCCLUDED]
    assert q["psnr"]["n"] == 18 and 5 < q["psnr"]["mean"] < 30 and 0 < q["ssim"]["mean"] < 1
    assert q["psnr_pm1"]["mean"] == pytest.approx(q["psnr"]["mean"] - metrics.PSNR_PM1_OFFSET)
    rec = res["recognition"]["pool"]
    assert rec[CLEAN]["rank1"]["mean"] == 1.0  # identity patterns are distinct, noise is small
    assert rec[OCCLUDED]["rank1"]["mean"] < rec[CLEAN]["rank1"]["mean"]
    assert rec[OCCLUDED]["n_queries"] == 2 * 6 * 2


def test_predictions_missing_file_fails_then_counted(prepared, tmp_path):
    preds = copy_as_predictions(prepared, tmp_path / "method_x", sub="occluded")
    (preds / "person_2_0001.png").unlink()
    (preds / "person_3_0000.png").write_bytes(b"not a png")
    with pytest.raises(MissingPredictionsError, match="person_2_0001.png"):
        evaluate_set(prepared, method="X", predictions=preds, progress=False)

    res = evaluate_set(prepared, method="X", predictions=preds, recognizers={"pool": PoolEmbedder()},
                       allow_missing=True, progress=False)
    assert res["missing"] == ["person_2_0001.png"]
    assert [u["name"] for u in res["unreadable"]] == ["person_3_0000.png"]
    # every row on the same 16 images: predictions identical to the input score exactly as the input
    assert res["quality"]["X"]["ssim"]["n"] == 16 and res["quality"][OCCLUDED]["ssim"]["n"] == 16
    assert res["quality"]["X"] == res["quality"][OCCLUDED]
    assert res["quality"]["X"]["ssim"]["mean"] == pytest.approx(
        np.mean([metrics.ssim(np.asarray(Image.open(prepared / "occluded" / n)),
                              np.asarray(Image.open(prepared / "clean" / n)))
                 for n in sorted(p.name for p in (prepared / "clean").iterdir())
                 if n not in ("person_2_0001.png", "person_3_0000.png")]))
    assert res["scored"] == {"images": 16, "identities": 6}
    # rank-k: the two queries without a prediction (one per repeat) are left out of every row
    rec = res["recognition"]["pool"]
    assert rec["X"] == rec[OCCLUDED] and rec["X"]["n_queries"] == rec[CLEAN]["n_queries"] == 22
    assert rec["X"]["n_missing"] == rec[CLEAN]["n_missing"] == 2
    assert res["protocol"] == {"repeats": 2, "identities": 6, "queries_per_identity": 2, "queries": 22,
                               "queries_total": 24, "identities_queried": 6,
                               "reduced": ["6 identities instead of 200", "2 queries per identity instead of 5",
                                           "2 repeats instead of 5", "2 of 24 queries left out (no usable prediction)"]}
    md = report.markdown([{"method": "X", "ks": [1, 5, 10], "recognizers": [{"name": "pool"}],
                           "sets": {"set1-toy": res}}])
    assert ("- set1-toy: 16 images of 6 identities (2 of 18 left out of every row: no usable prediction)"
            in md.splitlines())
    assert ("- set1-toy: 6 identities (1 clean gallery image each; 6 with queries), 2 queries per identity, "
            "2 repeats: 22 queries. **Reduced protocol** (the paper's: 200 identities x 5 queries, 5 repeats): "
            "6 identities instead of 200; 2 queries per identity instead of 5; 2 repeats instead of 5; "
            "2 of 24 queries left out (no usable prediction)") in md.splitlines()


def test_cli_predictions_outputs_parse_and_compare(prepared, tmp_path, capsys):
    # predictions identical to the clean images (jpg extension accepted by stem) -> infinite PSNR
    preds = tmp_path / "perfect"
    preds.mkdir()
    for p in (prepared / "clean").iterdir():
        Image.open(p).save(preds / (p.stem + ".png"))
    out = tmp_path / "res_perfect"
    rc = eval_main([str(prepared), "--predictions", str(preds), "--method-name", "Perfect",
                    "--recognizer", "mobilefacenet", "--recognizer-weights", "random", "--ks", "1", "5",
                    "--out", str(out), "--per-image", "--workers", "0", "--no-progress", "--device", "cpu"])
    assert rc == 0
    for f in ("results.json", "results.md", "quality.csv", "recognition.csv", "per_image_set1-toy.csv"):
        assert (out / f).is_file(), f
    data = json.loads((out / "results.json").read_text())
    q = data["sets"]["set1-toy"]["quality"]["Perfect"]
    assert q["psnr"]["n_inf"] == 18 and q["psnr"]["mean"] is None and q["ssim"]["mean"] == pytest.approx(1.0)
    rec = data["sets"]["set1-toy"]["recognition"]["mobilefacenet"]
    assert rec["Perfect"]["rank1"]["mean"] == rec[CLEAN]["rank1"]["mean"]
    md = (out / "results.md").read_text()
    assert "| Perfect |" in md and "(18 inf)" in md and "Occluded input" in md and "rank-5" in md
    rows = list(csv.DictReader(open(out / "per_image_set1-toy.csv")))
    assert len(rows) == 18 and rows[0]["method_psnr"] == "inf"
    assert {r["method"] for r in csv.DictReader(open(out / "quality.csv"))} == {OCCLUDED, "Perfect"}

    # a missing prediction: exit status 2 and the name on stderr; --allow-missing counts it
    (preds / "person_0_0002.png").unlink()
    assert eval_main([str(prepared), "--predictions", str(preds), "--workers", "0", "--no-progress"]) == 2
    assert "person_0_0002.png" in capsys.readouterr().err
    out2 = tmp_path / "res_partial"
    assert eval_main([str(prepared), "--predictions", str(preds), "--method-name", "Partial", "--allow-missing",
                      "--out", str(out2), "--workers", "0", "--no-progress"]) == 0
    data2 = json.loads((out2 / "results.json").read_text())
    assert data2["sets"]["set1-toy"]["missing"] == ["person_0_0002.png"]
    assert "1 missing" in (out2 / "results.md").read_text()

    # side by side
    cmp_dir = tmp_path / "cmp"
    assert eval_main(["--compare", str(out), str(out2), "--out", str(cmp_dir)]) == 0
    text = (cmp_dir / "comparison.md").read_text()
    # 3 tables: quality, rank-k by MobileFaceNet (Perfect) and by dlib (Partial: the default judge)
    assert "| Perfect |" in text and "| Partial |" in text and text.count("| Occluded input |") == 3
    assert "judged by dlib_resnet (independent)" in text and "judged by mobilefacenet (independent)" in text
    runs = json.loads((cmp_dir / "comparison.json").read_text())["runs"]
    assert set(runs) == {"res_perfect", "res_partial"}
    assert (cmp_dir / "comparison_quality.csv").is_file()


def test_several_sets_need_per_set_prediction_folders(tmp_path):
    s1 = make_prepared_set(tmp_path / "set1-a", n_ids=2, per_id=2, repeats=1)
    s2 = make_prepared_set(tmp_path / "set2-a", n_ids=2, per_id=2, repeats=1, seed=1)
    preds = tmp_path / "preds"
    copy_as_predictions(s1, preds / "set1-a")
    with pytest.raises(FileNotFoundError, match="set2-a"):
        evaluate.evaluate_sets([s1, s2], method="M", predictions=preds, progress=False)
    copy_as_predictions(s2, preds / "set2-a")
    res = evaluate.evaluate_sets([s1, s2], method="M", predictions=preds, progress=False)
    assert list(res["sets"]) == ["set1-a", "set2-a"]
    table = report.quality_table([res])
    assert "set1-a SSIM" in table and "set2-a SSIM" in table


def test_cli_user_errors_name_the_file(prepared, tmp_path, capsys):
    bad = tmp_path / "weights.ckpt"
    bad.write_text("not weights")
    assert eval_main([str(prepared), "--recognizer", "mobilefacenet", "--recognizer-weights", str(bad),
                      "--workers", "0", "--no-progress"]) == 2
    assert "weights.ckpt" in capsys.readouterr().err
    assert eval_main([str(prepared), "--gan", str(tmp_path / "no_run"), "--no-progress"]) == 2
    assert "no_run" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: weights are required for a real recognizer
        eval_main([str(prepared), "--recognizer", "mobilefacenet"])


# ---------------------------------------------------------------- what a person sees

def test_occluder_residue_is_one_for_the_input_zero_for_the_clean_face_and_half_for_a_ghost():
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    occ = clean.copy()
    occ[:, 4:12, 4:12] = 255 - occ[:, 4:12, 4:12]           # an "occluder" unlike the face
    mask = np.zeros((2, 16, 16), bool)
    mask[:, 4:12, 4:12] = True
    ghost = ((occ.astype(np.float64) + clean) / 2)           # the occluder half tinted away
    np.testing.assert_allclose(metrics.occluder_residue(occ, occ, clean, mask), 1.0)
    np.testing.assert_allclose(metrics.occluder_residue(clean, occ, clean, mask), 0.0)
    np.testing.assert_allclose(metrics.occluder_residue(ghost, occ, clean, mask), 0.5)
    # a change outside the mask does not count; an empty mask has no residue
    outside = occ.copy()
    outside[:, :2] = 0
    np.testing.assert_allclose(metrics.occluder_residue(outside, occ, clean, mask), 1.0)
    assert np.isnan(metrics.occluder_residue(occ, occ, clean, np.zeros_like(mask))).all()


def test_spread_picks_values_and_changed_share_counts_pixels_over_8_levels():
    s = metrics.spread([float(v) for v in range(1, 101)] + [math.nan, math.inf])
    assert s["n"] == 101 and s["median"] == 51.0 and s["p5"] == 6.0 and s["p95"] == 96.0
    assert s["mean"] == pytest.approx(50.5)
    a = np.zeros((1, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0, 1], b[0, 1, 1, 0] = 9, 8                       # one pixel over the threshold, one at it
    assert metrics.changed_share(b, a).tolist() == [1 / 16]


class _Blend:
    """A stand-in model: its output is the clean face plus `keep` of the occluder, and a
    `patch` painted over the top-left corner of every image it sees (even clean ones)."""

    def __init__(self, prepared, keep: float, patch: bool):
        names = sorted(p.name for p in (prepared / "clean").iterdir())
        self.pairs = [(torch.from_numpy(np.array(Image.open(prepared / "occluded" / n))).permute(2, 0, 1)
                       .float() / 127.5 - 1, torch.from_numpy(np.array(Image.open(prepared / "clean" / n)))
                       .permute(2, 0, 1).float() / 127.5 - 1) for n in names]
        self.keep, self.patch = keep, patch

    def run(self, x):
        out = []
        for img in x:
            clean = next((c for o, c in self.pairs if torch.equal(o, img) or torch.equal(c, img)), img)
            y = clean + self.keep * (img - clean)
            if self.patch:
                y = y.clone()
                y[:, :6, :6] = 1.0
            out.append(y)
        return torch.stack(out), x


def test_residue_harm_and_per_occluder_table_on_a_tiny_set(prepared, tmp_path):
    rec = {"pool": PoolEmbedder()}
    # a ghost: half of the occluder left; leaves clean faces alone
    res = evaluate_set(prepared, method="ghost", model=_Blend(prepared, 0.5, False), recognizers=rec,
                       progress=False, worst=4)
    assert res["residue"]["median"] == pytest.approx(0.5, abs=0.01) and res["residue"]["n"] == 18
    assert res["harm"]["psnr"]["median"] == math.inf and res["harm"]["changed"]["mean"] == 0.0
    harm_rec = res["harm"]["recognition"]["pool"]
    assert harm_rec["output"]["rank1"]["mean"] == harm_rec["clean"]["rank1"]["mean"] == 1.0
    assert list(res["per_occluder"]) == ["square"] and res["per_occluder"]["square"]["images"] == 18
    assert res["per_occluder"]["square"]["psnr_gain"] > 3
    assert [w["occluder"] for w in res["worst"]] == ["square"] * 4
    # removed occluder, but a patch painted on every face, clean ones too
    res2 = evaluate_set(prepared, method="patch", model=_Blend(prepared, 0.0, True), recognizers=rec,
                        progress=False, worst=4)
    assert res2["residue"]["median"] < 0.2
    assert res2["harm"]["changed"]["median"] == pytest.approx(36 / SIZE ** 2, abs=0.01)
    assert res2["harm"]["psnr"]["p5"] < 30
    assert len(res2["worst_harm"]) == 4 and "worst_harm" not in res   # the ghost changes no clean face
    assert all(w["psnr"] < 30 for w in res2["worst_harm"])
    # the report shows both, with the worst cases as a picture and the per-occluder CSV
    results = {"method": "ghost", "ks": [1, 5, 10], "recognizers": [{"name": "pool"}], "sets": {"set1-toy": res}}
    out = report.write_results(results, tmp_path / "report")
    md = (out / "results.md").read_text()
    assert "## What a person sees: occluder residue and harm to clean faces" in md
    assert "| ghost | set1-toy | 0.50 |" in md
    assert "## Per occluder (set1-toy), worst median residue first" in md and "| square | 18 |" in md
    picture = Image.open(out / "worst_residue_set1-toy.png")
    assert picture.size[1] > 3 * SIZE and "worst_images" not in json.loads((out / "results.json").read_text())["sets"]["set1-toy"]
    assert not (out / "worst_harm_set1-toy.png").exists()
    out2 = report.write_results({**results, "method": "patch", "sets": {"set1-toy": res2}}, tmp_path / "report2")
    harm_picture = Image.open(out2 / "worst_harm_set1-toy.png")   # rows: clean face, output
    assert 2 * SIZE < harm_picture.size[1] < 3 * SIZE and harm_picture.size[0] > 4 * SIZE
    assert "worst_harm_images" not in json.loads((out2 / "results.json").read_text())["sets"]["set1-toy"]
    rows = list(csv.DictReader(open(out / "occluders_set1-toy.csv")))
    assert rows[0]["occluder"] == "square" and float(rows[0]["residue_median"]) == pytest.approx(0.5, abs=0.01)


def test_sets_sharing_clean_faces_run_the_harm_pass_once_with_the_same_figures(prepared, tmp_path):
    """evaluate_sets: a second set with the same clean faces reuses the harm pass and the
    clean features (the model sees each clean face once) and gets the figures it gets alone."""
    import shutil

    twin = tmp_path / "set2-toy"
    shutil.copytree(prepared, twin)

    class Counting(_Blend):
        seen = 0

        def run(self, x):
            Counting.seen += len(x)
            return super().run(x)

    rec = {"pool": PoolEmbedder()}
    model = Counting(prepared, 0.0, True)
    both = evaluate.evaluate_sets([prepared, twin], method="patch", model=model, recognizers=rec, progress=False)
    n = len(list((prepared / "clean").iterdir()))
    assert Counting.seen == 3 * n  # the occluded faces of both sets, the clean faces once
    alone = evaluate_set(twin, method="patch", model=model, recognizers=rec, progress=False)
    assert Counting.seen == 5 * n
    assert report.to_json(both["sets"]["set2-toy"]) == report.to_json(alone)
    assert alone["harm"]["changed"]["mean"] > 0  # the shared part is real: the patch changes clean faces


def test_results_files_are_written_whole_or_not_at_all(prepared, tmp_path, monkeypatch):
    res = evaluate_set(prepared, progress=False)
    results = {"method": None, "ks": [1, 5, 10], "recognizers": [], "sets": {"set1-toy": res}}
    out = tmp_path / "report"
    out.mkdir()
    (out / "results.md").write_text("an earlier report\n")

    def broken(rows, labels=None):
        raise KeyboardInterrupt   # stopped while the tables are made

    monkeypatch.setattr(report, "markdown", broken)
    with pytest.raises(KeyboardInterrupt):
        report.write_results(results, out)
    assert (out / "results.md").read_text() == "an earlier report\n"      # the old file, whole
    assert json.loads((out / "results.json").read_text())["sets"]        # written before, whole
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
