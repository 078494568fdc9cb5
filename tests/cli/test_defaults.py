"""One source of defaults: every option of a stage command (``cxrlens.stages.STAGES``) whose name is a field of the
stage's config dataclass, or of a dataclass nested in it (``SAERunConfig.train.sae.k``), defaults to that field's
default — after the command's own transformation (a comma-separated string for a tuple field, ``all`` for ``None``).
Options named differently from their field are mapped in :data:`ALIASES`; the few that differ on purpose are in
:data:`INTENDED_DIFFERENCES`, each with its reason. Commands take these defaults from the config
(``cli.common.config_option`` / ``config_csv_option``), so a config change reaches the CLI and this test stays green;
a literal that drifts fails here (as `lt-vit train` and `sae train` once did, and `analyze embed --max-points`,
`analyze disentangle --num-train/--num-eval` and `lt-vit predict --split` until this test covered every stage)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.main import get_command

from cxrlens.cli import app
from cxrlens.cli.common import config_csv_default, config_default
from cxrlens.labeltokens.train import LTTrainConfig
from cxrlens.sae.run import SAERunConfig
from cxrlens.sae.train import TrainConfig
from cxrlens.stages import STAGES

NO_DEFAULT = object()

# (command, option parameter name) → dotted field path, for options whose name is not their field's name
ALIASES: dict[tuple[str, str], str] = {
    ("sae train", "compile_"): "train.compile",
    ("lt-vit train", "warmup"): "train.warmup_steps",
    ("backbone train", "pretrain"): "pretrain_datasets",
    ("backbone train", "layers"): "arch.num_layers",
    ("backbone train", "heads"): "arch.num_heads",
    ("analyze importance", "repeats"): "importance.n_repeats",
    ("align probe", "sae"): "sae_run",
    ("interpret", "llm_key_env"): "llm.api_key_env",
    ("interpret", "llm_allow_remote"): "llm.allow_remote",
    ("data import iu-xray", "reports"): "reports_source",
    ("data import folder", "reports"): "csv",
}

# (command, option parameter name) → why its default is not the field's default
INTENDED_DIFFERENCES: dict[tuple[str, str], str] = {
    # None = "4 for --kind ae, else 1": the right latent grid depends on another option; VAEConfig says 1
    ("analyze train-vae", "latent_grid"): "depends on --kind",
    # None = the config's default (the 16 sprite factors, taken from the config); the help names them instead of
    # printing 16 names
    ("analyze disentangle", "factors"): "None defers to the config",
    ("analyze mask", "factors"): "None defers to the config",
}

# (command, option parameter name) → the command's transformation of the option's value into the field's value,
# where it is not the generic comma-separated string → tuple
TRANSFORMS: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("lt-vit predict", "split"): lambda v: None if v == "all" else v,
}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return NO_DEFAULT


def _nested_class(cls: type, f: dataclasses.Field, default: Any) -> type | None:
    """The dataclass type of field ``f`` (also for ``X | None`` fields whose default is None), else None."""
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return type(default)
    hint = typing.get_type_hints(cls).get(f.name)
    for t in (hint, *typing.get_args(hint)):
        if isinstance(t, type) and dataclasses.is_dataclass(t):
            return t
    return None


def config_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted path, default)`` of every field of ``cls`` and of the dataclasses nested in it (depth first)."""
    for f in dataclasses.fields(cls):
        default = _default(f)
        yield prefix + f.name, default
        nested = _nested_class(cls, f, default)
        if nested is not None:
            yield from config_fields(nested, f"{prefix}{f.name}.")


def field_for(command: str, option: str, fields: dict[str, Any]) -> str | None:
    """The field path an option sets: its alias, else the shallowest field of that name (a tie between fields with
    different defaults is an error: name the field in ALIASES); None for CLI-only options."""
    if (command, option) in ALIASES:
        return ALIASES[command, option]
    matches = [p for p in fields if p.rsplit(".", 1)[-1] == option]
    if not matches:
        return None
    depth = min(p.count(".") for p in matches)
    shallowest = [p for p in matches if p.count(".") == depth]
    defaults = {repr(fields[p]) for p in shallowest}
    assert len(defaults) == 1, f"`cxrlens {command}` --{option} matches {shallowest}: name one in ALIASES"
    return shallowest[0]


def cli_value(command: str, option: str, value: Any, field_default: Any) -> Any:
    """The option's default as the command passes it to the config."""
    if (command, option) in TRANSFORMS:
        return TRANSFORMS[command, option](value)
    if isinstance(field_default, tuple) and isinstance(value, str):  # comma-separated → tuple, typed like the field
        kind = type(field_default[0]) if field_default else str
        return tuple(kind(x.strip()) for x in value.split(",") if x.strip())
    return value


def typer_command(path: str) -> Any:
    cmd: Any = get_command(app)
    for part in path.split():
        assert hasattr(cmd, "commands"), f"`cxrlens {path}`: {part!r} is not under a group"
        cmd = cmd.commands[part]
    return cmd


COMMANDS = sorted({(s.command, s.config) for s in STAGES if s.command})


def checked_options(command: str, config: str) -> list[tuple[str, str, Any, Any]]:
    """``(option, field path, option default, field default)`` of every option of ``command`` that sets a field
    with a default (options the config requires have nothing to compare with)."""
    cls = next(s for s in STAGES if s.config == config).config_class()
    fields = dict(config_fields(cls))
    out = []
    for p in typer_command(command).params:
        if p.param_type_name != "option" or p.required or p.name is None:  # typer vendors its own click
            continue
        path = field_for(command, p.name, fields)
        if path is None:
            continue
        assert path in fields, f"ALIASES: {cls.__name__} has no field {path}"
        if fields[path] is NO_DEFAULT:
            continue
        out.append((p.name, path, p.default, fields[path]))
    return out


@pytest.mark.parametrize(("command", "config"), COMMANDS, ids=[c for c, _ in COMMANDS])
def test_option_defaults_are_the_config_defaults(command: str, config: str) -> None:
    bad = []
    for option, path, value, field_default in checked_options(command, config):
        if (command, option) in INTENDED_DIFFERENCES:
            continue
        got = cli_value(command, option, value, field_default)
        if got != field_default:
            bad.append(f"--{option}: {value!r} vs {config.split(':')[1]}.{path} = {field_default!r}")
    assert not bad, f"`cxrlens {command}` defaults differ from its config: " + "; ".join(bad)


def test_every_table_entry_names_a_real_option() -> None:
    """ALIASES, INTENDED_DIFFERENCES and TRANSFORMS name options that exist (and, for the differences, still
    differ), so the tables cannot silently go stale."""
    configs = dict(COMMANDS)
    checked = {(c, o): (v, d) for c, cfg in COMMANDS for o, _, v, d in checked_options(c, cfg)}
    for command, option in {*ALIASES, *INTENDED_DIFFERENCES, *TRANSFORMS}:
        assert command in configs, f"no stage command `cxrlens {command}`"
        assert (command, option) in checked, f"`cxrlens {command}` has no option {option} that sets a config field"
    for key, reason in INTENDED_DIFFERENCES.items():
        value, field_default = checked[key]
        assert cli_value(*key, value, field_default) != field_default, f"{key} no longer differs ({reason})"


def test_the_walk_covers_the_stage_commands() -> None:
    """Every stage command is found, and most of the options that feed a config are compared (a broken walk would
    compare nothing and pass)."""
    n = sum(len(checked_options(c, cfg)) for c, cfg in COMMANDS)
    assert len(COMMANDS) >= 25
    assert n >= 120, n


def test_config_default_errors() -> None:
    assert config_default(SAERunConfig, "train") == TrainConfig()  # default_factory is called
    with pytest.raises(ValueError, match="no field"):
        config_default(TrainConfig, "nope")
    with pytest.raises(ValueError, match="no default"):
        config_default(LTTrainConfig, "model")


def test_config_csv_default() -> None:
    from cxrlens.align.probes import ProbeConfig
    from cxrlens.evaluate.run import EvaluateConfig

    assert config_csv_default(EvaluateConfig, "baselines") == "constant,random,nearest"
    assert config_csv_default(ProbeConfig, "findings") == ""
    fractions = config_default(ProbeConfig, "fractions")
    assert cli_value("align probe", "fractions", config_csv_default(ProbeConfig, "fractions"), fractions) == fractions
