"""The CUDA training path, proven on a CPU: what CUDA autocast refuses never runs inside it,
a training step never waits for the device between log points, DDP stops every rank on a
non-finite loss and trains tied / copied trunks with heads on shallow levels only, and the
leaner pieces (persistent loader workers, cached alignment grids, multi-tensor EMA, fused
Adam, batched validation SSIM, wall-clock images/s) do what they say.

Tiny widths, 32 px faces, the synthetic data of tests/helpers/training.py; every test takes seconds.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from fsggan import losses
from fsggan.config import load_config, read_layers
from fsggan.train import gan, runtime, vae
from fsggan.train.config import TrainGANConfig, TrainVAEConfig
from fsggan.train.monitor import NonFiniteLossError

from helpers.files import REPO
from helpers.training import TRAIN, gan_config, vae_config

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = sorted(str(p.relative_to(REPO)) for pattern in ("configs/*.yaml", "configs/cpu/*.yaml",
                                                          "configs/ablations/*.yaml") for p in REPO.glob(pattern))
TINY = {"vae": ["vae.base_channels=4", "vae.latent_dim=8", "vae.image_size=32"],
        "gan": ["generator.base_channels=4", "discriminator.head_channels=4", "global_discriminator.base_channels=4",
                "patch_discriminator.base_channels=4"]}


def stage_of(config: str) -> str:
    layers = read_layers(REPO / config)
    return "gan" if {"gan", "generator", "discriminator"} & set(layers) else "vae"


# What CUDA autocast refuses ---------------------------------------------------------------

# torch.amp docs, "CUDA Ops that can autocast to float32" / banned ops: binary_cross_entropy
# (and nn.BCELoss, which calls it) raise inside a CUDA autocast region.
BANNED = {F.binary_cross_entropy, torch._C._nn.binary_cross_entropy}


class AutocastBans(TorchFunctionMode):
    """Fails on any function CUDA autocast bans when it runs inside an autocast region (of
    any device type: on a CPU the same code path runs under CPU autocast)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in BANNED and any(torch.is_autocast_enabled(d) for d in ("cpu", "cuda")):
            raise AssertionError(f"{func.__name__} inside autocast: CUDA autocast refuses it (unsafe to autocast)")
        return func(*args, **(kwargs or {}))


def as_on_cuda(monkeypatch, f_in_autocast: bool = True):
    """Run the training loops as on a GPU: autocast whenever train.amp asks for it (whatever
    this CPU's bf16 support), F under autocast too (on a CPU it runs in float32), F with
    random weights (speed only), no extra validation judge."""
    def cast(env, amp):
        if amp == "none":
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)

    def identity_net(loss, env, channels_last=False):
        if not loss.identity:
            return None
        from fsggan.models.identity import build_embedder

        return build_embedder(loss.identity_net, None).place(env.device)

    for module in (gan, vae):
        monkeypatch.setattr(module, "autocast", cast)
    if f_in_autocast:
        monkeypatch.setattr(losses, "_identity_precision", lambda t: contextlib.nullcontext())
    monkeypatch.setattr(gan, "build_identity_net", identity_net)
    monkeypatch.setattr(gan, "validation_judges", lambda loss, net, env: {})


def test_the_ban_check_catches_binary_cross_entropy():
    p, t = torch.rand(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    with AutocastBans():
        F.binary_cross_entropy(p, t)  # outside autocast: allowed
        with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(AssertionError, match="unsafe"):
            torch.nn.BCELoss()(p, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = losses.map_bce_loss(p, t)
    assert torch.allclose(loss, F.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), t), rtol=1e-6, atol=0)


@pytest.mark.parametrize("config", CONFIGS)
def test_one_step_of_every_config_under_cuda_autocast_rules(config, data_config, stage1, tmp_path, monkeypatch):
    """One step of each shipped config (its stage), with bf16 autocast as on a GPU (train.amp
    bf16: what ``fsggan-quickstart --full`` sets there), under :class:`AutocastBans`."""
    as_on_cuda(monkeypatch)
    monkeypatch.chdir(REPO)  # the configs name their files relative to the repository root
    stage = stage_of(config)
    common = [*TINY["vae"], *TRAIN, f"data.config={data_config}", f"train.run_dir={tmp_path / 'run'}",
              "train.steps=1", "train.batch_size=2", "train.amp=bf16", "train.channels_last=false",
              "data.persistent_workers=false"]
    with AutocastBans():
        if stage == "vae":
            result = vae.train_vae(**vars(load_config(TrainVAEConfig, config, common)))
        else:
            cfg = load_config(TrainGANConfig, config, [*common, *TINY["gan"], f"gan.vae_checkpoint={stage1}",
                                                       "gan.init_generator=null"])
            result = gan.train_gan(**vars(cfg))
    assert result["step"] == 1


# Host synchronisations inside a step ----------------------------------------------------------

READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.__bool__,
         torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__index__}
# ops whose CUDA kernels read a result back to size their output or check their input
SYNCING = {torch.nonzero, torch.Tensor.nonzero, torch.masked_select, torch.unique, torch.linalg.inv,
           torch.linalg.cholesky, torch.linalg.solve}
FACTORIES = {torch.tensor, torch.as_tensor, torch.rand, torch.randn, torch.randint, torch.randperm, torch.zeros,
             torch.ones, torch.arange, torch.linspace, torch.empty, torch.full}


class HostSyncs(TorchFunctionMode):
    """Counts what would make the host wait for a GPU, as if the model and the batch lived on
    one: reading a device tensor (``.item()``, ``.tolist()``, ``.cpu()``, ``bool()``,
    ``float()``, ``int()``...), and copying host data to the device without
    ``non_blocking=True`` (torch then synchronises the stream; ``torch.tensor(list,
    device=...)`` included). Tensors made by factories without a ``device``, or with the
    literal ``device="cpu"`` (torch.optim keeps Adam's step counters so), and what is computed
    from them only, are host tensors: reading those costs nothing. A ``device`` passed as a
    ``torch.device`` (``x.device``) stands for the GPU."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []
        self.counting = False

    @staticmethod
    def _host(t) -> bool:
        return isinstance(t, torch.Tensor) and getattr(t, "_on_host", False)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in _flat((*args, *kwargs.values())) if isinstance(a, torch.Tensor)]
        moving = func in (torch.Tensor.to, torch.Tensor.cuda) and _moves(args, kwargs)
        to_device = (func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.copy_)
                     and not kwargs.get("non_blocking") and not (len(args) > 2 and args[2] is True))
        on_host = kwargs.get("device") is None or kwargs.get("device") == "cpu"
        if self.counting:
            if func in SYNCING and not all(self._host(t) for t in tensors):
                self.calls.append(getattr(func, "__name__", str(func)))
            elif (func in READS or (func is torch.Tensor.to and "cpu" in args[1:])) and not self._host(args[0]):
                self.calls.append(func.__name__)
            elif func in (torch.tensor, torch.as_tensor) and not on_host:
                self.calls.append(f"{func.__name__}(device=...)")
            elif to_device and func is not torch.Tensor.copy_ and self._host(args[0]) and _moves(args, kwargs):
                self.calls.append(f"{func.__name__} (host to device)")
            elif to_device and func is torch.Tensor.copy_ and not self._host(args[0]) and self._host(args[1]):
                self.calls.append("copy_ (host to device)")
        out = func(*args, **kwargs)
        if moving and out is args[0]:  # a move to where it lies returns the tensor itself: here, "the device"
            out = out.view_as(out)
        host = (func in FACTORIES and on_host) or (
            tensors and all(self._host(t) for t in tensors) and not moving)
        if host and isinstance(out, torch.Tensor) and not isinstance(out, torch.nn.Parameter):
            out._on_host = True
        return out


def _flat(items):
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flat(item)
        else:
            yield item


def _moves(args, kwargs) -> bool:
    """Whether a ``.to(...)`` / ``.cuda()`` names a device (or another tensor's)."""
    if "cpu" in args[1:] or kwargs.get("device") == "cpu":
        return False
    return any(isinstance(a, (torch.device, str, torch.Tensor)) for a in args[1:]) or "device" in kwargs


def count_step_syncs(monkeypatch, module, run) -> dict[int, list[str]]:
    """{step: host syncs counted from the batch's arrival on the device to the request for the
    next batch (the step and what the loop does after it: reading the losses back, logging,
    saving)}; the loader's own work is not counted."""
    mode, per_step, step = HostSyncs(), {}, [0]
    original_batches = module.device_batches

    def batches(*args, **kwargs):
        stream = iter(original_batches(*args, **kwargs))
        while True:
            if step[0]:  # the previous step and its housekeeping are over
                per_step[step[0]], mode.counting = list(mode.calls), False
            item = next(stream)
            mode.calls, mode.counting = [], True
            step[0] += 1
            yield item

    monkeypatch.setattr(module, "device_batches", batches)
    with mode:
        run()
    per_step[step[0]], mode.counting = list(mode.calls), False  # the last step, which fetches no next batch
    return per_step


CHECKS = ["train.steps=6", "train.log_every=3", "train.sample_every=0", "train.val_every=0", "train.ckpt_every=0"]


def test_no_host_sync_inside_a_stage1_step(data_config, tmp_path, monkeypatch):
    cfg = vae_config(data_config, tmp_path / "v", *CHECKS, "train.amp=bf16")
    as_on_cuda(monkeypatch)
    syncs = count_step_syncs(monkeypatch, vae, lambda: vae.train_vae(**vars(cfg)))
    assert sorted(syncs) == [1, 2, 3, 4, 5, 6]
    assert {n: c for n, c in syncs.items() if n % 3} == {1: [], 2: [], 4: [], 5: []}
    assert syncs[3]  # the log steps read the terms back (the counter sees them)


def test_no_host_sync_inside_a_stage2_step(data_config, stage1, tmp_path, monkeypatch):
    """Stage II with every term that has a code path of its own: identity (F), pixel_hole,
    the map BCE, TV, EMA."""
    cfg = gan_config(data_config, tmp_path / "g", stage1, *CHECKS, "train.amp=bf16", "loss.identity=50",
                     "loss.identity_net=mobilefacenet", "loss.pixel_hole=10",
                     "loss.map_bce=1", "generator.output=blend", "loss.tv=0.5", "train.ema=0.9")
    as_on_cuda(monkeypatch, f_in_autocast=False)
    syncs = count_step_syncs(monkeypatch, gan, lambda: gan.train_gan(**vars(cfg)))
    assert {n: c for n, c in syncs.items() if n % 3} == {1: [], 2: [], 4: [], 5: []}
    assert syncs[3] and syncs[6]


def test_device_occlusion_reads_indices_and_landmarks_on_the_host(data_config):
    """``data.occlude_on: device``: only the coverage test of each placement round reads the
    device (one ``.tolist()`` per round, rejection sampling needs it); indices, landmarks and
    the composite no longer do."""
    from fsggan.train.data import occlude_batch, setup_data, to_device

    cfg = load_config(TrainVAEConfig, None, [f"data.config={data_config}", *TINY["vae"], *TRAIN, "data.occlude_on=device"])
    env = runtime.Env()
    train_set, *_ = setup_data(cfg.data, cfg.train, env=env, ckpt=None)
    batch = torch.utils.data.default_collate([train_set[i] for i in range(4)])
    for v in batch.values():
        if isinstance(v, torch.Tensor):
            v._on_host = True  # the loader's batch: host memory
    occlude_batch(train_set, batch, 0)  # the occluder bank and the sampling bases, made once per device
    mode = HostSyncs()
    with mode:
        moved = to_device(batch, env)
        for v in moved.values():
            if isinstance(v, torch.Tensor):
                v._on_host = False  # now "on the device"
        mode.counting = True
        out = occlude_batch(train_set, moved, 0, host=batch)
    assert set(mode.calls) == {"tolist"} and len(mode.calls) <= train_set.synthesizer.placement.max_tries
    ref = occlude_batch(train_set, batch, 0)
    assert torch.equal(out["occluded"], ref["occluded"]) and torch.equal(out["mask"], ref["mask"])


# DDP: two gloo processes --------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(rank: int, world: int, ports: list[int], out: str, stage: str, jobs: list, nan_step: int) -> None:
    """One rank: train ``stage`` once per ``(overrides, resume)`` of ``jobs`` (each in a process
    group of its own, on its own port); rank 1 poisons its loss at ``nan_step``; writes what
    happened to ``out/rank{rank}.json``, then leaves at once (``os._exit``): the process group's
    C++ threads are torn down while the process runs, not during interpreter shutdown, where
    gloo can abort a process whose work is already done. A crash prints every thread's stack."""
    faulthandler.enable()
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    if nan_step and rank == 1:
        original, count = vae.vae_loss, [0]

        def poisoned(*args, **kwargs):
            count[0] += 1
            terms = original(*args, **kwargs)
            return {**terms, "nll": terms["nll"] * float("nan")} if count[0] == nan_step else terms
        vae.vae_loss = poisoned
    report = {"rank": rank, "steps": []}
    train, config = (vae.train_vae, TrainVAEConfig) if stage == "vae" else (gan.train_gan, TrainGANConfig)
    try:
        for port, (overrides, resume) in zip(ports, jobs):
            os.environ["MASTER_PORT"] = str(port)
            report["steps"].append(train(**vars(load_config(config, None, overrides)), resume=resume)["step"])
    except NonFiniteLossError as exc:
        report["error"] = str(exc)
    except Exception:
        report["crash"] = traceback.format_exc()[-2000:]
    gc.collect()  # the models of a failed run (and their process group) go now
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)


def run_ddp(tmp_path: Path, stage: str, jobs: list, nan_step: int = 0, timeout: float = 60) -> list[dict]:
    """Two gloo ranks (spawned processes) running ``jobs``; their reports."""
    ports = [free_port() for _ in jobs]
    ctx = mp.start_processes(ddp_worker, args=(2, ports, str(tmp_path), stage, jobs, nan_step), nprocs=2,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the two ranks did not finish within {timeout:.0f} s (a rank waits in a collective)")
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def test_ddp_nonfinite_loss_on_one_rank_stops_every_rank(data_config, tmp_path):
    from fsggan.checkpoint import load_checkpoint

    run = tmp_path / "run"
    overrides = [*TINY["vae"], f"data.config={data_config}", f"train.run_dir={run}", *TRAIN,
                 "train.log_every=2", "train.ckpt_every=3", "train.val_every=0", "train.sample_every=0"]
    reports = run_ddp(tmp_path, "vae", [(overrides, None)], nan_step=4)
    assert [r.get("crash") for r in reports] == [None, None], reports
    for r in reports:
        assert "error" in r, r
        assert "step 4" in r["error"] and "\n" not in r["error"], r["error"]
    assert "loss/nll=nan" in reports[1]["error"]
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 3
    assert all(torch.isfinite(t).all() for t in ckpt["models"]["vae"].values() if t.is_floating_point())


@pytest.mark.parametrize("trunk", ["tied", "copy"])
def test_ddp_trains_a_trained_trunk_with_shallow_heads_only(trunk, data_config, stage1, tmp_path):
    run = tmp_path / "run"
    overrides = [f"gan.vae_checkpoint={stage1}", *TINY["gan"], f"discriminator.trunk_mode={trunk}",
                 "discriminator.levels=[1, 2]", "loss.identity=0", f"data.config={data_config}",
                 f"train.run_dir={run}", *TRAIN, "train.steps=3", "train.val_every=0", "train.sample_every=0"]
    reports = run_ddp(tmp_path, "gan", [(overrides, None)])
    assert [r.get("steps") for r in reports] == [[3], [3]], reports


def test_ddp_resumed_run_equals_the_uninterrupted_one(data_config, tmp_path):
    """Two ranks: 4 steps straight, and 2 steps then resumed to 4: the same weights, bitwise
    (each rank's RNG streams and its place in the data are restored)."""
    from fsggan.checkpoint import load_checkpoint

    def job(run, steps):
        return [*TINY["vae"], f"data.config={data_config}", f"train.run_dir={run}", *TRAIN, f"train.steps={steps}",
                "train.val_every=0", "train.sample_every=0", "train.ckpt_every=0"]

    a, b = tmp_path / "a", tmp_path / "b"
    reports = run_ddp(tmp_path, "vae", [(job(a, 4), None), (job(b, 2), None),
                                        (job(b, 4), str(b / "checkpoints" / "last.pt"))], timeout=90)
    assert [r.get("steps") for r in reports] == [[4, 2, 4]] * 2, reports
    wa, wb = (load_checkpoint(r / "checkpoints" / "last.pt")["models"]["vae"] for r in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_each_rank_finds_its_gpu(monkeypatch):
    """Where each process sees only its own GPU (CUDA_VISIBLE_DEVICES per rank), LOCAL_RANK is
    not an index into the visible devices."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(runtime, "set_cuda_backends", lambda **kw: None)
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    env = runtime.setup_env("cuda")
    assert env.device == torch.device("cuda", 0) and chosen == [torch.device("cuda", 0)]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert runtime.setup_env("cuda").device == torch.device("cuda", 3)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(runtime.TrainingError, match="LOCAL_RANK=3 but this process sees 2 GPUs"):
        runtime.setup_env("cuda")


# Leaner pieces --------------------------------------------------------------------------------

class Calls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def test_ema_update_is_multi_tensor():
    from fsggan.models import UNetGenerator
    from fsggan.train.state import EMA

    gen = UNetGenerator(base_channels=4)
    ema = EMA(gen, 0.9)
    before = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(1.0)
    with Calls() as calls:
        ema.update(gen)
    assert len(list(gen.parameters())) > 20 and calls.names.count("_foreach_lerp_") == 1 and len(calls.names) < 5, \
        calls.names
    for avg, cur, old in zip(ema.module.parameters(), gen.parameters(), before):
        assert torch.equal(avg, old.lerp(cur, 0.1))  # the same arithmetic as a per-tensor lerp


def test_adam_is_fused_on_cuda_only():
    p = [torch.nn.Parameter(torch.randn(3))]
    opt = dict(lr=1e-3, betas=(0.5, 0.999), weight_decay=0.0)
    assert runtime.adam(p, device=torch.device("cuda"), **opt).defaults["fused"] is True
    assert not runtime.adam(p, device=torch.device("cpu"), **opt).defaults["fused"]


def test_alignment_grid_is_built_once_per_device_and_dtype():
    from fsggan.models.identity.base import align_to_reference

    x = torch.rand(2, 3, 40, 40) * 2 - 1
    first = align_to_reference(x, (112, 96))
    with Calls() as calls:
        again = align_to_reference(x, (112, 96))
    assert "meshgrid" not in calls.names and torch.equal(first, again)
    with Calls() as calls:
        half = align_to_reference(x.bfloat16(), (112, 96))
    assert "meshgrid" in calls.names and half.dtype == torch.bfloat16


def test_validation_ssim_is_batched(monkeypatch):
    import fsggan.metrics as metrics
    from fsggan.train.monitor import validate

    n = [0]
    original = metrics.structural_similarity

    def counted(*args, **kwargs):
        n[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(metrics, "structural_similarity", counted)
    g = torch.Generator().manual_seed(0)
    y = torch.rand(6, 3, 32, 32, generator=g) * 2 - 1
    x = (y + 0.2 * torch.randn(6, 3, 32, 32, generator=g)).clamp(-1, 1)
    got = validate(lambda t: {"output": t.flip(-1)}, {"occluded": x, "clean": y}, runtime.Env(), batch_size=4)
    assert n[0] == 0
    want = sum(original(b.permute(1, 2, 0).add(1).div(2).double().numpy(), a.permute(1, 2, 0).add(1).div(2).double().numpy(),
                        channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
               for a, b in zip(x, y)) / 6
    assert got["val/input_ssim"] == pytest.approx(want, abs=1e-9)


def test_loader_workers_persist_across_epochs_and_see_each_epoch():
    from fsggan.train.data import ShardedBatchSampler, epoch_batches, make_loader

    class Items(torch.utils.data.Dataset):
        epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"value": torch.tensor(100 * self.epoch + i), "pid": torch.tensor(os.getpid())}

    data = SimpleNamespace(num_workers=1, pin_memory=False, persistent_workers=True)
    sampler = ShardedBatchSampler(4, 2, seed=0)
    stream = epoch_batches(make_loader(Items(), sampler, data, runtime.Env()), sampler, Items(), 0, 0)
    seen = [next(stream) for _ in range(6)]  # three epochs of two batches
    pids = {int(p) for _, _, b in seen for p in b["pid"]}
    assert len(pids) == 1 and os.getpid() not in pids
    for epoch, _, b in seen:
        assert all(int(v) // 100 == epoch for v in b["value"])
    assert sorted(int(v) % 100 for e, _, b in seen if e == 1 for v in b["value"]) == [0, 1, 2, 3]


def test_compile_covers_every_network_of_the_step(data_config, stage1, tmp_path, monkeypatch):
    """train.compile: G, D (in G's step and in its own) and V(x) all run compiled, not G and
    one D pass only."""
    compiled = []

    def record(model, *args, **kwargs):
        compiled.append(type(model).__name__)
        return model
    monkeypatch.setattr(torch, "compile", record)
    gan.train_gan(**vars(gan_config(data_config, tmp_path / "g", stage1, "train.steps=1", "train.compile=true")))
    assert sorted(compiled) == ["MultiRFDiscriminator", "MultiRFDiscriminator", "UNetGenerator", "VAE"]


def test_images_per_second_counts_validation_time(data_config, tmp_path, monkeypatch):
    from fsggan.train import monitor

    pause = 1.5
    original = monitor.validate

    def slow(*args, **kwargs):
        time.sleep(pause)
        return original(*args, **kwargs)

    monkeypatch.setattr(monitor, "validate", slow)
    cfg = vae_config(data_config, tmp_path / "v", "train.steps=4", "train.log_every=4", "train.val_every=2",
                     "train.sample_every=0", "train.ckpt_every=0")
    vae.train_vae(**vars(cfg))
    (record,) = [r for r in map(json.loads, (tmp_path / "v" / "stats.jsonl").read_text().splitlines())
                 if "speed/images_per_sec" in r]
    assert record["speed/images_per_sec"] <= 4 * 4 / pause  # 16 images in more than the validation's pause
