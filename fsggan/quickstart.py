"""The end-to-end demo run: prepare an LFW test set, train V then G, evaluate, write a report.

:func:`run_quickstart`; its command line is ``fsggan-quickstart`` (:mod:`fsggan.cli.quickstart`).

The quick run (default) uses `configs/cpu/quickstart_vae.yaml` and
`configs/cpu/quickstart_gan.yaml`: the CPU recipe's models at 64x64 (V twice as wide), 1,200
Stage I and 700 Stage II steps, under eight minutes end to end on a 2-core AVX-512 CPU, enough to
see occluders removed (not a paper-quality model). Each phase's wall time is printed and stored in results.json.
`--full` (``full=True``) uses `configs/lfw_vae.yaml` and `configs/lfw_gan.yaml` (128x128,
default widths, tens of thousands of steps, MobileFaceNet identity loss) with, on a GPU with
bf16, bf16 autocast and channels_last (cudnn.benchmark and TF32 are on by default on CUDA).

Everything goes under `--out` (``out``):

    data/           prepared sets (val-lfw, set1-lfw[, set2-lfw]) + splits-lfw.json
    vae/ gan/       the two training runs (config.yaml, stats.jsonl, checkpoints/, samples/)
    report/         results.md / results.json / CSV (PSNR, SSIM, rank-k), deocclusion_grid.png

The steps are resumable: an existing run directory is continued (its `last.pt`), and a
prepared set that already exists is kept, so re-running after an interruption goes on
where it stopped.

Data it does not ship comes from the data folder (:func:`fsggan.datadir.data_root`,
``FSGGAN_DATA``): the configs' occluder folders and recogniser weights are looked for there
(:func:`fsggan.datadir.in_data_root`). With LFW alone the run still goes through: without
occluder cut-outs the sets and the training faces get fsggan's drawn occluders
(:data:`FALLBACK_KINDS`), without the identity network's weights Stage II trains with no
identity term; each says so in one printed line.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Iterator, Sequence

import torch

from fsggan.config import load_config
from fsggan.datadir import data_root as default_data_root, in_data_root

REPO_ROOT = Path(__file__).resolve().parents[1]
MOBILEFACENET = Path("weights") / "mobilefacenet_casia_068.ckpt"   # the report's second judge, in the data folder
# Drawn occluders when no cut-outs are found: only kinds Set3 (configs/data/lfw.yaml, occluders.unseen:
# bar, round_glasses, scarf, blob, stripes, polygon) does not hold, so Set3 stays a test of unseen kinds.
FALLBACK_KINDS = ("sunglasses", "mask", "hand", "ellipse")


def _configs_dir() -> Path:
    d = REPO_ROOT / "configs"
    if not d.is_dir():
        raise SystemExit("fsggan-quickstart: the configs/ folder of the repository was not found next to the "
                         f"package ({d}); install from a clone with `pip install -e .` and run from its root")
    return d


def _call(fn, cfg, resume):
    """Call train_vae / train_gan with the config's sections as keyword arguments."""
    return fn(**{f.name: getattr(cfg, f.name) for f in fields(cfg)}, resume=resume)


def _last(run_dir: Path) -> str | None:
    last = run_dir / "checkpoints" / "last.pt"
    return str(last) if last.is_file() else None


def run_quickstart(*, lfw: Path, out: Path, full: bool = False, vae_steps: int | None = None,
                   gan_steps: int | None = None, device: str = "auto", recognizer_weights: str | None = None,
                   progress: bool = True, data_overrides: Sequence[str] = (), data_root: Path | None = None) -> dict:
    """Prepare -> Stage I -> Stage II -> evaluate; returns the evaluation results dict, with
    the wall time of each phase under ``"timings"`` (seconds; also printed).

    ``data_overrides`` are extra ``key=value`` settings of configs/data/lfw.yaml (e.g.
    ``protocol.num_identities=20`` for a small LFW-layout folder). ``data_root``: the folder of
    occluder cut-outs and weights (default :func:`fsggan.datadir.data_root`).
    """
    from fsggan.train.gan import train_gan
    from fsggan.train.vae import train_vae

    configs = _configs_dir()
    root = Path(data_root) if data_root is not None else default_data_root()
    vae_dir, gan_dir, data_dir = out / "vae", out / "gan", out / "data"
    pools, note = occluder_pools(configs / "data" / "lfw.yaml", root)
    if note:
        _say(note)
    vae_cfg, gan_cfg = training_configs(lfw=lfw, out=out, full=full, vae_steps=vae_steps, gan_steps=gan_steps,
                                        device=device, progress=progress, data_overrides=[*pools, *data_overrides])
    note = identity_weights(gan_cfg.loss, root)
    if note:
        _say(note)
    recognizer_weights = recognizer_weights or _found(root / MOBILEFACENET)
    if full:
        t = gan_cfg.train
        _say(f"full run, device {device}: amp {t.amp}, channels_last {t.channels_last}, "
             f"cudnn_benchmark {t.cudnn_benchmark}, tf32 {t.tf32} (the last two on CUDA only)")
    sets = ["val", "set1", "set2"] if full else ["val", "set1"]
    timings: dict[str, float] = {}
    with _timed(timings, "prepare"):
        _prepare_sets(configs / "data" / "lfw.yaml", data_dir, sets, lfw=lfw, size=vae_cfg.vae.image_size,
                      overrides=[*pools, *data_overrides], progress=progress)
    # Stage I then Stage II (Algorithm 1), each resumed if a previous call was interrupted
    with _timed(timings, "stage1"):
        _say(f"[2/4] Stage I: training V for {vae_cfg.train.steps} steps in {vae_dir}")
        _call(train_vae, vae_cfg, _last(vae_dir))
    with _timed(timings, "stage2"):
        _say(f"[3/4] Stage II: training G and D for {gan_cfg.train.steps} steps in {gan_dir}")
        _call(train_gan, gan_cfg, _last(gan_dir))
    report_dir = out / "report"
    with _timed(timings, "evaluate"):
        _say("[4/4] evaluating")
        results = _evaluate(gan_dir, [data_dir / f"{s}-lfw" for s in sets if s != "val"], device=device,
                            recognizer_weights=recognizer_weights, progress=progress,
                            grid=report_dir / "deocclusion_grid.png")
    timings["total"] = sum(timings.values())
    _write_report(results, timings, report_dir)
    return results


def occluder_pools(data_yaml: Path, root: Path) -> tuple[list[str], str | None]:
    """(overrides of the data config's ``occluders.seen`` / ``occluders.new``, a note or None):
    each pool's cut-out folders looked for under ``root`` (:func:`fsggan.datadir.in_data_root`),
    those missing left out; a pool left with none gets fsggan's drawn occluders of
    :data:`FALLBACK_KINDS` (seed 0 for the seen pool, 1 for the new one: other drawings of the
    same kinds), and the note says so. A pool found where the config names it is not
    overridden (the runs' stored configs stay as they were)."""
    from fsggan.config import to_dict
    from fsggan.data.config import load_data_config

    occluders = load_data_config(data_yaml).occluders
    overrides, drawn = [], []
    for seed, pool in enumerate(("seen", "new")):
        given = to_dict(getattr(occluders, pool))
        sources = []
        for src in map(dict, given):
            if src["path"] != "procedural":
                src["path"] = _moved(src["path"], in_data_root(src["path"], root))
            if src["path"] == "procedural" or Path(src["path"]).is_dir():
                sources.append(src)
        if not sources:
            drawn.append(pool)
            sources = [{"path": "procedural", "kinds": list(FALLBACK_KINDS), "count": 24, "seed": seed}]
        if sources != given:
            overrides.append(f"occluders.{pool}={json.dumps(sources)}")
    note = (f"no occluder cut-outs in {root / 'occluders'} for the {' and '.join(drawn)} pool{'s' * (len(drawn) > 1)}: "
            f"using fsggan's drawn occluders ({', '.join(FALLBACK_KINDS)}; docs/design.md, Data, says where the "
            f"cut-outs come from)" if drawn else None)
    return overrides, note


def identity_weights(loss, root: Path) -> str | None:
    """Point Stage II's ``loss.identity_weights`` into ``root``; when the file is not there,
    set ``loss.identity`` to 0 (no identity term) and return the note that says so."""
    if not loss.identity or not loss.identity_weights:
        return None
    path = Path(_moved(loss.identity_weights, in_data_root(loss.identity_weights, root)))
    if path.is_file():
        loss.identity_weights = str(path)
        return None
    loss.identity = 0.0
    return (f"no {loss.identity_net} weights at {path}: Stage II trains without the identity term "
            f"(docs/design.md, Data, says where the weights come from)")


def _moved(given: str, found: Path) -> str:
    """``given`` when it names the same place as ``found``, else ``found``."""
    return given if Path(given).resolve() == found.resolve() else str(found)


def _found(path: Path) -> str | None:
    return str(path) if path.is_file() else None


def _prepare_sets(data_yaml: Path, data_dir: Path, sets: Sequence[str], *, lfw: Path, size: int,
                  overrides: Sequence[str], progress: bool) -> None:
    """Phase 1: the prepared evaluation sets in `data_dir`, unless they are there already
    (rendering is deterministic: they are what this call would write)."""
    from fsggan.data.config import load_data_config
    from fsggan.data.prepare import prepare_data

    if (data_dir / "set1-lfw" / "protocol.json").is_file():
        _say(f"[1/4] prepared sets found in {data_dir}")
        return
    _say(f"[1/4] preparing LFW test sets ({', '.join(sets)}, {size}x{size}) in {data_dir}")
    data_cfg = load_data_config(data_yaml, [f"dataset.root={lfw}", f"dataset.image_size={size}", *overrides,
                                            f"output.out={data_dir}"])
    prepare_data(data_cfg, sets=sets, progress=progress)


def _evaluate(gan_dir: Path, test_sets: list[Path], *, device: str, recognizer_weights: str | None,
              progress: bool, grid: Path) -> dict:
    """Phase 4: PSNR / SSIM and rank-k on `test_sets`, judged by dlib's recogniser (independent:
    nothing trained against it) and by MobileFaceNet (G's identity loss: marked, not a fair
    judge) when its weights are here; the de-occlusion grid of the first set goes to `grid`."""
    from fsggan.eval.evaluate import evaluate_sets
    from fsggan.api import FSGGAN

    model = FSGGAN.from_checkpoints(gan=gan_dir, device=device)
    recognizers, infos = _recognizers(model, recognizer_weights)
    results = evaluate_sets(test_sets, method="FSG-GAN (quickstart)", model=model, recognizers=recognizers,
                            recognizer_info=infos, device=model.device, progress=progress, worst=16)
    save_grid(model, test_sets[0], grid)
    return results


def _write_report(results: dict, timings: dict[str, float], report_dir: Path) -> None:
    """Add the command line and the timings to `results`, write the report files and print
    the tables and the wall times."""
    from fsggan.eval import report

    results["command"] = ["fsggan-quickstart", *sys.argv[1:]]
    results["timings"] = timings
    report.write_results(results, report_dir)
    print(report.markdown([results]))
    _say("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    _say(f"report written to {report_dir}")


def _recognizers(model, mobilefacenet_weights: str | None) -> tuple[dict, list[dict]]:
    """The judges of the report: dlib's recogniser first (independent), then MobileFaceNet
    when its weights are found (marked when it is the identity loss G was trained with)."""
    from fsggan.eval.recognition import DLIB_NAME, build_recognizer

    infos = [{"name": DLIB_NAME, "weights": None, "role": "independent"}]
    weights = mobilefacenet_weights
    if weights is not None:
        infos.append({"name": "mobilefacenet", "weights": weights,
                      "role": "training loss" if model.identity_net == "mobilefacenet" else "independent"})
    else:
        _say("no MobileFaceNet weights found: its rank-k is skipped (pass --recognizer-weights)")
    nets = {i["name"]: build_recognizer(i["name"], i["weights"]).place(model.device) for i in infos}
    return nets, infos


def training_configs(*, lfw: Path, out: Path, full: bool = False, vae_steps: int | None = None,
                     gan_steps: int | None = None, device: str = "auto", progress: bool = True,
                     data_overrides: Sequence[str] = ()):
    """The Stage I and Stage II configs of the run: (TrainVAEConfig, TrainGANConfig).

    ``full`` takes the LFW configs at 128x128 plus, on a GPU with bf16, bf16 autocast and
    channels_last (:func:`fsggan.train.runtime.gpu_speed_settings`; cudnn.benchmark and TF32
    are the training defaults)."""
    from fsggan.train.config import TrainGANConfig, TrainVAEConfig
    from fsggan.train.runtime import gpu_speed_settings

    configs = _configs_dir()
    vae_yaml, gan_yaml = ((configs / "lfw_vae.yaml", configs / "lfw_gan.yaml") if full else
                          (configs / "cpu" / "quickstart_vae.yaml", configs / "cpu" / "quickstart_gan.yaml"))
    vae_dir = out / "vae"
    speed = gpu_speed_settings(device) if full else {}
    common = [f"train.device={device}", f"train.progress={'true' if progress else 'false'}",
              *(f"train.{k}={str(v).lower()}" for k, v in speed.items()),
              f"data.dataset.root={lfw}", *(f"data.{o}" for o in data_overrides)]
    vae_cfg = load_config(TrainVAEConfig, vae_yaml, [*common, f"train.run_dir={vae_dir}",
                                                     *([f"train.steps={vae_steps}"] if vae_steps else [])])
    gan_cfg = load_config(TrainGANConfig, gan_yaml, [*common, f"train.run_dir={out / 'gan'}",
                                                     f"gan.vae_checkpoint={vae_dir / 'checkpoints' / 'best.pt'}",
                                                     *([f"train.steps={gan_steps}"] if gan_steps else [])])
    return vae_cfg, gan_cfg


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    """Store the wall time of the block under ``timings[phase]`` and print it."""
    t0 = time.perf_counter()
    yield
    seconds = time.perf_counter() - t0
    _say(f"      done in {seconds:.0f} s")
    timings[phase] = seconds


def save_grid(model, set_dir: Path, path: Path, count: int = 8) -> None:
    """Rows: occluded x, structure g, output G(x, g), clean y, for the first images of a set."""
    from torchvision.utils import save_image

    from fsggan.images import load_image

    names = sorted(p.name for p in (set_dir / "occluded").glob("*.png"))[:count]
    x = torch.stack([load_image(set_dir / "occluded" / n) for n in names])
    y = torch.stack([load_image(set_dir / "clean" / n) for n in names])
    out, g = model.run(x)
    rows = torch.cat([x, g.float().cpu(), out.float().cpu(), y]) * 0.5 + 0.5
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(rows.clamp(0, 1), path, nrow=len(names), padding=2)
