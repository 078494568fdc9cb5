"""The activation store: a backbone's activations over a dataset, in size-bounded safetensors shards.

Layout of ``<workspace>/activations/<run>/``::

    shard-00000.safetensors …   one 2-D tensor per stream, rows = images (cls, mean) or image × token (patch)
    index.parquet               one row per image: row, shard, shard_row, study_id, image_id, patient_id, split …
    manifest.json               config, inputs (backbone fingerprint, dataset hash), streams, shards, timings

A *stream* is ``"<layer>/<token>"`` (``"final/cls"``, ``"block.3/patch"``). Stream rows are image rows for
``cls``/``mean``; for ``patch`` row ``r`` is image ``r // N`` at token position ``r % N`` (``N = h * w`` of the
patch grid, row-major: ``y, x = divmod(r % N, w)``); :meth:`ActivationStore.token_index` spells that out.

**Resumable writing.** The extraction is a resumable :func:`cxrlens.workspace.run_stage`: it builds in
``activations/.<run>.partial/``, a directory that survives a crash. Shard ``k`` holds images
``[k * S, (k + 1) * S)`` of the selected table (``S`` fixed by the config), is written atomically, and counts as
done once its ``shard-0000k.json`` sidecar (written after it) exists. A re-run of the same job (config + backbone
weights + dataset + layout, the stage hash) skips done shards, computes the rest with batches that start at shard
boundaries (so the numbers do not depend on where the previous run died), then writes ``index.parquet`` and
``manifest.json`` and swaps the directory into place. The result is byte-identical to an uninterrupted run (except
the manifest's ``created``/timing fields). A different job discards the partial dir.

**Engines.** :func:`run_extract` cuts the batches and writes every file (shards, sidecars, index, manifest); an
*engine* only computes the batches: :func:`local_engine` (DataLoader + the driver's backbone) or the Ray Data
engine :func:`cxrlens.scale.ray_extract.ray_engine`. Both decode with :func:`decode_image` and encode with
:func:`encode_batch`, so the store does not depend on the engine, and either resumes the other's shards.

**Reading.** :class:`ActivationStore` gives random access by row (``pread`` of the rows' bytes, no mmap) and
:meth:`ActivationStore.iter_batches`, a seeded streaming shuffle (shuffle buffer of a fixed number of rows) whose
memory use is bounded by the buffer plus one read chunk, for training on stores larger than RAM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cxrlens import __version__
from cxrlens.backbones.base import Backbone
from cxrlens.backbones.registry import load_backbone, spec_slug
from cxrlens.console import console, progress, warn_line
from cxrlens.data.images import load_image
from cxrlens.data.store import image_file, read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes, atomic_write_json, atomic_write_parquet, file_sha256
from cxrlens.parallel import WorkerPoolError, pool_context, stall_timeout_s
from cxrlens.workspace import MANIFEST, Manifest, StageResult, Workspace, read_manifest, run_stage

__all__ = [
    "STORE_DTYPES",
    "ActivationStore",
    "EncodedBatch",
    "ExtractConfig",
    "ExtractEngine",
    "ExtractJob",
    "StreamInfo",
    "decode_image",
    "default_num_workers",
    "default_run_name",
    "encode_batch",
    "local_engine",
    "run_extract",
    "write_array_store",
    "write_shard",
]

FORMAT_VERSION = 1
STORE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_ST_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}
_TORCH_ST = {v: k for k, v in _ST_DTYPES.items()}
INDEX = "index.parquet"
_INDEX_COLUMNS = ("study_id", "image_id", "patient_id", "split", "view", "image_path")


# ---------------------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """What to extract (everything that changes the stored numbers is here and in the config hash).

    Attributes:
        dataset: dataset name in the workspace (``datasets/<dataset>/studies.parquet``).
        backbone: backbone spec (``hf:…``, ``xrv:…``, ``cxrlens:…``).
        layers: layer names or indices (as strings, ``"-1"`` = the model's output).
        tokens: token kinds to store: ``cls``, ``mean``, ``patch``.
        dtype: storage dtype: ``float16``, ``bfloat16`` or ``float32``.
        split: ``train``, ``val``, ``test`` or ``all``.
        batch_size: images per forward pass (batches never straddle shards).
        shard_mb: maximum shard size in MiB.
        shard_images: maximum images per shard (bounds the work a crash can lose; a resumed run redoes at most
            one shard).
    """

    dataset: str
    backbone: str
    layers: tuple[str, ...] = ("-1",)
    tokens: tuple[str, ...] = ("cls", "mean")
    dtype: str = "float16"
    split: str = "all"
    batch_size: int = 32
    shard_mb: float = 256.0
    shard_images: int = 2048

    def __post_init__(self) -> None:
        if self.dtype not in STORE_DTYPES:
            raise BadInputError(None, f"dtype must be one of {', '.join(STORE_DTYPES)}, got {self.dtype!r}")
        if self.split not in ("train", "val", "test", "all"):
            raise BadInputError(None, f"split must be train, val, test or all, got {self.split!r}")
        if self.batch_size < 1 or self.shard_mb <= 0 or self.shard_images < 1:
            raise BadInputError(None, "batch_size and shard_images must be ≥ 1 and shard_mb > 0")
        bad = [t for t in self.tokens if t not in ("cls", "mean", "patch")]
        if bad or not self.tokens:
            raise BadInputError(None, f"tokens must be a non-empty subset of cls, mean, patch (got {self.tokens})")


def default_run_name(cfg: ExtractConfig) -> str:
    """``<dataset>-<backbone slug>`` (+ ``-<split>`` unless all), e.g. ``iu-phantom-cxrlens-default``."""

    name = f"{cfg.dataset}-{spec_slug(cfg.backbone)}"
    return name if cfg.split == "all" else f"{name}-{cfg.split}"


# ----------------------------------------------------------------------------------------------------- image data
class _ImageDataset(torch.utils.data.Dataset):
    """Item ``i`` → ``(i, preprocessed (C, h, w) tensor or None, error text or None)``; runs in DataLoader workers."""

    def __init__(self, paths: Sequence[str], preprocessor: Any) -> None:
        self.paths = list(paths)
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        return (i, *decode_image(self.paths[i], self.preprocessor))


def decode_image(path: str, preprocessor: Any) -> tuple[torch.Tensor | None, str | None]:
    """One image file → ``(preprocessed (C, h, w) tensor, None)``, or ``(None, one-line error)`` for a bad image
    (skipped and counted, never fatal). Every engine decodes through this function."""
    try:
        gray_HW = torch.from_numpy(load_image(path))
        return preprocessor(gray_HW)[0], None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def _collate(items: list) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    good = [(i, x) for i, x, _ in items if x is not None]
    errors = [(i, e) for i, x, e in items if x is None]
    batch = torch.stack([x for _, x in good]) if good else None
    return [i for i, _ in good], batch, errors


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------------ extraction
def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


def _sidecar(k: int) -> str:
    return f"shard-{k:05d}.json"


def _select_images(ws: Workspace, cfg: ExtractConfig) -> tuple[pd.DataFrame, list[str], str]:

    studies = read_studies(ws, cfg.dataset)
    ds_dir = ws.dataset(cfg.dataset)
    table = studies if cfg.split == "all" else studies[studies["split"] == cfg.split]
    table = table[table["image_path"].fillna("").astype(str) != ""].reset_index(drop=True)
    if table.empty:
        raise BadInputError(ds_dir / "studies.parquet", f"no images to extract (split {cfg.split!r})")
    paths = [str(image_file(ds_dir, p)) for p in table["image_path"]]
    return table, paths, file_sha256(ds_dir / "studies.parquet")


EncodedBatch = tuple[list[int], dict[str, torch.Tensor], list[tuple[int, str]]]
"""One computed batch: the positions (rows of the selected table) of the images encoded, ``{stream: (len(positions)
× tokens_per_image, D)}`` in the store dtype on the CPU, and ``(position, problem)`` for each image that failed."""


@dataclasses.dataclass(frozen=True)
class ExtractJob:
    """The work handed to an extraction engine: encode every batch in ``batches``.

    A batch is a tuple of positions into ``paths`` (at most ``cfg.batch_size``, never straddling a shard); the
    batches are cut by :func:`run_extract`, so every engine runs the same forward passes.

    Attributes:
        cfg: the extraction config. layers: resolved layer names. paths: image files of the selected table.
        batches: the batches of the shards still to do. workspace: resolves ``cfg.backbone`` for engines that load
        their own copy of the backbone. device: torch device. allow_download, xrv_cache_dir: for
        :func:`cxrlens.backbones.registry.load_backbone`.
    """

    cfg: ExtractConfig
    layers: tuple[str, ...]
    paths: tuple[str, ...]
    batches: tuple[tuple[int, ...], ...]
    workspace: Workspace
    device: str
    allow_download: bool = False
    xrv_cache_dir: str | None = None

    def load_backbone(self) -> Backbone:
        """A fresh copy of the job's backbone (for engines whose workers cannot share the driver's)."""
        return load_backbone(
            self.cfg.backbone,
            workspace=self.workspace,
            allow_download=self.allow_download,
            xrv_cache_dir=self.xrv_cache_dir,
            device=self.device,
        )


ExtractEngine = Callable[[ExtractJob, Backbone], Iterator[EncodedBatch]]
"""``engine(job, backbone)`` yields one :data:`EncodedBatch` per batch of ``job``, in any order. ``backbone`` is the
driver's copy (the local engine uses it; a distributed engine loads its own in each worker)."""


def encode_batch(backbone: Backbone, x_BCHW: torch.Tensor, job: ExtractJob) -> dict[str, torch.Tensor]:
    """(B, C, h, w) preprocessed images → ``{"<layer>/<token>": (B × tokens_per_image, D)}`` in the store dtype on
    the CPU (patch rows image-major, row-major within the grid). Under inference mode; bf16 autocast on CUDA. Every
    engine encodes through this function."""
    dev = torch.device(job.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
    out_dtype = STORE_DTYPES[job.cfg.dtype]
    with torch.inference_mode(), autocast:
        out = backbone.encode(x_BCHW.to(dev, non_blocking=True), layers=list(job.layers), tokens=job.cfg.tokens)
        streams = {}
        for layer in job.layers:
            for tok in job.cfg.tokens:
                t = out.get(tok, layer)
                t = t.reshape(-1, t.shape[-1]) if tok == "patch" else t
                streams[f"{layer}/{tok}"] = t.to(out_dtype).cpu()
    return streams


def local_engine(num_workers: int | None = None) -> ExtractEngine:
    """The single-process engine: a DataLoader (``num_workers`` spawned decoding workers, default
    :func:`default_num_workers`) feeds the driver's backbone."""

    def run(job: ExtractJob, backbone: Backbone) -> Iterator[EncodedBatch]:
        workers = default_num_workers() if num_workers is None else num_workers
        loader = torch.utils.data.DataLoader(
            _ImageDataset(job.paths, backbone.preprocessor),
            batch_sampler=[list(b) for b in job.batches],
            num_workers=workers,
            collate_fn=_collate,
            worker_init_fn=_worker_init if workers else None,
            prefetch_factor=4 if workers else None,
            persistent_workers=False,
            # spawned, never forked from this threaded parent (cxrlens.parallel); a batch not ready in time = stuck
            multiprocessing_context=pool_context() if workers else None,
            timeout=stall_timeout_s() if workers else 0,
        )
        for positions, batch_BCHW, errors in _guarded(loader, workers):
            yield positions, (encode_batch(backbone, batch_BCHW, job) if batch_BCHW is not None else {}), errors

    return run


def run_extract(
    workspace: Workspace,
    cfg: ExtractConfig,
    *,
    run: str | None = None,
    device: str | None = None,
    num_workers: int | None = None,
    engine: ExtractEngine | None = None,
    allow_download: bool = False,
    xrv_cache_dir: str | Path | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> StageResult:
    """Extract ``cfg``'s activations into ``activations/<run>`` (resuming a killed run; skipped when current).

    Args:
        run: store name (default :func:`default_run_name`).
        device: ``"cpu"``, ``"cuda"`` … (default: CUDA if available). On CUDA the forward runs under bf16 autocast.
        num_workers: DataLoader workers decoding images while the model computes (default: CPUs − 1, at most 4;
            0 on a machine with ≤ 2 CPUs, where a decoding worker only takes a core from the model).
        engine: who computes the batches (default :func:`local_engine` with ``num_workers``; the Ray Data engine is
            :func:`cxrlens.scale.ray_extract.ray_engine`). The engine is not part of the stage hash: shards, sidecars,
            index and manifest are written here by one code path whatever computed them, so a store started by one
            engine can be resumed by another and both give the same store.
    Returns the :class:`StageResult` (``reused=True`` when an identical store exists).
    """

    run = run or default_run_name(cfg)
    final = workspace.activations(run)
    table, paths, dataset_sha = _select_images(workspace, cfg)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    backbone = load_backbone(
        cfg.backbone, workspace=workspace, allow_download=allow_download, xrv_cache_dir=xrv_cache_dir, device=device
    )
    layers = backbone.resolve_layers(list(cfg.layers))
    probe = backbone.encode(
        backbone.preprocess(torch.full((1, *backbone.preprocessor.size), 0.5)), layers=layers, tokens=cfg.tokens
    )
    n_tok = probe.grid[0] * probe.grid[1]
    streams = {
        f"{layer}/{tok}": {
            "dim": int(probe.get(tok, layer).shape[-1]),
            "tokens_per_image": n_tok if tok == "patch" else 1,
        }
        for layer in layers
        for tok in cfg.tokens
    }
    itemsize = torch.tensor([], dtype=STORE_DTYPES[cfg.dtype]).element_size()
    bytes_per_image = sum(s["dim"] * s["tokens_per_image"] * itemsize for s in streams.values())
    per_shard = max(1, min(cfg.shard_images, int(cfg.shard_mb * 2**20) // bytes_per_image))
    n_shards = math.ceil(len(paths) / per_shard)
    upstream = {  # what the shards depend on besides the config: a change in any of them re-extracts
        "backbone": backbone.fingerprint(),
        "dataset": dataset_sha,
        "layout": f"format {FORMAT_VERSION}; layers {','.join(layers)}; {per_shard} images/shard; {len(paths)} images",
    }
    engine = engine or local_engine(num_workers)

    def build(partial: Path) -> dict[str, Any]:
        done = [k for k in range(n_shards) if (partial / _sidecar(k)).is_file()]
        todo = [k for k in range(n_shards) if k not in set(done)]
        if done:
            console.print(f"resuming {final.name}: {len(done)}/{n_shards} shards already complete")
        t0 = time.perf_counter()
        batches = tuple(
            tuple(range(s, min(s + cfg.batch_size, hi)))
            for k in todo
            for lo, hi in [(k * per_shard, min((k + 1) * per_shard, len(paths)))]
            for s in range(lo, hi, cfg.batch_size)
        )
        job = ExtractJob(
            cfg=cfg,
            layers=tuple(layers),
            paths=tuple(paths),
            batches=batches,
            workspace=workspace,
            device=str(device),
            allow_download=allow_download,
            xrv_cache_dir=None if xrv_cache_dir is None else str(xrv_cache_dir),
        )
        dims = {name: s["dim"] for name, s in streams.items()}
        n_new = _write_shards(
            engine(job, backbone) if todo else iter(()), job, partial, todo, per_shard, dims, show_progress
        )
        elapsed = time.perf_counter() - t0
        index, skipped, shard_info = _assemble_index(table, partial, n_shards)
        for err_path, problem in skipped:
            warn_line(f"skipped {err_path}: {problem}")
        atomic_write_parquet(partial / INDEX, index)
        for k in range(n_shards):
            (partial / _sidecar(k)).unlink(missing_ok=True)
        return {
            "rows": {"images": len(index), **{s: len(index) * v["tokens_per_image"] for s, v in streams.items()}},
            "skipped": {"images": len(skipped)},
            "extra": {
                "format": FORMAT_VERSION,
                "run": final.name,
                "dtype": cfg.dtype,
                "layers": layers,
                "grid": list(probe.grid),
                "streams": streams,
                "shards": shard_info,
                "images_per_shard": per_shard,
                "backbone": backbone.describe(),
                "device": str(device),
                "timing": {"seconds_this_run": round(elapsed, 3), "images_this_run": n_new},
            },
        }

    return run_stage(
        final, stage="activations.extract", config=cfg, build=build, force=force, upstream=upstream, resumable=True
    )


def default_num_workers() -> int:
    """Decoding workers used when none are given: CPUs − 1 (at most 4); none on ≤ 2 CPUs, where decoding a PNG
    is cheap next to the forward pass and a worker only takes a core from the model (bench_extract.py)."""
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(4, cpus - 1)


def _write_shards(
    encoded: Iterator[EncodedBatch],
    job: ExtractJob,
    partial: Path,
    todo: list[int],
    per_shard: int,
    stream_dims: dict[str, int],
    show_progress: bool,
) -> int:
    """Collect the engine's batches per shard and write each shard (+ its sidecar, last) as soon as its last batch
    arrives; batches may come in any order. Returns the number of images processed. The one shard writer, whatever
    the engine."""
    n = len(job.paths)
    left = {k: min((k + 1) * per_shard, n) - k * per_shard for k in todo}
    parts: dict[int, list[EncodedBatch]] = {}
    out_dtype = STORE_DTYPES[job.cfg.dtype]
    seen = 0
    t0 = time.perf_counter()
    with progress(disable=not show_progress) as bar:
        task = bar.add_task("extract", total=sum(left.values()))
        for item in encoded:
            positions, _, errors = item
            k = (positions[0] if positions else errors[0][0]) // per_shard
            parts.setdefault(k, []).append(item)
            count = len(positions) + len(errors)
            left[k] -= count
            seen += count
            if left[k] == 0:  # the shard's last batch: write it now, not when the next one arrives
                _flush_shard(partial, k, per_shard, parts.pop(k), stream_dims, out_dtype, job.paths)
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, advance=count, description=f"extract {rate:,.1f} img/s")
    missing = sorted(k for k, v in left.items() if v)
    if missing:
        raise WorkerPoolError("extract", f"the engine stopped with {len(missing)} shard(s) incomplete", "rerun it")
    return seen


def _flush_shard(
    partial: Path,
    k: int,
    per_shard: int,
    parts: list[EncodedBatch],
    stream_dims: dict[str, int],
    out_dtype: torch.dtype,
    paths: Sequence[str],
) -> None:
    """Shard ``k`` from its batches (put back in image order) and then its sidecar (good images, errors)."""
    parts = sorted(parts, key=lambda b: min(b[0][:1] + [e[0] for e in b[2][:1]]))
    good = [i for positions, _, _ in parts for i in positions]
    errors = sorted((i, e) for _, _, errs in parts for i, e in errs)
    tensors = {}
    for name, dim in sorted(stream_dims.items()):
        chunks = [out[name] for positions, out, _ in parts if positions]
        tensors[name] = (torch.cat(chunks) if chunks else torch.empty(0, dim, dtype=out_dtype)).contiguous()
    lo = k * per_shard
    write_shard(partial / _shard_name(k), tensors, first_image=lo)
    atomic_write_json(
        partial / _sidecar(k),
        {"images": [i - lo for i in good], "errors": [[paths[i], e] for i, e in errors]},
    )


def _guarded(loader: torch.utils.data.DataLoader, num_workers: int) -> Iterator[Any]:
    """Iterate ``loader``; decoding workers that died or stopped answering become one :class:`WorkerPoolError`,
    after the workers are shut down (killed if they do not stop)."""
    if not num_workers:
        yield from loader
        return
    it = iter(loader)
    try:
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except RuntimeError as exc:  # torch raises RuntimeError for a dead worker and for a batch timeout
                text = str(exc)
                if "DataLoader worker" not in text and "DataLoader timed out" not in text:
                    raise
                # with a timeout set, torch reports a dead worker as a timeout: look at the workers themselves
                codes = sorted({w.exitcode for w in getattr(it, "_workers", [])} - {None})
                died = "exited unexpectedly" in text or bool(codes)
                problem = "a decoding worker died" if died else "decoding workers stopped answering"
                cause = f"exit codes {codes}" if codes else text.splitlines()[0]
                raise WorkerPoolError(
                    "extract: decoding images", f"{problem} ({cause})", "rerun with --workers 0"
                ) from None
            yield item
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # torch's own clean-up (joins, then terminates)
        if shutdown is not None:
            shutdown()


def write_shard(path: Path, tensors: dict[str, torch.Tensor], *, first_image: int) -> Path:
    """One shard file: safetensors of 2-D tensors (sorted by name), ``first_image`` in its metadata, written
    atomically straight from the tensors' memory (the standard safetensors layout: u64 header length, JSON header
    padded with spaces to 8 bytes, then the raw little-endian data)."""
    header: dict[str, Any] = {"__metadata__": {"first_image": str(first_image)}}
    views: list[Any] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _TORCH_ST[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        if nbytes:
            views.append(memoryview(t.view(torch.uint8).reshape(-1).numpy()))
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return atomic_write_bytes(path, [struct.pack("<Q", len(head)), head, *views])


def write_array_store(
    path: str | Path,
    streams: dict[str, torch.Tensor],
    index: pd.DataFrame | None = None,
    *,
    shard_mb: float = 256.0,
    extra: dict[str, Any] | None = None,
) -> ActivationStore:
    """A complete store from in-memory per-image arrays (``{stream: (N, D)}``, one row per image) — for
    activations computed elsewhere, tests and benchmarks. Same shard format and reader as :func:`run_extract`.
    ``index`` (N rows) adds metadata columns (``study_id``, ``split`` …). Written in place: ``path`` must not exist.
    """

    path = Path(path)
    n = {t.shape[0] for t in streams.values()}
    if len(n) != 1:
        raise BadInputError(path, "every stream needs the same number of rows")
    (n_img,) = n
    path.mkdir(parents=True, exist_ok=False)
    per_row = sum(t.shape[1] * t.element_size() for t in streams.values())
    per_shard = max(1, int(shard_mb * 2**20) // max(per_row, 1))
    shards = []
    for k, lo in enumerate(range(0, n_img, per_shard)):
        hi = min(lo + per_shard, n_img)
        f = write_shard(path / _shard_name(k), {s: t[lo:hi].contiguous() for s, t in streams.items()}, first_image=lo)
        shards.append({"file": f.name, "images": hi - lo, "first_row": lo, "bytes": f.stat().st_size})
    idx = pd.DataFrame({"row": np.arange(n_img, dtype=np.int64)})
    if index is not None:
        idx = pd.concat([idx, index.reset_index(drop=True)], axis=1)
    atomic_write_parquet(path / INDEX, idx)
    dtypes = {str(t.dtype).replace("torch.", "") for t in streams.values()}
    manifest = Manifest(
        stage="activations.arrays",
        config={},
        config_hash="",
        package_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        rows={"images": n_img},
        extra={
            "format": FORMAT_VERSION,
            "dtype": dtypes.pop() if len(dtypes) == 1 else "mixed",
            "grid": [1, 1],
            "streams": {s: {"dim": int(t.shape[1]), "tokens_per_image": 1} for s, t in streams.items()},
            "shards": shards,
            **(extra or {}),
        },
    )
    atomic_write_json(path / MANIFEST, manifest.to_json())
    return ActivationStore(path)


def _assemble_index(
    table: pd.DataFrame, partial: Path, n_shards: int
) -> tuple[pd.DataFrame, list[tuple[str, str]], list[dict[str, Any]]]:
    """index.parquet rows, skipped (path, problem) and per-shard info from the shard sidecars."""
    frames, skipped, info = [], [], []
    row = 0
    for k in range(n_shards):
        side = json.loads((partial / _sidecar(k)).read_text())
        with open(partial / _shard_name(k), "rb") as fh:
            header = _read_header(fh)
        first = int(header.get("__metadata__", {}).get("first_image", 0))
        local = np.asarray(side["images"], dtype=np.int64)
        sel = table.iloc[first + local] if len(local) else table.iloc[[]]
        cols = {c: sel[c].astype("string").to_numpy() for c in _INDEX_COLUMNS if c in sel.columns}
        frames.append(
            pd.DataFrame(
                {
                    "row": np.arange(row, row + len(local), dtype=np.int64),
                    "shard": np.full(len(local), k, dtype=np.int32),
                    "shard_row": np.arange(len(local), dtype=np.int64),
                    "table_row": (first + local).astype(np.int64),
                    **cols,
                }
            )
        )
        skipped += [tuple(e) for e in side["errors"]]
        info.append(
            {
                "file": _shard_name(k),
                "images": len(local),
                "first_row": row,
                "bytes": (partial / _shard_name(k)).stat().st_size,
                "sha256": file_sha256(partial / _shard_name(k)),
            }
        )
        row += len(local)
    index = pd.concat(frames, ignore_index=True)
    for c in _INDEX_COLUMNS:
        if c in index.columns:
            index[c] = index[c].astype("string")
    return index, skipped, info


# ---------------------------------------------------------------------------------------------------------- reader
def _read_header(fh) -> dict[str, Any]:
    (n,) = struct.unpack("<Q", fh.read(8))
    header = json.loads(fh.read(n))
    header["__data_start__"] = 8 + n
    return header


@dataclasses.dataclass(frozen=True)
class StreamInfo:
    """One stream of a store: ``dim`` D, ``tokens_per_image`` (1, or N patches), total ``rows``."""

    name: str
    dim: int
    tokens_per_image: int
    rows: int


class ActivationStore:
    """Read access to a complete activation store (``activations/<run>``).

    ``store.stream_names``; ``store.info(stream)``; ``store.index`` (one row per image);
    ``store.get(stream, rows)`` → (len(rows), D) float32; ``store.read(stream)`` → everything (small stores);
    ``store.iter_batches(stream, batch_size, shuffle_buffer=…, seed=…)`` → streaming shuffled (B, D) batches.
    """

    def __init__(self, path: str | Path) -> None:
        self._fds: dict[int, int] = {}
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest is None or not manifest.stage.startswith("activations."):
            raise BadInputError(
                self.path, "not a complete activation store (no manifest); run or resume `cxrlens extract`"
            )
        self.manifest = manifest
        self.index = pd.read_parquet(self.path / INDEX)
        extra = manifest.extra
        self.grid: tuple[int, int] = tuple(extra["grid"])  # type: ignore[assignment]
        self.dtype = extra["dtype"]
        n_img = len(self.index)
        self._streams = {
            name: StreamInfo(name, int(s["dim"]), int(s["tokens_per_image"]), n_img * int(s["tokens_per_image"]))
            for name, s in extra["streams"].items()
        }
        self._shards = extra["shards"]
        self._img_starts = np.array([s["first_row"] for s in self._shards], dtype=np.int64)
        self._img_counts = np.array([s["images"] for s in self._shards], dtype=np.int64)
        self._headers: dict[int, dict[str, Any]] = {}

    # ---------------------------------------------------------------- metadata
    @property
    def stream_names(self) -> list[str]:
        return list(self._streams)

    def info(self, stream: str) -> StreamInfo:
        if stream not in self._streams:
            raise BadInputError(self.path, f"no stream {stream!r}; streams are {', '.join(self._streams)}")
        return self._streams[stream]

    def __len__(self) -> int:
        return len(self.index)

    def token_index(self, stream: str) -> pd.DataFrame:
        """Row → image: ``row, image_row, token, y, x`` plus the image's ``study_id``/``image_id``/``split``."""
        s = self.info(stream)
        rows = np.arange(s.rows, dtype=np.int64)
        img = rows // s.tokens_per_image
        pos = rows % s.tokens_per_image
        y, x = (pos // self.grid[1], pos % self.grid[1]) if s.tokens_per_image > 1 else (pos * 0 - 1, pos * 0 - 1)
        out = pd.DataFrame({"row": rows, "image_row": img, "token": pos if s.tokens_per_image > 1 else -1})
        out["y"], out["x"] = y, x
        for c in ("study_id", "image_id", "split"):
            if c in self.index.columns:
                out[c] = self.index[c].to_numpy()[img]
        return out

    # ---------------------------------------------------------------- low level
    def _header(self, k: int) -> dict[str, Any]:
        if k not in self._headers:
            with open(self.path / self._shards[k]["file"], "rb") as fh:
                self._headers[k] = _read_header(fh)
        return self._headers[k]

    def _fd(self, k: int) -> int:
        if k not in self._fds:
            self._fds[k] = os.open(self.path / self._shards[k]["file"], os.O_RDONLY)
        return self._fds[k]

    def close(self) -> None:
        """Close the shard files (also done when the store is garbage-collected)."""
        for fd in getattr(self, "_fds", {}).values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = {}

    def __del__(self) -> None:
        self.close()

    def _read_rows(self, k: int, stream: str, lo: int, hi: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows [lo, hi) of ``stream`` in shard ``k`` in the stored dtype, read straight into ``out`` (or a new
        tensor) with one ``preadv`` — no intermediate copy."""
        h = self._header(k)
        meta = h[stream]
        dtype = _ST_DTYPES[meta["dtype"]]
        dim = meta["shape"][1] if len(meta["shape"]) == 2 else 0
        if out is None:
            out = torch.empty(hi - lo, dim, dtype=dtype)
        itemsize = out.element_size()
        start = h["__data_start__"] + meta["data_offsets"][0] + lo * dim * itemsize
        n = (hi - lo) * dim * itemsize
        if n == 0:
            return out
        view = out.view(torch.uint8).reshape(-1).numpy()
        got = os.preadv(self._fd(k), [view], start)
        if got != n:
            raise BadInputError(self.path / self._shards[k]["file"], "shard is truncated")
        return out

    def _shard_rows(self, stream: str) -> tuple[np.ndarray, np.ndarray]:
        """(first stream row, row count) per shard."""
        tpi = self.info(stream).tokens_per_image
        return self._img_starts * tpi, self._img_counts * tpi

    # ---------------------------------------------------------------- random access
    def get(self, stream: str, rows: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Rows of ``stream`` by global row number → (len(rows), D) float32, in the order given."""
        s = self.info(stream)
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= s.rows):
            raise IndexError(f"row out of range [0, {s.rows}) for stream {stream!r}")
        out = torch.empty(idx.size, s.dim, dtype=torch.float32)
        starts, _ = self._shard_rows(stream)
        shard_of = np.searchsorted(starts, idx, side="right") - 1
        for k in np.unique(shard_of):
            sel = np.nonzero(shard_of == k)[0]
            local = idx[sel] - starts[k]
            lo, hi = int(local.min()), int(local.max()) + 1
            if hi - lo <= 4 * len(sel) + 64:  # dense enough: one read of the span
                block = self._read_rows(int(k), stream, lo, hi).float()
                out[torch.from_numpy(sel)] = block[torch.from_numpy(local - lo)]
            else:
                for j, r in zip(sel, local, strict=True):
                    out[int(j)] = self._read_rows(int(k), stream, int(r), int(r) + 1)[0].float()
        return out

    def read(self, stream: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The whole stream (rows, D) — only for stores that fit in memory."""
        starts, counts = self._shard_rows(stream)
        info = self.info(stream)
        stored = _ST_DTYPES[self._header(0)[stream]["dtype"]] if self._shards else dtype
        out = torch.empty(info.rows, info.dim, dtype=stored)
        for k in range(len(self._shards)):
            self._read_rows(k, stream, 0, int(counts[k]), out=out[int(starts[k]) : int(starts[k] + counts[k])])
        return out.to(dtype)

    # ---------------------------------------------------------------- streaming
    def iter_batches(
        self,
        stream: str,
        batch_size: int,
        *,
        shuffle_buffer: int = 65536,
        seed: int = 0,
        chunk_rows: int = 4096,
        split: str | None = None,
        drop_last: bool = False,
        dtype: torch.dtype = torch.float32,
        part: tuple[int, int] = (0, 1),
    ) -> Iterator[torch.Tensor]:
        """One pass over ``stream`` in a seeded shuffled order, as (batch_size, D) tensors.

        The stream is read in contiguous chunks of ``chunk_rows`` rows, visited in a random order across all shards,
        and rows pass through a shuffle buffer of ``shuffle_buffer`` rows from which batches are drawn uniformly at
        random. Memory: ``(shuffle_buffer + chunk_rows) × D`` values, independent of the store size. With
        ``shuffle_buffer ≥`` the stream's rows it is a full uniform shuffle. ``split`` keeps rows of images in
        that split only. The same ``seed`` gives the same sequence. ``part=(rank, world)`` keeps every
        ``world``-th chunk from ``rank`` on (chunks listed shard by shard): the ranks of a data-parallel job read
        disjoint rows that together cover the stream once per pass.
        """
        s = self.info(stream)
        if batch_size < 1 or shuffle_buffer < batch_size:
            raise ValueError("need batch_size ≥ 1 and shuffle_buffer ≥ batch_size")
        rng = np.random.default_rng(seed)
        keep_img = None if split is None else (self.index["split"].astype(str).to_numpy() == split)
        starts, counts = self._shard_rows(stream)
        buf = torch.empty(shuffle_buffer, s.dim, dtype=dtype)
        n = 0

        def take(count: int) -> torch.Tensor:
            nonlocal n
            pick = rng.choice(n, size=count, replace=False)
            out = torch.index_select(buf, 0, torch.from_numpy(pick))  # a copy; 5× faster than buf[idx]
            # fill the holes with the rows at the tail so the live rows stay in buf[:n - count]
            new_n = n - count
            holes = np.sort(pick[pick < new_n])
            tail = np.setdiff1d(np.arange(new_n, n), pick, assume_unique=True)
            if len(holes):
                buf.index_copy_(0, torch.from_numpy(holes), torch.index_select(buf, 0, torch.from_numpy(tail)))
            n = new_n
            return out

        chunks = [(k, c0) for k in range(len(self._shards)) for c0 in range(0, int(counts[k]), chunk_rows)]
        rank, world = part
        if not 0 <= rank < world:
            raise ValueError(f"part must be (rank, world) with 0 ≤ rank < world, got {part}")
        chunks = chunks[rank::world]
        stored = _ST_DTYPES[self._header(0)[stream]["dtype"]] if self._shards else dtype
        raw = torch.empty(chunk_rows, s.dim, dtype=stored)  # reused for every chunk
        for j in rng.permutation(len(chunks)):
            k, c0 = chunks[j]
            c1 = min(c0 + chunk_rows, int(counts[k]))
            chunk = self._read_rows(k, stream, c0, c1, out=raw[: c1 - c0]).to(dtype)
            if keep_img is not None:
                img = (starts[k] + np.arange(c0, c1)) // s.tokens_per_image
                chunk = chunk[torch.from_numpy(keep_img[img])]
            pos = 0
            while pos < len(chunk):
                m = min(shuffle_buffer - n, len(chunk) - pos)
                buf[n : n + m] = chunk[pos : pos + m]
                n += m
                pos += m
                if n == shuffle_buffer:
                    yield take(batch_size)
            del chunk
        order = torch.from_numpy(rng.permutation(n))
        for b in range(0, n, batch_size):
            if drop_last and b + batch_size > n:
                break
            yield torch.index_select(buf, 0, order[b : b + batch_size])
