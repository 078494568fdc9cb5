"""Workspace guarantees: atomic files under SIGKILL, atomic artefact dirs, skip-when-current, one writer."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from cxrlens.errors import StageLockedError
from cxrlens.files import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_parquet
from cxrlens.workspace import (
    ARTEFACT_KINDS,
    Workspace,
    artefact_lock,
    is_current,
    partial_dir,
    read_manifest,
    run_stage,
)


@dataclasses.dataclass(frozen=True)
class _Cfg:
    seed: int = 0
    name: str = "a"


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(proc: subprocess.Popen, word: str) -> None:
    line = proc.stdout.readline()
    assert word in line, f"child did not reach {word!r}: {line!r} {proc.stderr.read() if proc.poll() else ''}"


SLOW_WRITER = """
import sys, time
from cxrlens.files import atomic_write_bytes
def chunks():
    for _ in range(64):
        yield b"x" * 65536
    print("half-written", flush=True)
    time.sleep(60)
    yield b"end"
atomic_write_bytes(sys.argv[1], chunks())
"""


@pytest.mark.parametrize("pre_existing", [False, True])
def test_atomic_write_survives_sigkill(tmp_path: Path, pre_existing: bool) -> None:
    target = tmp_path / "out" / "data.bin"
    if pre_existing:
        atomic_write_bytes(target, b"old complete content")
    proc = _spawn(SLOW_WRITER, str(target))
    _wait_for(proc, "half-written")  # 4 MiB are written into the (unnamed) temp inode now
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    if pre_existing:
        assert target.read_bytes() == b"old complete content"
    else:
        assert not target.exists()
    # no partial file of any name is left in the directory
    assert sorted(p.name for p in target.parent.iterdir()) == (["data.bin"] if pre_existing else [])


def test_atomic_writers_roundtrip(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [1, 2], "b": 1}
    df = pd.DataFrame({"x": [1, 2], "y": ["u", "v"]})
    atomic_write_parquet(tmp_path / "t.parquet", df)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), df)
    with atomic_path(tmp_path / "c.txt") as tmp:
        tmp.write_text("hello")
        assert not (tmp_path / "c.txt").exists()
    assert (tmp_path / "c.txt").read_text() == "hello"


def test_atomic_path_removes_temp_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "c.txt") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def _build_files(files: dict[str, str], rows: int = 3):
    def build(tmp: Path) -> dict:
        for name, text in files.items():
            (tmp / name).write_text(text)
        return {"rows": {"items": rows}, "inputs": {"x": "abc"}, "extra": {"note": "hi"}}

    return build


def test_run_stage_writes_manifest_and_skips_when_current(workspace: Workspace) -> None:
    out = workspace.dataset("toy")
    calls = []

    def build(tmp: Path) -> dict:
        calls.append(1)
        return _build_files({"f.txt": "v1"})(tmp)

    r1 = run_stage(out, stage="test.toy", config=_Cfg(), build=build)
    assert not r1.reused and (out / "f.txt").read_text() == "v1"
    m = read_manifest(out)
    assert m is not None and m.stage == "test.toy" and m.rows == {"items": 3} and m.config == {"seed": 0, "name": "a"}
    assert m.package_version and m.created and m.inputs == {"x": "abc"}
    r2 = run_stage(out, stage="test.toy", config=_Cfg(), build=build)
    assert r2.reused and len(calls) == 1
    r3 = run_stage(out, stage="test.toy", config=_Cfg(seed=1), build=build)  # config changed → rebuilt
    assert not r3.reused and len(calls) == 2 and is_current(out, r3.manifest.config_hash)
    run_stage(out, stage="test.toy", config=_Cfg(seed=1), build=build, force=True)
    assert len(calls) == 3


def test_run_stage_failure_keeps_previous_artefact(workspace: Workspace) -> None:
    out = workspace.dataset("toy")
    run_stage(out, stage="s", config=_Cfg(), build=_build_files({"f.txt": "good"}))

    def failing(tmp: Path) -> dict:
        (tmp / "f.txt").write_text("half")
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        run_stage(out, stage="s", config=_Cfg(seed=5), build=failing)
    assert (out / "f.txt").read_text() == "good"
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".") and "lock" not in p.name] == []


def test_resumable_stage_keeps_progress_of_a_failed_build_for_the_same_job_only(workspace: Workspace) -> None:
    out = workspace.activations("toy")
    seen: list[list[str]] = []

    def build(fail: bool):
        def inner(tmp: Path) -> dict:
            seen.append(sorted(p.name for p in tmp.iterdir() if p.name != ".stage_hash"))
            (tmp / f"part-{len(seen)}").write_text("done")
            if fail:
                raise RuntimeError("killed")
            return {}

        return inner

    with pytest.raises(RuntimeError):
        run_stage(out, stage="s", config=_Cfg(), build=build(True), resumable=True)
    assert not out.exists() and (partial_dir(out) / "part-1").is_file()
    with pytest.raises(RuntimeError):  # the same job sees what the failed run left
        run_stage(out, stage="s", config=_Cfg(), build=build(True), resumable=True)
    assert seen[-1] == ["part-1"]
    with pytest.raises(RuntimeError):  # another job (config or upstream changed) starts from nothing
        run_stage(out, stage="s", config=_Cfg(), build=build(True), resumable=True, upstream={"in": "new"})
    assert seen[-1] == []
    done = run_stage(out, stage="s", config=_Cfg(), build=build(False), resumable=True, upstream={"in": "new"})
    assert seen[-1] == ["part-3"] and not done.reused and not partial_dir(out).exists()
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "part-3", "part-4"]
    again = run_stage(out, stage="s", config=_Cfg(), build=build(False), resumable=True, upstream={"in": "new"})
    assert again.reused and len(seen) == 4


KILLED_STAGE = """
import sys, time
from dataclasses import dataclass
from pathlib import Path
from cxrlens.workspace import run_stage
@dataclass(frozen=True)
class C:
    seed: int = 7
def build(tmp):
    (tmp / "f.txt").write_text("half")
    print("building", flush=True)
    time.sleep(60)
run_stage(Path(sys.argv[1]), stage="s", config=C(), build=build)
"""


def test_killed_stage_leaves_no_half_artefact_and_is_cleaned(workspace: Workspace) -> None:
    out = workspace.dataset("toy")
    proc = _spawn(KILLED_STAGE, str(out))
    _wait_for(proc, "building")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not out.exists()
    assert any(".building" in p.name for p in out.parent.iterdir())  # the hidden build dir of the dead process
    run_stage(out, stage="s", config=_Cfg(), build=_build_files({"f.txt": "ok"}))
    assert (out / "f.txt").read_text() == "ok"
    assert not any(".building" in p.name for p in out.parent.iterdir())  # stale build dir removed


LOCK_HOLDER = """
import sys, time
from cxrlens.workspace import artefact_lock
with artefact_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_excludes_second_writer_and_dies_with_holder(workspace: Workspace) -> None:
    out = workspace.sae("run1")
    proc = _spawn(LOCK_HOLDER, str(out))
    try:
        _wait_for(proc, "locked")
        with pytest.raises(StageLockedError, match=rf"pid {proc.pid}"):
            run_stage(out, stage="s", config=_Cfg(), build=_build_files({"f.txt": "x"}))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    with artefact_lock(out):  # the kernel released the dead holder's lock
        pass


def test_workspace_paths_and_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXRLENS_WORKSPACE", str(tmp_path / "envws"))
    ws = Workspace()
    assert ws.root == (tmp_path / "envws").resolve()
    assert ws.activations("r") == ws.root / "activations" / "r"
    for kind in ARTEFACT_KINDS:
        assert ws.path(kind, "n").parent.name == kind
    for bad in ("", "..", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            ws.dataset(bad)
    with pytest.raises(ValueError, match="unknown artefact kind"):
        ws.path("models", "x")
    run_stage(ws.sae("r1"), stage="s", config=_Cfg(), build=_build_files({"f.txt": "12345"}))
    (ws.root / "reports" / "broken").mkdir(parents=True)
    listing = {(a.kind, a.name): a for a in ws.artefacts()}
    assert listing[("saes", "r1")].complete and listing[("saes", "r1")].size_bytes > 5
    assert not listing[("reports", "broken")].complete


def test_pid_in_temp_names_is_not_ours_only(tmp_path: Path) -> None:
    """A stale temp file of a dead pid next to an artefact is removed by the next run_stage."""
    out = tmp_path / "datasets" / "toy"
    out.parent.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out.parent / f".toy.{int(dead.stdout)}.tmp"
    stale.write_text("junk")
    assert os.path.exists(stale)
    run_stage(out, stage="s", config=_Cfg(), build=_build_files({"f.txt": "x"}))
    assert not stale.exists()
