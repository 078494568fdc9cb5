"""``make install`` picks the PyTorch build: pip's default, or a CPU-only (or any) wheel index via ``TORCH=…``,
pinned for the project install, and refuses to swap the build of an existing venv in place. Checked with
``make -n`` (print, don't run) on a copy of the Makefile, so nothing is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def _make(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    for name in ("Makefile", "pyproject.toml"):
        if not (tmp_path / name).exists():
            shutil.copy(ROOT / name, tmp_path / name)
    return subprocess.run(
        ["make", *args, f"VENV={tmp_path / 'venv'}"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_default_install_is_pips_default_torch(tmp_path):
    out = _make(tmp_path, "-n", "install")
    assert out.returncode == 0, out.stderr
    assert "pip install --quiet -e '.[dev]'" in out.stdout
    assert "--index-url" not in out.stdout and "--constraint" not in out.stdout


def test_torch_cpu_installs_from_the_cpu_index_first_and_pins_it(tmp_path):
    out = _make(tmp_path, "-n", "install", "TORCH=cpu")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    first = next(i for i, x in enumerate(lines) if f"torch torchvision --index-url {CPU_INDEX}" in x)
    project = next(i for i, x in enumerate(lines) if "-e '.[dev]'" in x)
    assert first < project and "--constraint" in lines[project]  # the project cannot pull the CUDA torch back in
    assert f"echo '{CPU_INDEX}'" in out.stdout  # the stamp records the build


def test_a_different_build_on_an_existing_venv_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / ".cxrlens-installed").write_text("pypi\n")
    out = _make(tmp_path, "-n", "install", "TORCH=cpu")
    assert out.returncode != 0 and "make clean" in out.stderr
    assert _make(tmp_path, "-n", "install").returncode == 0  # unset TORCH keeps the venv's build


def test_unknown_torch_value_is_one_clear_error(tmp_path):
    out = _make(tmp_path, "-n", "install", "TORCH=gpu")
    assert out.returncode != 0 and "TORCH must be unset, 'cpu' or a wheel index URL" in out.stderr
