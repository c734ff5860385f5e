"""Model folders (fsggan-export, FSGGAN.from_pretrained, fsggan-deocclude --model) and the
ONNX graph, from a tiny Stage II run written here (32 px, widths 4, blend head, an EMA copy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fsggan.cli.deocclude import main as deocclude_main
from fsggan.cli.export import main as export_main
from fsggan.export import ModelFolderError, load_model_folder
from fsggan.models import VAE, UNetGenerator
from fsggan.api import FSGGAN
from helpers.checkpoints import write_checkpoint
from helpers.training import VAE_KW

pytestmark = pytest.mark.usefixtures("one_thread")

BLEND_KW = {"base_channels": 4, "output": "blend"}   # G with a map head, as the shipped configs train it
DATA = {"dataset": {"kind": "lfw", "root": "../shared/data/lfw", "crop": None, "image_size": 32},
        "occluders": {"seen": [{"path": "../shared/data/occluders/ocfr", "include": ["eye/*.png"]}]}}


def write_run(folder, *, ema: bool = True):
    """A Stage II run folder in the training checkpoint format, with its training state."""
    torch.manual_seed(0)
    vae, gen, avg = VAE(**VAE_KW), UNetGenerator(**BLEND_KW), UNetGenerator(**BLEND_KW)
    models = {"generator": gen, "vae": vae, **({"generator_ema": avg} if ema else {})}
    write_checkpoint(folder / "checkpoints" / "best.pt", models, step=7,
                     optimizers={"g": torch.optim.Adam(gen.parameters())},
                     config={"generator": BLEND_KW, "vae": VAE_KW, "data": DATA,
                             "loss": {"identity": 1.0, "identity_net": "mobilefacenet"}})
    return folder


@pytest.fixture
def run(tmp_path):
    return write_run(tmp_path / "gan")


@pytest.fixture
def exported(run, tmp_path):
    out = tmp_path / "model"
    assert export_main([str(run), str(out)]) == 0
    return out


def test_model_folder_loads_without_torch_load_and_equals_the_run_to_the_bit(run, exported, monkeypatch):
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "generator.safetensors", "model.json",
                                                          "vae.safetensors"]
    meta = json.loads((exported / "model.json").read_text())
    assert meta["networks"] == {"generator": BLEND_KW, "vae": VAE_KW} and meta["image_size"] == 32
    assert meta["training"]["generator_weights"] == "EMA" and meta["training"]["step"] == 7
    assert len(meta["files"]["generator"]["sha256"]) == 64
    from_run = FSGGAN.from_checkpoints(gan=run, device="cpu")

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called while loading a model folder")
    monkeypatch.setattr(torch, "load", no_pickle)
    shared = FSGGAN.from_pretrained(exported, device="cpu")
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    y_run, g_run = from_run.run(x)
    y, g = shared.run(x)
    assert torch.equal(y, y_run) and torch.equal(g, g_run)
    torch.manual_seed(0)  # the networks write_run made, in its order: the EMA copy was exported, not G
    _, gen, avg = VAE(**VAE_KW), UNetGenerator(**BLEND_KW), UNetGenerator(**BLEND_KW)
    assert torch.equal(shared.generator.out.weight, avg.out.weight)
    assert not torch.equal(shared.generator.out.weight, gen.out.weight)
    assert shared.data["dataset"]["kind"] == "lfw" and shared.identity_net == "mobilefacenet"


def test_model_json_records_data_terms_template_and_figures(run, tmp_path):
    report = tmp_path / "results"
    report.mkdir()
    (report / "results.json").write_text(json.dumps({
        "method": "FSG-GAN", "source": {"kind": "checkpoints", "gan": str(run / "checkpoints" / "best.pt")},
        "recognizers": [{"name": "dlib_resnet", "role": "independent"}],
        "sets": {"set1-lfw": {"num_images": 4, "scored": {"images": 4},
                              "quality": {"FSG-GAN": {"psnr": {"mean": 27.5, "std": 1.0}, "ssim": {"mean": 0.9}}},
                              "recognition": {"dlib_resnet": {"FSG-GAN": {"rank-1": 80.0}}}}}}))
    out = tmp_path / "model"
    assert export_main([str(run), str(out), "--report", str(report)]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["data"] == {"dataset": {"kind": "lfw", "crop": None}}
    assert len(meta["alignment"]["template"]["dlib"]) == 5 and meta["training"]["checkpoint"] == "gan/checkpoints/best.pt"
    assert any("research use" in t for t in meta["training"]["terms"])
    assert any("CC BY-NC-SA" in t for t in meta["training"]["terms"])  # the OCFR occluders
    ev = meta["evaluation"]
    assert ev["same_checkpoint"] and ev["judges"][0]["name"] == "dlib_resnet"
    assert ev["sets"]["set1-lfw"]["quality"]["FSG-GAN"]["psnr"] == 27.5
    card = (out / "README.md").read_text()
    assert "27.50" in card and "dlib_resnet (independent)" in card and meta["files"]["vae"]["sha256"] in card


def test_altered_or_missing_files_are_refused_in_one_line(exported, tmp_path, capsys):
    weights = exported / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match=r"generator.safetensors: altered or damaged \(sha256"):
        FSGGAN.from_pretrained(exported, device="cpu")
    crops = tmp_path / "crops"
    crops.mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(crops / "a.png")
    assert deocclude_main([str(crops), "--model", str(exported), "--out", str(tmp_path / "o"), "--aligned",
                           "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "generator.safetensors" in err[0] and "Traceback" not in err[0]
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    load_model_folder(exported)  # restored: loads again
    (exported / "vae.safetensors").unlink()
    with pytest.raises(ModelFolderError, match=r"vae.safetensors: missing"):
        load_model_folder(exported)


def test_export_refuses_a_non_empty_folder_and_overwrites_atomically(run, exported, capsys):
    before = (exported / "model.json").read_bytes()
    (exported / "note.txt").write_text("mine")
    assert export_main([str(run), str(exported)]) == 2
    assert "not empty" in capsys.readouterr().err and (exported / "note.txt").exists()
    assert export_main([str(run), str(exported), "--overwrite"]) == 0
    assert not (exported / "note.txt").exists() and (exported / "model.json").read_bytes() == before
    assert sorted(p.name for p in exported.parent.iterdir() if p.name.startswith(".")) == []  # no temp folders


def test_deocclude_with_model_folder_writes_what_the_run_writes(run, exported, tmp_path):
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(crops / f"f{k}.png")
    a, b = tmp_path / "a", tmp_path / "b"
    assert deocclude_main([str(crops), "--gan", str(run), "--out", str(a), "--aligned", "--device", "cpu"]) == 0
    assert deocclude_main([str(crops), "--model", str(exported), "--out", str(b), "--aligned", "--device", "cpu"]) == 0
    for k in range(3):
        assert np.array_equal(np.asarray(Image.open(a / f"f{k}.png")), np.asarray(Image.open(b / f"f{k}.png")))


@pytest.mark.parametrize("passes", [1, 2])
def test_onnx_graph_matches_pytorch_on_cpu(run, tmp_path, passes):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'fsggan[onnx]')")
    import onnx

    out = tmp_path / "model"
    assert export_main([str(run), str(out), "--onnx", "--onnx-extras", "--structure-passes", str(passes)]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["files"]["onnx"]["outputs"] == ["deoccluded", "structure", "map"]
    assert meta["structure_passes"] == passes
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(out / "model.onnx")).graph.node)
    n_v = sum(isinstance(m, torch.nn.Conv2d) for m in VAE(**VAE_KW).modules())
    n_g = sum(isinstance(m, torch.nn.Conv2d) for m in UNetGenerator(**BLEND_KW).modules())
    assert convs == passes * (n_v + n_g)  # V and G unrolled once per pass
    model = FSGGAN.from_pretrained(out, device="cpu")  # the ONNX file is checked too
    assert model.structure_passes == passes
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 32, 32) * 2 - 1  # batch 3: the graph was traced at 1 (dynamic batch)
    y, g, m = sess.run(None, {"occluded": x.numpy()})
    y_pt, g_pt = model.run(x)
    _, m_pt = model.generator(x, g_pt, return_mask=True)
    assert y.shape == (3, 3, 32, 32) and m.shape == (3, 1, 32, 32)
    for onnx_out, torch_out in ((y, y_pt), (g, g_pt), (m, m_pt)):
        assert np.abs(onnx_out - torch_out.numpy()).max() < 1e-5  # float32; measured ~1e-7


def test_bf16_autocast_stays_close_to_float32_and_fp16_needs_a_gpu(run, tmp_path, capsys):
    f32 = FSGGAN.from_checkpoints(gan=run, device="cpu")
    bf16 = FSGGAN.from_checkpoints(gan=run, device="cpu", amp="bf16")
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    y32, y16 = f32.run(x)[0], bf16.run(x)[0]
    assert y16.dtype == torch.float32 and not torch.equal(y16, y32)  # autocast ran, in bf16
    psnr = 10 * torch.log10(4.0 / (y16 - y32).pow(2).mean())  # images in [-1, 1]: peak-to-peak 2
    assert psnr > 30, f"bf16 vs float32: {psnr:.1f} dB"
    with pytest.raises(ValueError, match="float16 autocast needs a GPU"):
        FSGGAN.from_checkpoints(gan=run, device="cpu", amp="fp16")
    crops = tmp_path / "crops"
    crops.mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(crops / "a.png")
    assert deocclude_main([str(crops), "--gan", str(run), "--out", str(tmp_path / "o"), "--aligned",
                           "--device", "cpu", "--amp", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--amp 'fp16'" in err[0] and not (tmp_path / "o").exists()


def test_mps_is_a_known_device_refused_in_one_line_where_absent():
    from fsggan.device import resolve_device

    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        assert resolve_device("mps").type == "mps"
    else:
        with pytest.raises(ValueError, match=r"^device 'mps': Apple's MPS is not available on this machine"):
            resolve_device("mps")


def test_eval_amp_runs_the_model_in_bf16_and_refuses_fp16_on_the_cpu(run, tmp_path, capsys):
    from fsggan.cli.evaluate import main as eval_main
    from helpers.prepared import make_prepared_set

    prepared = make_prepared_set(tmp_path / "set1-toy", n_ids=2, per_id=2, repeats=1)
    common = [str(prepared), "--gan", str(run), "--recognizer", "none", "--workers", "0", "--device", "cpu",
              "--no-progress"]
    outs = {}
    for amp in (None, "bf16"):
        outs[amp] = tmp_path / f"pred-{amp}"
        assert eval_main(common + ["--save-predictions", str(outs[amp])] + (["--amp", amp] if amp else [])) == 0
    names = sorted(p.name for p in (outs[None] / "set1-toy").iterdir())
    a, b = ([np.asarray(Image.open(outs[k] / "set1-toy" / n), np.int16) for n in names] for k in (None, "bf16"))
    diff = max(np.abs(x - y).max() for x, y in zip(a, b))
    assert 0 < diff <= 8  # bf16 moved some pixels by a few levels, no more
    capsys.readouterr()
    assert eval_main(common + ["--amp", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--amp 'fp16': float16 autocast needs a GPU" in err[0]
