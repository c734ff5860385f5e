"""Training loops (fsggan.train): steps reduce their losses, run directories, exact resume
after Ctrl-C, the non-finite guard, missing identity weights, DDP with gloo.

Everything runs on CPU with a synthetic 32x32 face folder and two drawn occluders
written to a temporary folder, widths of 4, a few steps.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from fsggan.checkpoint import load_checkpoint
from fsggan.cli import train_gan as gan_cli
from fsggan.cli import train_vae as vae_cli
from fsggan.losses import GeneratorLoss, LossWeights
from fsggan.models import VAE, MultiRFDiscriminator, UNetGenerator
from fsggan.train import gan, vae
from fsggan.train.data import ShardedBatchSampler
from fsggan.train.monitor import NonFiniteLossError
from fsggan.train.runtime import TrainingError

from helpers.files import REPO, SHARED
from helpers.training import TRAIN, fixed_batch, gan_config, same_state, vae_config

pytestmark = pytest.mark.usefixtures("one_thread")


# Steps on a fixed batch ---------------------------------------------------------------

def test_vae_step_reduces_loss():
    torch.manual_seed(0)
    net = VAE(base_channels=4, latent_dim=8, image_size=32)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x, y = fixed_batch()
    losses = [vae.vae_step(vae._Reconstruct(net), opt, scaler, x=x, y=y)["total"].item() for _ in range(8)]
    assert losses[-1] < losses[0]


def test_gan_steps_reduce_losses_and_adversarial_gradient_reaches_g():
    torch.manual_seed(0)
    v = VAE(base_channels=4, latent_dim=8, image_size=32).eval().requires_grad_(False)
    gen = UNetGenerator(base_channels=4)
    disc = MultiRFDiscriminator(trunk=v.encoder, trunk_mode="frozen", head_channels=4)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    sg, sd = (torch.amp.GradScaler("cpu", enabled=False) for _ in range(2))
    x, y = fixed_batch()
    with torch.no_grad():
        g = v(x)
    weights = LossWeights(identity=0.0)
    g_losses = []
    for _ in range(6):
        terms, fake = gan.g_step(gen, disc, opt_g, sg, x=x, g=g, y=y, loss=GeneratorLoss(weights))
        g_losses.append(terms["total"].item())
        assert set(terms) == {"pixel", "adversarial", "total"}
    assert g_losses[-1] < g_losses[0]
    assert all(p.requires_grad for p in disc.parameters())  # switched back on after the G step
    d_losses = [gan.d_step(disc, opt_d, sd, real=y, fake=fake)["loss"].item() for _ in range(6)]
    assert d_losses[-1] < d_losses[0]

    # adversarial term alone: G changes (gradient through D), D does not, V does not
    before_d = {k: v.clone() for k, v in disc.state_dict().items()}
    before_v = {k: t.clone() for k, t in v.state_dict().items()}
    before_g = [p.detach().clone() for p in gen.parameters()]
    gan.g_step(gen, disc, opt_g, sg, x=x, g=g, y=y, loss=GeneratorLoss(LossWeights(pixel=0, identity=0, adversarial=1)))
    assert any(not torch.equal(a, p) for a, p in zip(before_g, gen.parameters()))
    assert same_state(before_d, disc.state_dict()) and same_state(before_v, v.state_dict())


def test_tied_trunk_d_step_updates_vae_encoder():
    torch.manual_seed(0)
    v = VAE(base_channels=4, latent_dim=8, image_size=32).eval().requires_grad_(False)
    disc = MultiRFDiscriminator(trunk=v.encoder, trunk_mode="tied", head_channels=4)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    x, y = fixed_batch()
    w = v.encoder.body.stem[0].weight.detach().clone()
    gan.d_step(disc, opt_d, torch.amp.GradScaler("cpu", enabled=False), real=y, fake=x)
    assert not torch.equal(w, v.encoder.body.stem[0].weight)


# Data order ---------------------------------------------------------------------------

def test_sharded_sampler_is_world_size_independent_and_resumable():
    single = ShardedBatchSampler(50, 8, seed=3)
    shards = [ShardedBatchSampler(50, 8, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in (single, *shards):
        s.set_epoch(1)
    batches = list(single)
    assert len(batches) == 6 and all(len(b) == 8 for b in batches)
    assert [a + b for a, b in zip(*map(list, shards))] == batches
    single.set_epoch(1, start=4)
    assert list(single) == batches[4:]
    single.set_epoch(2)
    assert list(single) != batches
    with pytest.raises(TrainingError, match="divisible"):
        ShardedBatchSampler(50, 6, world_size=4)


# Stage I: run directory, Ctrl-C, exact resume ------------------------------------------

def interrupt_at(monkeypatch, module, name, call):
    """Make the ``call``-th call of ``module.name`` deliver SIGINT (as Ctrl-C would)."""
    original, count = getattr(module, name), [0]

    def wrapper(*args, **kwargs):
        count[0] += 1
        if count[0] == call:
            signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def test_train_vae_writes_run_dir_and_resumes_exactly(data_config, tmp_path, monkeypatch, capsys):
    data_config = Path(shutil.copy(data_config, tmp_path / "data.yaml"))  # edited below
    # uninterrupted reference
    a = tmp_path / "a"
    result = vae.train_vae(**vars(vae_config(data_config, a)))
    assert result["step"] == 6 and not result["interrupted"]
    for name in ["config.yaml", "data_config.yaml", "stats.jsonl", "checkpoints/last.pt", "checkpoints/best.pt",
                 "samples/step_0000003.png", "samples/step_0000006.png"]:
        assert (a / name).is_file(), name
    assert list(a.glob("events.out.tfevents.*"))
    assert yaml.safe_load((a / "config.yaml").read_text())["train"]["steps"] == 6
    ckpt = torch.load(a / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["version"] == 1 and ckpt["step"] == 6 and set(ckpt["models"]) == {"vae"}
    assert ckpt["config"]["vae"] == {"in_channels": 3, "base_channels": 4, "latent_dim": 8, "image_size": 32,
                                     "sigma": "pixel"}
    VAE(**ckpt["config"]["vae"]).load_state_dict(ckpt["models"]["vae"])
    stats = [yaml.safe_load(line) for line in (a / "stats.jsonl").read_text().splitlines()]
    assert any("loss/nll" in s and "speed/images_per_sec" in s and "lr/vae" in s for s in stats)
    assert any("val/structure_psnr" in s and "val/input_ssim" in s for s in stats)

    # Ctrl-C during step 4: the step finishes, last.pt is written, the run stops
    b = tmp_path / "b"
    interrupt_at(monkeypatch, vae, "vae_step", 4)
    result = vae.train_vae(**vars(vae_config(data_config, b)))
    assert result["interrupted"] and result["step"] == 4
    assert load_checkpoint(b / "checkpoints" / "last.pt")["step"] == 4
    monkeypatch.undo()

    # a fresh run may not overwrite it
    with pytest.raises(TrainingError, match="--resume"):
        vae.train_vae(**vars(vae_config(data_config, b)))

    # resume from the command line (config taken from the checkpoint) and compare bitwise; the
    # data config stored in the checkpoint is used, even if the YAML file was edited meanwhile
    edited = yaml.safe_load(data_config.read_text())
    edited["synthesis"]["max_coverage"] = 0.3
    data_config.write_text(yaml.safe_dump(edited))
    with pytest.warns(UserWarning, match="continues with the stored one"):
        assert vae_cli.main(["--resume", str(b)]) == 0
    ra, rb = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (a, b))
    assert rb["step"] == 6
    assert same_state(ra["models"], rb["models"])
    assert same_state(ra["optimizers"], rb["optimizers"])
    assert same_state(ra["rng"], rb["rng"]) and ra["data"] == rb["data"]


def test_nonfinite_loss_stops_with_step_and_term(data_config, tmp_path, monkeypatch):
    run = tmp_path / "nan"
    original, count = vae.vae_loss, [0]

    def poisoned(*args, **kwargs):
        count[0] += 1
        terms = original(*args, **kwargs)
        if count[0] == 5:
            terms = {**terms, "nll": terms["nll"] * float("nan")}
        return terms

    monkeypatch.setattr(vae, "vae_loss", poisoned)
    with pytest.raises(NonFiniteLossError) as e:
        vae.train_vae(**vars(vae_config(data_config, run)))
    msg = str(e.value)
    assert "step 5" in msg and "loss/nll=nan" in msg and "last.pt" in msg
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")  # intact, the last good state
    assert ckpt["step"] == 3
    assert all(torch.isfinite(t).all() for t in ckpt["models"]["vae"].values() if t.is_floating_point())


# Stage II ------------------------------------------------------------------------------

def test_train_gan_tied_resumes_exactly(data_config, stage1, tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    extra = ("discriminator.trunk_mode=tied",)
    result = gan.train_gan(**vars(gan_config(data_config, a, stage1, *extra)))
    assert result["step"] == 6 and "val/output_psnr" in result["val"]
    ckpt = load_checkpoint(a / "checkpoints" / "last.pt")
    assert set(ckpt["models"]) == {"vae", "generator", "discriminator"}
    assert ckpt["config"]["gan"]["vae_checkpoint"] == str(stage1)
    assert ckpt["config"]["vae"] == load_checkpoint(stage1)["config"]["vae"]
    # tied: D's loss moved V's encoder away from Stage I (g = V(x) drifts), decoder untouched
    v0 = load_checkpoint(stage1)["models"]["vae"]
    assert not torch.equal(v0["encoder.body.stem.0.weight"], ckpt["models"]["vae"]["encoder.body.stem.0.weight"])
    assert torch.equal(v0["decoder.head.weight"], ckpt["models"]["vae"]["decoder.head.weight"])
    stats = (a / "stats.jsonl").read_text()
    for key in ["g/pixel", "g/adversarial", "d/loss", "d/real_d1", "d/fake_w3", "lr/discriminator"]:
        assert key in stats

    interrupt_at(monkeypatch, gan, "d_step", 2)
    assert gan.train_gan(**vars(gan_config(data_config, b, stage1, *extra)))["step"] == 2
    monkeypatch.undo()
    assert gan_cli.main(["--resume", str(b / "checkpoints" / "last.pt")]) == 0
    ra, rb = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (a, b))
    assert same_state(ra["models"], rb["models"]) and same_state(ra["optimizers"], rb["optimizers"])


def test_train_gan_regular_d_and_no_hdc_run(data_config, stage1, tmp_path):
    result = gan.train_gan(**vars(gan_config(data_config, tmp_path / "r", stage1, "gan.d_arch=patch",
                                             "generator.hdc=false", "train.steps=2")))
    assert result["step"] == 2


def test_identity_loss_with_pretrained_mobilefacenet(data_config, stage1, tmp_path):
    weights = SHARED / "weights" / "mobilefacenet_casia_068.ckpt"
    if not weights.is_file():
        pytest.skip(f"pretrained MobileFaceNet weights not found at {weights}")
    run = tmp_path / "id"
    gan.train_gan(**vars(gan_config(data_config, run, stage1, "loss.identity=50.0", "loss.identity_net=mobilefacenet",
                                    f"loss.identity_weights={weights}", "train.steps=2", "train.log_every=1")))
    stats = [yaml.safe_load(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all(0.0 <= s["g/identity"] <= 2.0 for s in stats if "g/pixel" in s)


def test_missing_identity_weights_stop_at_start(data_config, stage1, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "LightCNN_29Layers_V2_checkpoint.pth.tar"
    argv = ["--config", str(REPO / "configs" / "tiny_cpu_gan.yaml"), "--run-dir", str(tmp_path / "run"),
            "--set", f"gan.vae_checkpoint={stage1}", "--set", f"data.config={data_config}",
            "--set", "loss.identity=50.0", "--set", "loss.identity_net=lightcnn29v2",
            "--set", f"loss.identity_weights={missing}"]
    assert gan_cli.main(argv) == 2
    msg = capsys.readouterr().err
    assert str(missing) in msg and "github.com/AlfredXiangWu/LightCNN" in msg
    assert not (tmp_path / "run").exists()  # stopped before anything was written


def test_missing_stage1_checkpoint(data_config, tmp_path):
    with pytest.raises(TrainingError, match="train V first"):
        gan.train_gan(**vars(gan_config(data_config, tmp_path / "r", tmp_path / "none.pt")))


# DDP ---------------------------------------------------------------------------------

DDP_SCRIPT = """
import os, sys, torch
torch.set_num_threads(1)
from fsggan.config import load_config
from fsggan.train import gan, monitor
from fsggan.train.config import TrainGANConfig

def close(self, _orig=monitor.Monitor.close):  # every rank dumps its final weights
    torch.save({k: m.state_dict() for k, m in self.models.items()},
               os.path.join(sys.argv[1], f"rank{self.env.rank}.pt"))
    _orig(self)

monitor.Monitor.close = close
cfg = load_config(TrainGANConfig, None, sys.argv[2:])
gan.train_gan(**vars(cfg))
"""


def test_ddp_gloo_two_processes_keep_identical_weights(data_config, stage1, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    run = tmp_path / "run"
    overrides = [
        f"gan.vae_checkpoint={stage1}", "generator.base_channels=4", "discriminator.head_channels=4",
        "discriminator.trunk_mode=copy", "loss.identity=0", f"data.config={data_config}", f"train.run_dir={run}",
        *TRAIN, "train.steps=3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--standalone", str(script), str(tmp_path), *overrides],
                          capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    # Parameters are identical. BatchNorm running statistics are each rank's own since the
    # last forward (DDP copies rank 0's to the others at every forward; checkpoints hold rank 0's).
    weights = [{m: {k: t for k, t in sd.items() if "running_" not in k} for m, sd in r.items()} for r in (r0, r1)]
    assert same_state(*weights)
    assert sum(t.numel() for sd in weights[0].values() for t in sd.values()) > 1000
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3
    assert len(load_checkpoint(run / "checkpoints" / "last.pt")["rng"]) == 2  # both ranks' RNG streams


def test_validation_reports_residue_and_harm_to_clean_faces():
    from fsggan.train.runtime import Env
    from fsggan.train.monitor import validate

    g = torch.Generator().manual_seed(0)
    clean = torch.rand(6, 3, 32, 32, generator=g) * 2 - 1
    mask = torch.zeros(6, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1
    occluded = torch.where(mask > 0, -clean, clean)
    val = {"occluded": occluded, "clean": clean, "mask": mask}
    lookup = {**{o.numpy().tobytes(): c for o, c in zip(occluded, clean)}}

    def ghost(x):   # half the occluder left in; a clean face comes back with a painted corner
        out = []
        for img in x:
            c = lookup.get(img.numpy().tobytes())
            if c is None:
                img = img.clone()
                img[:, :4, :4] = 1.0
                out.append(img)
            else:
                out.append((img + c) / 2)
        return {"output": torch.stack(out)}

    m = validate(ghost, val, Env(), batch_size=4)
    assert abs(m["val/output_residue"] - 0.5) < 0.01
    assert m["val/clean_changed"] > 0.005 and m["val/clean_psnr"] < 40
    m = validate(lambda x: {"output": x}, val, Env(), batch_size=4)
    assert m["val/output_residue"] == 1.0 and m["val/clean_changed"] == 0.0 and m["val/clean_psnr"] == float("inf")
