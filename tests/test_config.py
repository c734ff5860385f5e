"""Training configs: every YAML in configs/ loads, overrides and errors behave, the model
sections are exactly the constructor arguments, the paper settings are the paper's."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from fsggan.config import ConfigError, load_config, read_layers, save_config, to_dict
from fsggan.models import VAE, GlobalDiscriminator, MultiRFDiscriminator, PatchDiscriminator, UNetGenerator
from fsggan.train.config import (GeneratorKwargs, GlobalKwargs, MultiRFKwargs, PatchKwargs, TrainGANConfig,
                                 TrainVAEConfig, VAEKwargs)

from helpers.files import REPO

CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if "data" not in p.relative_to(REPO / "configs").parts)


def config_class(path: Path):
    """Stage II configs have a ``gan`` section (a layer may inherit it from its base)."""
    return TrainGANConfig if "gan" in read_layers(path) else TrainVAEConfig


def test_configs_exist():
    names = {str(p.relative_to(REPO / "configs")) for p in CONFIGS}
    for required in ["vae.yaml", "gan.yaml", "lfw_vae.yaml", "lfw_gan.yaml", "tiny_cpu_vae.yaml", "tiny_cpu_gan.yaml",
                     "ablations/no_hdc.yaml", "ablations/regular_d.yaml", "ablations/trunk_tied.yaml",
                     "ablations/trunk_copy.yaml"]:
        assert required in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_config_loads(path):
    from fsggan.data.config import load_data_config

    cfg = load_config(config_class(path), path)
    assert isinstance(cfg.optim.lr, float)  # written as 1.0e-4, read as a float
    # the data-preparation config it points to exists (paths relative to the repository root)
    assert (REPO / cfg.data.config).is_file()
    load_data_config(REPO / cfg.data.config)


def test_paper_settings():
    vae = load_config(TrainVAEConfig, REPO / "configs" / "vae.yaml")
    gan = load_config(TrainGANConfig, REPO / "configs" / "gan.yaml")
    for cfg in (vae, gan):
        assert cfg.data.config == "configs/data/celeba.yaml"
        assert cfg.optim.lr == 1.0e-4 and tuple(cfg.optim.betas) == (0.5, 0.999)
    assert vae.vae.image_size == 128
    assert (gan.loss.pixel, gan.loss.identity, gan.loss.adversarial, gan.loss.tv) == (100.0, 50.0, 1.0, 0.0)
    assert gan.loss.identity_net == "lightcnn29v2"
    assert gan.discriminator.trunk_mode == "frozen" and gan.discriminator.lam == 1.0
    assert gan.gan.d_arch == "multi_rf" and gan.generator.hdc


def test_ablations_change_one_thing():
    base = to_dict(load_config(TrainGANConfig, REPO / "configs" / "gan.yaml"))
    expected = {
        "no_hdc": {("generator", "hdc"): False},
        "regular_d": {("gan", "d_arch"): "global"},
        "trunk_tied": {("discriminator", "trunk_mode"): "tied"},
        "trunk_copy": {("discriminator", "trunk_mode"): "copy"},
    }
    for name, changes in expected.items():
        cfg = to_dict(load_config(TrainGANConfig, REPO / "configs" / "ablations" / f"{name}.yaml"))
        diff = {(s, k): cfg[s][k] for s in cfg for k in cfg[s]
                if cfg[s][k] != base[s][k] and (s, k) != ("train", "run_dir")}
        assert diff == changes, name


@pytest.mark.parametrize("section, model", [(VAEKwargs, VAE), (GeneratorKwargs, UNetGenerator),
                                            (MultiRFKwargs, MultiRFDiscriminator), (GlobalKwargs, GlobalDiscriminator),
                                            (PatchKwargs, PatchDiscriminator)])
def test_model_sections_are_constructor_kwargs(section, model):
    params = {k: p.default for k, p in inspect.signature(model).parameters.items() if k != "trunk"}
    fields = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
              for f in dataclasses.fields(section)}
    assert list(fields) == list(params)
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()} == params


def test_overrides_and_types(tmp_path):
    cfg = load_config(TrainGANConfig, REPO / "configs" / "gan.yaml",
                      ["optim.lr=2.0e-4", "optim.lr_d=1e-4", "train.amp=bf16", "generator.hdc_rates=[1, 3]",
                       "loss.identity=0", "discriminator.trunk_mode=tied"])
    assert cfg.optim.lr == 2.0e-4 and cfg.optim.lr_d == 1.0e-4  # "1e-4" (a YAML string) accepted for a float
    assert cfg.train.amp == "bf16" and cfg.generator.hdc_rates == (1, 3)
    assert cfg.loss.identity == 0.0 and cfg.discriminator.trunk_mode == "tied"
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(TrainGANConfig, tmp_path / "config.yaml")
    assert again == cfg


@pytest.mark.parametrize("override, message", [
    ("train.stepz=5", "valid keys in train: steps, batch_size"),
    ("nosection.a=1", "valid keys: gan, vae, generator"),
    ("train.steps=many", "train.steps: expected an integer"),
    ("train.amp=fp8", "expected one of 'none' | 'bf16' | 'fp16'"),
    ("discriminator.trunk_mode=shared", "'frozen' | 'tied' | 'copy'"),
    ("optim.betas=[0.5]", "expected 2 items"),
    ("train.batch_size=0", "batch_size must be >= 1"),
    ("gan.structure_passes=0", "gan.structure_passes=0: must be an integer >= 1"),
])
def test_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=None) as e:
        load_config(TrainGANConfig, REPO / "configs" / "gan.yaml", [override])
    assert message in str(e.value)


def test_cli_reports_valid_keys_and_exits(capsys):
    from fsggan.cli.train_vae import main

    assert main(["--config", str(REPO / "configs" / "tiny_cpu_vae.yaml"), "--set", "vae.width=3"]) == 2
    msg = capsys.readouterr().err
    assert msg.startswith("fsggan-train-vae: error: ") and msg.count("\n") == 1
    assert "unknown config key vae.width" in msg and "base_channels" in msg


def test_print_config(capsys):
    from fsggan.cli.train_gan import main

    with pytest.raises(SystemExit) as e:
        main(["--config", str(REPO / "configs" / "tiny_cpu_gan.yaml"), "--set", "train.steps=7", "--print-config"])
    assert e.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["steps"] == 7
