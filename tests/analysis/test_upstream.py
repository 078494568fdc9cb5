"""Analyses fold the identity of what they read into their skip hash: a rebuilt input redoes the analysis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxrlens.analysis.data import upstream_of
from cxrlens.workspace import Workspace, run_stage, stage_hash


@dataclass(frozen=True)
class _Cfg:
    seed: int = 0


def _make(path: Path, seed: int = 0) -> None:
    run_stage(path, stage="test", config=_Cfg(seed), build=lambda tmp: None)


def test_upstream_names_every_input_of_a_spec_and_changes_when_one_is_rebuilt(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    for p in (
        ws.dataset("d"),
        ws.analysis("vae1"),
        ws.sae("s"),
        ws.activations("a"),
        ws.lt_vit("lt"),
        ws.interpret("i"),
    ):
        _make(p)
    up = upstream_of(ws, dataset="d", sources=["vae:vae1", "sae:s:a:final/cls", "lt-vit:lt:cls"], interpret="i")
    assert set(up) == {"datasets/d", "analysis/vae1", "saes/s", "activations/a", "lt-vit/lt", "interpret/i"}
    assert all(up.values())  # complete artefacts have an identity
    before = stage_hash(_Cfg(), up)
    _make(ws.sae("s"), seed=1)  # the SAE rebuilt under the same name
    after = upstream_of(ws, dataset="d", sources=["vae:vae1", "sae:s:a:final/cls", "lt-vit:lt:cls"], interpret="i")
    assert after["saes/s"] != up["saes/s"] and stage_hash(_Cfg(), after) != before
    assert upstream_of(ws, dataset="d", sources=["activations:missing:final/cls"])["activations/missing"] == ""
