"""Activation extraction on Ray Data: the same batches, shards and store as the single-process extractor.

:func:`ray_engine` returns an :data:`cxrlens.activations.ExtractEngine` for
:func:`cxrlens.activations.run_extract`, which keeps everything that defines the store — image selection, the
shard layout (images per shard), batches cut at shard boundaries, the stage hash, the resumable
``activations/.<run>.partial/`` and the one writer of shards, sidecars, ``index.parquet`` and the manifest. Only
the computation moves to the cluster::

    one row per batch still to do ──map (CPU tasks)──► decoded (B, C, h, w) ──map_batches (actor pool: one backbone
    per actor)──► {stream: (B × tokens, D)} in the store dtype ──► driver: shard k written when its last batch lands

Each row is one batch of :class:`cxrlens.activations.ExtractJob` (≤ ``batch_size`` images, never across a shard),
so every forward pass is the one the local engine runs. Decoding goes through
:func:`cxrlens.activations.decode_image`, the forward through :func:`cxrlens.activations.encode_batch`. Tasks are
retried (``max_retries``), dead actors restarted and their batches re-run (``max_restarts``,
``max_task_retries``); a batch that still fails ends the run with one :class:`cxrlens.parallel.WorkerPoolError`
line, and the shards already written are kept for the next run (shard-level resume, whichever engine resumes).

``ray`` is the ``[scale]`` extra (``pip install 'cxrlens[scale]'``), imported only here, inside functions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from cxrlens.activations import EncodedBatch, ExtractEngine, ExtractJob, decode_image, encode_batch
from cxrlens.backbones.base import Backbone
from cxrlens.errors import CxrlensError
from cxrlens.parallel import WorkerPoolError, stall_timeout_s

__all__ = ["BatchEncoder", "RayOptions", "import_ray", "init_ray", "ray_engine"]

MISSING = "ray is not installed: pip install 'cxrlens[scale]'"


def import_ray() -> Any:
    """The ``ray`` module (with Ray Data), or one clear error naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise CxrlensError(MISSING) from None
    return ray


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Connect to Ray unless already connected: ``address`` (``"auto"`` = the running cluster, ``ray://…``) or a
    new local instance with ``num_cpus``. Usage statistics and the dashboard are off, so nothing phones out.
    Returns whether this call started the connection (the caller then shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    return True


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine spreads the work (none of it changes the stored numbers).

    Attributes:
        address: Ray cluster address (``"auto"``, ``"ray://head:10001"``); None = a local Ray instance.
        num_cpus: CPUs of a local instance (None = all).
        actors: size of the inference actor pool (None = one per GPU of the cluster when actors get GPUs, else half
            the cluster's CPUs, at least 1).
        gpus_per_actor: GPUs reserved per inference actor (None = 1 when the cluster has GPUs, else 0). An actor
            with a GPU runs the forward there under bf16 autocast, as the local engine does on CUDA.
        cpus_per_actor: CPUs reserved per inference actor (torch uses that many threads).
        decode_cpus: CPUs per decoding task.
        max_retries: retries of a failed decoding task / a batch whose actor died; ``max_restarts`` of an actor.
    """

    address: str | None = None
    num_cpus: int | None = None
    actors: int | None = None
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    decode_cpus: float = 1.0
    max_retries: int = 3


class BatchEncoder:
    """The inference actor: loads the job's backbone once, then encodes one decoded batch per call.

    Input rows (Ray's numpy format): ``batch`` (index into ``job.batches``), ``x`` (float32 bytes of the
    (G, C, h, w) decoded good images), ``shape``, ``good`` and ``errors`` (JSON, passed through). Output rows:
    ``batch``, ``good``, ``errors``, ``tensors`` (the ``{stream: (G × tokens, D)}`` of
    :func:`cxrlens.activations.encode_batch` as safetensors bytes: exact, whatever the store dtype) and ``failed``
    (empty, or the exception a batch raised). Subclasses override :meth:`encode`.
    """

    def __init__(self, job: ExtractJob, threads: int = 1) -> None:
        torch.set_num_threads(max(1, threads))
        # the GPU Ray gave this actor (CUDA_VISIBLE_DEVICES), else its CPUs — not the driver's device
        self.job = dataclasses.replace(job, device="cuda" if torch.cuda.is_available() else "cpu")
        self.backbone: Backbone = self.job.load_backbone()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:meth:`encode`, with an exception returned as the row's ``failed`` text: Ray Data's own abort on a user
        error sometimes leaves the consumer waiting (Ray 2.60), so the driver raises it instead."""
        try:
            out = self.encode(batch)
            out["failed"] = np.asarray([""] * len(out["batch"]), dtype=object)
        except Exception as exc:
            text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            n = len(batch["batch"])
            out = {
                "batch": np.asarray(batch["batch"], dtype=np.int64),
                "good": np.asarray(["[]"] * n, dtype=object),
                "errors": np.asarray(["[]"] * n, dtype=object),
                "tensors": np.asarray([b""] * n, dtype=object),
                "failed": np.asarray([text] * n, dtype=object),
            }
        return out

    def encode(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Decoded rows → encoded rows (see the class docstring)."""
        out_bytes = []
        for x, shape in zip(batch["x"], batch["shape"], strict=True):
            shape_ = tuple(int(v) for v in shape)
            if shape_[0]:
                x_BCHW = torch.from_numpy(np.frombuffer(x, dtype=np.float32).reshape(shape_).copy())
                tensors = encode_batch(self.backbone, x_BCHW, self.job)
            else:  # every image of the batch failed to decode
                tensors = {}
            out_bytes.append(st_save({k: v.contiguous() for k, v in tensors.items()}))
        return {
            "batch": np.asarray(batch["batch"], dtype=np.int64),
            "good": np.asarray(batch["good"], dtype=object),
            "errors": np.asarray(batch["errors"], dtype=object),
            "tensors": np.asarray(out_bytes, dtype=object),
        }


def _decode_row(row: dict[str, Any], preprocessor: Any) -> dict[str, Any]:
    """One batch row (``batch``, ``positions``, ``paths``) → its decoded good images (float32 bytes + shape), the
    offsets of the good images in the batch and ``[position, problem]`` per failed one (both JSON)."""
    xs, good, errors = [], [], []
    for j, (pos, path) in enumerate(zip(row["positions"], row["paths"], strict=True)):
        x, err = decode_image(str(path), preprocessor)
        if x is None:
            errors.append([int(pos), err])
        else:
            xs.append(x)
            good.append(j)
    x_GCHW = torch.stack(xs).float().numpy() if xs else np.zeros((0, 1, 1, 1), np.float32)
    return {
        "batch": int(row["batch"]),
        "x": x_GCHW.tobytes(),
        "shape": np.asarray(x_GCHW.shape, dtype=np.int64),
        "good": json.dumps(good),
        "errors": json.dumps(errors),
    }


def _gpus_per_actor(ray: Any, opts: RayOptions) -> float:
    if opts.gpus_per_actor is not None:
        return opts.gpus_per_actor
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def _pool_size(ray: Any, opts: RayOptions, gpus: float) -> int:
    if opts.actors:
        return opts.actors
    res = ray.cluster_resources()
    if gpus > 0:
        return max(1, int(res.get("GPU", 0) // gpus))
    return max(1, int(res.get("CPU", 1) // (2 * opts.cpus_per_actor)))


def ray_engine(opts: RayOptions | None = None, *, encoder: type[BatchEncoder] = BatchEncoder) -> ExtractEngine:
    """An extraction engine running on Ray Data (see the module docstring). Pass it as
    ``run_extract(ws, cfg, engine=ray_engine(RayOptions(address="auto")))``. ``encoder`` is the actor class (a
    :class:`BatchEncoder` subclass can instrument it). Connects to Ray when it runs (and disconnects if it
    connected)."""
    opts = opts or RayOptions()

    def run(job: ExtractJob, backbone: Backbone) -> Iterator[EncodedBatch]:
        ray = import_ray()
        started = init_ray(opts.address, num_cpus=opts.num_cpus)
        try:
            yield from _run(ray, job, backbone, opts, encoder)
        finally:
            if started:
                ray.shutdown()

    return run


def _run(
    ray: Any, job: ExtractJob, backbone: Backbone, opts: RayOptions, encoder: type[BatchEncoder]
) -> Iterator[EncodedBatch]:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver reports progress (shards written, images/s)
    ctx.execution_options.preserve_order = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    rows = [
        {"batch": b, "positions": list(batch), "paths": [job.paths[i] for i in batch]}
        for b, batch in enumerate(job.batches)
    ]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 1000)))
    gpus = _gpus_per_actor(ray, opts)
    light = dataclasses.replace(job, paths=(), batches=())  # what an actor needs: config, layers, backbone spec
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing retry limits as remote args but has no other way to bound them; unbounded
        # (its default for actors) would retry a batch that always kills its actor forever
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=DeprecationWarning)
        ds = ds.map(
            _decode_row,
            fn_kwargs={"preprocessor": backbone.preprocessor},
            num_cpus=opts.decode_cpus,
            max_retries=opts.max_retries,
        )
        ds = ds.map_batches(
            encoder,
            fn_constructor_kwargs={"job": light, "threads": max(1, int(opts.cpus_per_actor))},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=_pool_size(ray, opts, gpus)),
            num_cpus=opts.cpus_per_actor,
            num_gpus=gpus or None,
            max_restarts=opts.max_retries,
            max_task_retries=opts.max_retries,
        )
    try:
        for row in _watched(ds.iter_rows(), stall_timeout_s()):
            if row["failed"]:
                raise WorkerPoolError(
                    "extract (ray)",
                    f"batch {int(row['batch'])} failed ({str(row['failed'])[:300]})",
                    "rerun the same command: completed shards are kept",
                )
            positions = job.batches[int(row["batch"])]
            good = [positions[j] for j in json.loads(row["good"])]
            errors = [(int(pos), str(err)) for pos, err in json.loads(row["errors"])]
            yield good, st_load(bytes(row["tensors"])), errors
    except (CxrlensError, GeneratorExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # a user error in a batch, or a task / actor that still failed after its retries
        raise WorkerPoolError(
            "extract (ray)",
            f"a batch failed ({_root_cause(exc)[:300]})",
            "rerun the same command: completed shards are kept",
        ) from None


def _watched(rows: Iterator[dict[str, Any]], timeout_s: float) -> Iterator[dict[str, Any]]:
    """``rows`` read in a helper thread; no row for ``timeout_s`` seconds (a cluster without the resources the
    pipeline asks for waits forever) is one :class:`WorkerPoolError`. Closing this generator closes ``rows``, which
    stops the Ray Data execution and releases its actors."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=4)
    stop = threading.Event()

    def pump() -> None:
        try:
            for row in rows:
                while not stop.is_set():
                    try:
                        box.put(("row", row), timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            box.put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            box.put(("error", exc))
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=pump, name="cxrlens-ray-rows", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, value = box.get(timeout=timeout_s)
            except queue.Empty:
                raise WorkerPoolError(
                    "extract (ray)",
                    f"no batch finished in {timeout_s:.0f} s",
                    "check `ray status` for free CPUs/GPUs (CXRLENS_POOL_TIMEOUT sets the limit)",
                ) from None
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.*)$")


def _root_cause(exc: BaseException) -> str:
    """``Type: message`` of the worker's own exception behind a Ray error. Ray ships it as traceback text inside
    ``RayTaskError(UserCodeException)`` (the exception chain does not survive), followed by its own advice; the
    first ``Type: message`` line that is not Ray's is the cause."""
    for line in str(exc).splitlines():
        m = _RAISED.match(line)
        if m and not m.group(1).startswith("ray."):
            return f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(2).strip()}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
