"""One source of defaults: the options of `sae train` and `lt-vit train` default to their config dataclasses'
fields (they drifted before: `lt-vit train` said 600 steps / 50 warm-up while LTTrainConfig said 300 / 30)."""

from __future__ import annotations

import dataclasses

import pytest
from typer.main import get_command

from cxrlens.cli import app
from cxrlens.cli.common import config_default
from cxrlens.labeltokens.model import LTViTConfig
from cxrlens.labeltokens.run import LTRunConfig
from cxrlens.labeltokens.train import LTTrainConfig
from cxrlens.sae.base import SAEConfig
from cxrlens.sae.run import SAERunConfig
from cxrlens.sae.train import TrainConfig

OPTIONS = {
    ("sae", "train"): {
        "k": (SAEConfig, "k"),
        "sparsity_coeff": (SAEConfig, "sparsity_coeff"),
        "steps": (TrainConfig, "steps"),
        "batch_size": (TrainConfig, "batch_size"),
        "lr": (TrainConfig, "lr"),
        "optimizer": (TrainConfig, "optimizer"),
        "seed": (TrainConfig, "seed"),
        "checkpoint_every": (TrainConfig, "checkpoint_every"),
        "resample_every": (TrainConfig, "resample_every"),
        "split": (SAERunConfig, "split"),
        "eval_split": (SAERunConfig, "eval_split"),
    },
    ("lt-vit", "train"): {
        "steps": (LTTrainConfig, "steps"),
        "batch_size": (LTTrainConfig, "batch_size"),
        "lr": (LTTrainConfig, "lr"),
        "warmup": (LTTrainConfig, "warmup_steps"),
        "weight_decay": (LTTrainConfig, "weight_decay"),
        "uncertain": (LTTrainConfig, "uncertain"),
        "seed": (LTTrainConfig, "seed"),
        "image_size": (LTViTConfig, "image_size"),
        "patch_size": (LTViTConfig, "patch_size"),
        "dim": (LTViTConfig, "dim"),
        "depth": (LTViTConfig, "depth"),
        "heads": (LTViTConfig, "heads"),
        "eval_split": (LTRunConfig, "eval_split"),
    },
}


def _field_default(cls: type, name: str) -> object:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default


@pytest.mark.parametrize("path", sorted(OPTIONS))
def test_option_defaults_are_the_config_defaults(path: tuple[str, str]) -> None:
    command = get_command(app)
    for part in path:
        command = command.commands[part]
    params = {p.name: p for p in command.params}
    for option, (cls, field) in OPTIONS[path].items():
        assert params[option].default == _field_default(cls, field), f"{' '.join(path)} --{option} vs {cls.__name__}"


def test_config_default_errors() -> None:
    assert config_default(SAERunConfig, "train") == TrainConfig()  # default_factory is called
    with pytest.raises(ValueError, match="no field"):
        config_default(TrainConfig, "nope")
    with pytest.raises(ValueError, match="no default"):
        config_default(LTTrainConfig, "model")
