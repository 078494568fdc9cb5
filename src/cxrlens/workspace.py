"""The workspace: where every artefact lives, how it is written, and when a stage can be skipped.

Layout (DESIGN.md)::

    <root>/datasets/<name>/     studies.parquet, images/, masks/, factors.parquet, manifest.json
    <root>/backbones/<name>/    model.safetensors, config.json
    <root>/activations/<run>/   shard-00000.safetensors …, index.parquet, manifest.json
    <root>/saes/<run>/          model.safetensors, config.json, metrics.json, checkpoints/
    <root>/interpret/<run>/     features.parquet, descriptions.parquet, heatmaps/, figures/
    <root>/reports/<run>/       reports.jsonl, metrics.json, report.html
    <root>/analysis/<run>/      tables + figures

The root is ``--workspace``, else ``$CXRLENS_WORKSPACE``, else ``./cxrlens-workspace``.

Guarantees:

* **Atomic files** (:mod:`cxrlens.files`): :func:`~cxrlens.files.atomic_write_bytes` writes into an unnamed
  ``O_TMPFILE`` inode (named temp file where the file system lacks it) in the target's directory, fsyncs, and
  links/renames it into place: a reader sees the old file or the new one, never a part, even if killed (SIGKILL).
* **Atomic artefact directories.** :func:`run_stage` builds a stage's output in a hidden sibling directory, writes
  ``manifest.json`` last and swaps the directory into place; a killed build leaves no half artefact.
* **Skip when current.** A stage whose output has a manifest with the same config hash is skipped (``force`` redoes).
* **One writer.** :func:`artefact_lock` takes an exclusive ``flock`` on ``.<name>.lock`` beside the artefact; a
  second process gets :class:`~cxrlens.errors.StageLockedError` naming the holder's pid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq

from cxrlens import __version__
from cxrlens.config import config_hash, config_to_dict
from cxrlens.errors import BadInputError, StageLockedError
from cxrlens.files import atomic_write_json, dir_size, fsync_dir

__all__ = [
    "ARTEFACT_KINDS",
    "Artefact",
    "ArtefactInfo",
    "Manifest",
    "StageResult",
    "Workspace",
    "artefact_identity",
    "artefact_lock",
    "default_root",
    "is_current",
    "open_artefact",
    "partial_dir",
    "read_manifest",
    "run_stage",
    "run_stage_on_rank0",
    "stage_hash",
    "swap_into_place",
]

ARTEFACT_KINDS = (
    "datasets",
    "backbones",
    "activations",
    "saes",
    "interpret",
    "reports",
    "align",
    "lt-vit",
    "qa",
    "analysis",
)
MANIFEST = "manifest.json"
ENV_VAR = "CXRLENS_WORKSPACE"
DEFAULT_DIRNAME = "cxrlens-workspace"


def default_root() -> Path:
    """``$CXRLENS_WORKSPACE`` if set, else ``./cxrlens-workspace`` (relative to the current directory)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.cwd() / DEFAULT_DIRNAME


@contextlib.contextmanager
def artefact_lock(artefact_dir: str | Path) -> Iterator[None]:
    """Exclusive, non-blocking lock on an artefact; raises :class:`StageLockedError` if another process holds it.

    The lock is ``flock`` on ``<parent>/.<name>.lock`` and is released by the kernel if the holder dies.
    """
    artefact_dir = Path(artefact_dir)
    artefact_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = artefact_dir.parent / f".{artefact_dir.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StageLockedError(
                f"{artefact_dir}: another process (pid {holder}) is writing this artefact; wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------------ manifests
@dataclasses.dataclass(frozen=True)
class Manifest:
    """What an artefact is and where it came from (``manifest.json``).

    Attributes:
        stage: the stage that wrote it (``"data.import.iu-xray"``, ``"sae.train"`` …).
        config: the stage config as a plain dict; config_hash: its :func:`cxrlens.config.config_hash`.
        package_version: cxrlens version that wrote it; created: ISO-8601 UTC time.
        inputs: input path → SHA-256 (files) or config hash (artefacts).
        rows: table/row counts (``{"studies": 3955, "images": 7470}``); skipped: bad items skipped, by reason.
        extra: stage-specific metadata.
    """

    stage: str
    config: dict[str, Any]
    config_hash: str
    package_version: str
    created: str
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_manifest(artefact_dir: str | Path) -> Manifest | None:
    """The manifest of an artefact, or ``None`` if it has none (absent or unreadable = not complete)."""
    path = Path(artefact_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(Manifest)}
        return Manifest(**{k: v for k, v in data.items() if k in fields})
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def is_current(artefact_dir: str | Path, cfg_hash: str) -> bool:
    """True when the artefact exists with a manifest whose config hash equals ``cfg_hash``."""
    m = read_manifest(artefact_dir)
    return m is not None and m.config_hash == cfg_hash


def swap_into_place(built: Path, final: Path) -> None:
    """Replace the artefact directory ``final`` by the complete directory ``built`` (a sibling of it).

    The old artefact (if any) is renamed aside first and removed after the swap, so ``final`` is at every moment
    either the complete old artefact or the complete new one (for a few microseconds, absent).
    """
    if final.exists():
        old = final.parent / f".{final.name}.{os.getpid()}.old"
        os.replace(final, old)
        os.replace(built, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(built, final)
    fsync_dir(final.parent)


@dataclasses.dataclass(frozen=True)
class StageResult:
    """What :func:`run_stage` did: the artefact's manifest and whether an existing one was reused."""

    path: Path
    manifest: Manifest
    reused: bool

    def open(self) -> Artefact:
        """The artefact written (or reused), for typed reading of its files."""
        return Artefact(self.path, self.manifest)


def _remove_stale_siblings(parent: Path, name: str) -> None:
    """Remove hidden build dirs / temp files of processes that no longer exist."""
    for p in parent.glob(f".{name}.*"):
        parts = p.name.rsplit(".", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2] in ("building", "old", "tmp"):
            pid = int(parts[1])
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stage_hash(config: Any, upstream: Mapping[str, str] | None = None) -> str:
    """The hash that decides whether a stage is current: ``config_hash(config)``, combined with the identities of
    the upstream artefacts it reads (``{"saes/x": <its manifest's config hash>, …}``) when there are any — so a
    stage reading an artefact that was rebuilt differently under the same name is redone, not reused."""

    base = config_hash(config)
    if not upstream:
        return base
    text = json.dumps({"config": base, "upstream": dict(sorted(upstream.items()))}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def artefact_identity(artefact_dir: str | Path) -> str:
    """What identifies the content of a complete artefact for :func:`stage_hash`: its job hash when the stage
    records one (activation stores: config + backbone weights + dataset), else its config hash (which already
    folds in its own upstream), else its creation time (artefacts written without a config)."""
    m = read_manifest(artefact_dir)
    if m is None:
        return ""
    return str(m.extra.get("job_hash") or m.config_hash or m.created)


def run_stage(
    artefact_dir: str | Path,
    *,
    stage: str,
    config: Any,
    build: Callable[[Path], dict[str, Any] | None],
    force: bool = False,
    upstream: Mapping[str, str] | None = None,
    resumable: bool = False,
) -> StageResult:
    """Run ``build(tmp_dir)`` unless ``artefact_dir`` is current for ``config`` (and ``upstream``, see
    :func:`stage_hash`); swap the result into place.

    ``build`` writes every file of the artefact into ``tmp_dir`` and may return a dict with any of ``inputs``,
    ``rows``, ``skipped``, ``extra`` for the manifest. The manifest is written last; then the directory replaces
    the old artefact (if any). An exception (or SIGKILL) leaves the previous artefact untouched.

    ``resumable=True`` is for long jobs (extraction shards, training checkpoints): ``tmp_dir`` is then the fixed
    ``.<name>.partial/`` beside the artefact, tagged with the stage hash, and it is **kept** when ``build`` fails or
    the process dies, so the next run of the *same* job finds the shards/checkpoints it left there
    (:func:`partial_dir`). A different job (or ``force``) discards it first. Whatever ``build`` leaves in it becomes
    the artefact, so it removes its scratch files (old checkpoints …) before returning.
    """

    artefact_dir = Path(artefact_dir)
    cfg_hash = stage_hash(config, upstream)
    existing = read_manifest(artefact_dir)
    if not force and existing is not None and existing.config_hash == cfg_hash:
        return StageResult(artefact_dir, existing, reused=True)
    with artefact_lock(artefact_dir):
        existing = read_manifest(artefact_dir)  # another process may have finished it while we waited
        if not force and existing is not None and existing.config_hash == cfg_hash:
            return StageResult(artefact_dir, existing, reused=True)
        _remove_stale_siblings(artefact_dir.parent, artefact_dir.name)
        if resumable:
            tmp = partial_dir(artefact_dir)
            tag = tmp / PARTIAL_TAG
            if tmp.exists() and (force or not tag.is_file() or tag.read_text() != cfg_hash):
                shutil.rmtree(tmp)  # another job's progress: it cannot be resumed
            tmp.mkdir(parents=True, exist_ok=True)
            tag.write_text(cfg_hash)
        else:
            tmp = artefact_dir.parent / f".{artefact_dir.name}.{os.getpid()}.building"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        try:
            info = build(tmp) or {}
            (tmp / PARTIAL_TAG).unlink(missing_ok=True)
            manifest = Manifest(
                stage=stage,
                config=config_to_dict(config),
                config_hash=cfg_hash,
                package_version=__version__,
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                inputs={**dict(upstream or {}), **dict(info.get("inputs", {}))},
                rows={k: int(v) for k, v in info.get("rows", {}).items()},
                skipped={k: int(v) for k, v in info.get("skipped", {}).items()},
                extra=dict(info.get("extra", {})),
            )
            atomic_write_json(tmp / MANIFEST, manifest.to_json())
            fsync_dir(tmp)
            swap_into_place(tmp, artefact_dir)
        except BaseException:
            if resumable:
                (tmp / MANIFEST).unlink(missing_ok=True)
                if tmp.exists():
                    (tmp / PARTIAL_TAG).write_text(cfg_hash)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
    return StageResult(artefact_dir, manifest, reused=False)


class RankGroup(Protocol):
    """What :func:`run_stage_on_rank0` needs of a data-parallel group (``cxrlens.scale.ddp.TorchDataParallel``)."""

    rank: int

    def broadcast_object(self, obj: Any) -> Any: ...

    def barrier(self) -> None: ...


def run_stage_on_rank0(
    artefact_dir: str | Path,
    *,
    group: RankGroup | None,
    build: Callable[[Path, Callable[[], None]], dict[str, Any] | None],
    follow: Callable[[Path], object],
    **stage: Any,
) -> StageResult:
    """:func:`run_stage` for a data-parallel job in which every rank calls this with the same arguments.

    Rank 0 runs the stage (lock, build directory, manifest, swap). Inside ``build(tmp, share)`` it calls
    ``share()`` once the other ranks may start (e.g. after it has filled a cache they read); every other rank then
    runs ``follow(tmp)`` (its share of the training, checkpoints in rank 0's build directory) and waits at a barrier
    until rank 0 has written the artefact. A current artefact is reused on every rank. ``group=None`` is plain
    :func:`run_stage` (``share`` does nothing). ``stage``: the other :func:`run_stage` arguments."""

    artefact_dir = Path(artefact_dir)
    if group is None:
        return run_stage(artefact_dir, build=lambda tmp: build(tmp, lambda: None), **stage)
    if group.rank != 0:
        shared = group.broadcast_object(None)  # rank 0's build directory, or None when the artefact is current
        if shared is not None:
            follow(Path(shared))
        group.barrier()  # rank 0 has swapped the artefact into place
        manifest = read_manifest(artefact_dir)
        if manifest is None:
            raise BadInputError(artefact_dir, "rank 0 finished without writing the artefact")
        return StageResult(artefact_dir, manifest, reused=shared is None)
    sent = []

    def share(tmp: Path) -> None:
        if not sent:
            group.broadcast_object(str(tmp))
            sent.append(True)

    result = run_stage(artefact_dir, build=lambda tmp: build(tmp, lambda: share(tmp)), **stage)
    if not sent:
        group.broadcast_object(None)
    group.barrier()
    return result


PARTIAL_TAG = ".stage_hash"


def partial_dir(artefact_dir: str | Path) -> Path:
    """Where a resumable stage (``run_stage(..., resumable=True)``) keeps the progress of an unfinished build:
    ``<parent>/.<name>.partial/``."""
    artefact_dir = Path(artefact_dir)
    return artefact_dir.parent / f".{artefact_dir.name}.partial"


# ------------------------------------------------------------------------------------------------------ reading
@dataclasses.dataclass(frozen=True)
class Artefact:
    """A complete artefact opened for reading: its manifest and typed access to its files. Stage readers
    (``read_zero_shot``, ``read_evaluation`` … listed in :mod:`cxrlens.stages`) are built on it, so no caller
    joins a path and parses a file by hand."""

    path: Path
    manifest: Manifest

    def file(self, name: str) -> Path:
        """``<artefact>/<name>``; a :class:`BadInputError` naming the file when it is absent."""
        path = self.path / name
        if not path.exists():
            raise BadInputError(path, f"missing from this {self.manifest.stage} artefact")
        return path

    def table(self, name: str) -> Any:
        """``<name>.parquet`` as a pandas DataFrame."""
        return pq.read_table(self.file(f"{name}.parquet")).to_pandas()

    def json(self, name: str) -> Any:
        """``<name>.json`` parsed."""
        return json.loads(self.file(f"{name}.json").read_text(encoding="utf-8"))

    def figures(self) -> list[Path]:
        """The PNG figures in the artefact, sorted by name."""
        return sorted(self.path.glob("*.png"))

    def tables(self) -> list[str]:
        """Names of its parquet tables (without the suffix)."""
        return sorted(p.stem for p in self.path.glob("*.parquet"))


def open_artefact(path: str | Path, stage: str | None = None, *, hint: str = "") -> Artefact:
    """Open the complete artefact at ``path`` (one with a manifest), optionally checking that ``stage`` (or a stage
    starting with ``stage + "."``) wrote it. ``hint`` says what to run when it is missing."""

    path = Path(path)
    manifest = read_manifest(path)
    if manifest is None:
        raise BadInputError(path, "no complete artefact here (no manifest)" + (f"; {hint}" if hint else ""))
    if stage is not None and not (manifest.stage == stage or manifest.stage.startswith(f"{stage}.")):
        raise BadInputError(path, f"written by stage {manifest.stage!r}, expected {stage!r}")
    return Artefact(path, manifest)


# ------------------------------------------------------------------------------------------------------ workspace
@dataclasses.dataclass(frozen=True)
class ArtefactInfo:
    """One artefact found in the workspace (for ``cxrlens workspace info``)."""

    kind: str
    name: str
    path: Path
    size_bytes: int
    manifest: Manifest | None

    @property
    def complete(self) -> bool:
        return self.manifest is not None


@dataclasses.dataclass(frozen=True)
class Workspace:
    """Paths of every artefact under one root. Creating a ``Workspace`` touches no file."""

    root: Path = dataclasses.field(default_factory=default_root)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    def path(self, kind: str, name: str) -> Path:
        """``<root>/<kind>/<name>``; ``kind`` is one of :data:`ARTEFACT_KINDS`, ``name`` a plain name."""
        if kind not in ARTEFACT_KINDS:
            raise ValueError(f"unknown artefact kind {kind!r}; expected one of {', '.join(ARTEFACT_KINDS)}")
        if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"invalid artefact name {name!r}: use letters, digits, '-', '_' (no path separators)")
        return self.root / kind / name

    def dataset(self, name: str) -> Path:
        return self.path("datasets", name)

    def backbone(self, name: str) -> Path:
        return self.path("backbones", name)

    def activations(self, run: str) -> Path:
        return self.path("activations", run)

    def sae(self, run: str) -> Path:
        return self.path("saes", run)

    def interpret(self, run: str) -> Path:
        return self.path("interpret", run)

    def reports(self, run: str) -> Path:
        return self.path("reports", run)

    def align(self, run: str) -> Path:
        """An alignment adapter run and its zero-shot / index / probe artefacts (``align/<run>[-…]``)."""
        return self.path("align", run)

    def lt_vit(self, run: str) -> Path:
        """A label-token ViT run and its predict / explain artefacts (``lt-vit/<run>[-…]``)."""
        return self.path("lt-vit", run)

    def qa(self, run: str) -> Path:
        """A question-answering model (calibrated heads on a store's features) and its benchmark (``qa/<run>[-…]``)."""
        return self.path("qa", run)

    def analysis(self, run: str) -> Path:
        return self.path("analysis", run)

    def artefacts(self) -> list[ArtefactInfo]:
        """Every artefact directory under the root (hidden build dirs excluded), sorted by kind then name."""
        found = []
        for kind in ARTEFACT_KINDS:
            kdir = self.root / kind
            if not kdir.is_dir():
                continue
            for d in sorted(kdir.iterdir()):
                if d.is_dir() and not d.name.startswith("."):
                    found.append(ArtefactInfo(kind, d.name, d, dir_size(d), read_manifest(d)))
        return found
