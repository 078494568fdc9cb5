"""Config hash stability and sensitivity; TOML round-trip; clear errors on bad config files."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxrlens.config import config_from_dict, config_hash, config_to_dict, load_toml, save_toml
from cxrlens.data.iu_xray import IUXrayImportConfig
from cxrlens.errors import BadInputError


@dataclasses.dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.999)


@dataclasses.dataclass(frozen=True)
class Train:
    seed: int = 0
    arch: str = "topk"
    layers: tuple[int, ...] = (-1,)
    optim: Optim = dataclasses.field(default_factory=Optim)
    note: str | None = None
    flag: bool = False


def test_hash_is_stable_across_processes() -> None:
    code = (
        "from cxrlens.data.iu_xray import IUXrayImportConfig; from cxrlens.config import config_hash; "
        "print(config_hash(IUXrayImportConfig(seed=3)))"
    )
    out = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        for _ in range(2)
    ]
    assert out[0] == out[1] == config_hash(IUXrayImportConfig(seed=3))
    assert len(out[0]) == 64


def _variants(cfg):
    """One changed copy per (nested) field."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            for inner in _variants(v):
                yield f.name, dataclasses.replace(cfg, **{f.name: inner[1]})
        elif isinstance(v, bool):
            yield f.name, dataclasses.replace(cfg, **{f.name: not v})
        elif isinstance(v, float):
            yield f.name, dataclasses.replace(cfg, **{f.name: v / 2})
        elif isinstance(v, int):
            yield f.name, dataclasses.replace(cfg, **{f.name: v + 1})
        elif isinstance(v, tuple):
            yield f.name, dataclasses.replace(cfg, **{f.name: (*v, v[0])})
        else:
            yield f.name, dataclasses.replace(cfg, **{f.name: (v or "") + "x"})


@pytest.mark.parametrize("cfg", [Train(), IUXrayImportConfig()])
def test_hash_changes_with_every_field(cfg) -> None:
    base = config_hash(cfg)
    seen = {base}
    for name, changed in _variants(cfg):
        h = config_hash(changed)
        assert h != base, f"hash did not change with field {name}"
        seen.add(h)
    assert config_hash(dataclasses.replace(cfg)) == base


def test_hash_depends_on_config_type() -> None:
    @dataclasses.dataclass(frozen=True)
    class Other:
        seed: int = 0
        arch: str = "topk"

    @dataclasses.dataclass(frozen=True)
    class Same:
        seed: int = 0
        arch: str = "topk"

    assert config_hash(Other()) != config_hash(Same())


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(-(2**31), 2**31),
    arch=st.text(max_size=20),
    lr=st.floats(1e-8, 10, allow_nan=False),
    layers=st.lists(st.integers(-12, 12), min_size=1, max_size=4),
    note=st.one_of(st.none(), st.text(max_size=10)),
)
def test_toml_roundtrip(tmp_path_factory, seed, arch, lr, layers, note) -> None:
    cfg = Train(seed=seed, arch=arch, layers=tuple(layers), optim=Optim(lr=lr), note=note)
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    save_toml(cfg, path)
    back = load_toml(Train, path)
    assert back == cfg
    assert config_hash(back) == config_hash(cfg)


def test_dict_roundtrip_and_unknown_field() -> None:
    cfg = Train(layers=(1, 2))
    assert config_from_dict(Train, config_to_dict(cfg)) == cfg
    assert config_from_dict(Train, {}) == Train()
    with pytest.raises(ValueError, match="unknown field"):
        config_from_dict(Train, {"sed": 1})


def test_bad_toml_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1\n")
    with pytest.raises(BadInputError) as err:
        load_toml(Train, bad)
    assert str(bad) in str(err.value) and "invalid TOML" in str(err.value) and "\n" not in str(err.value)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("speed = 1\n")
    with pytest.raises(BadInputError, match="unknown field"):
        load_toml(Train, unknown)
    with pytest.raises(BadInputError, match="not found"):
        load_toml(Train, tmp_path / "missing.toml")


def test_invalid_split_fractions_rejected() -> None:
    with pytest.raises(ValueError, match="split fractions"):
        IUXrayImportConfig(train_frac=0.95, val_frac=0.1)
