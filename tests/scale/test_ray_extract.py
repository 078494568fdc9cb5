"""Activation extraction on Ray Data (local ``ray.init(num_cpus=2)``): the store equals the single-process store,
a killed actor is restarted and its batch re-run, a failing batch is one error line and the rerun completes, and a
store started by one engine is finished by the other (shard-level resume)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cxrlens.activations import ActivationStore, ExtractConfig, local_engine, run_extract
from cxrlens.backbones.fake import save_tiny_model
from cxrlens.errors import CxrlensError
from cxrlens.workspace import Workspace, partial_dir
from tests.activations.conftest import make_png_dataset

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'cxrlens[scale]')")
ray_extract = pytest.importorskip("cxrlens.scale.ray_extract")

N_IMAGES, PER_SHARD = 24, 8  # 3 shards of 8 images, batches of 3 → 3 batches per shard


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rayws")
    ws = Workspace(root / "ws")
    make_png_dataset(ws, "tiny", n=N_IMAGES)
    (ws.dataset("tiny") / "images" / "i5.png").write_bytes(b"not a png")  # one bad image: skipped by both engines
    model = save_tiny_model(root / "dino", family="dinov2", image_size=32, patch_size=8)
    cfg = ExtractConfig(
        dataset="tiny",
        backbone=f"hf:{model}",
        tokens=("cls", "patch"),
        dtype="float16",
        batch_size=3,
        shard_images=PER_SHARD,
    )
    ref = run_extract(ws, cfg, run="local", num_workers=0, show_progress=False)
    started = ray_extract.init_ray(num_cpus=2)
    yield ws, cfg, ref.path
    if started:
        ray.shutdown()


def _assert_same_store(a: Path, b: Path) -> None:
    sa, sb = ActivationStore(a), ActivationStore(b)
    assert sa.index.equals(sb.index)
    assert sa.stream_names == sb.stream_names == ["final/cls", "final/patch"]
    for s in sa.stream_names:
        torch.testing.assert_close(sa.read(s), sb.read(s), rtol=1e-3, atol=1e-3)  # fp16 tolerance
    ea, eb = sa.manifest.extra, sb.manifest.extra
    for key in ("streams", "shards", "images_per_shard", "grid", "dtype", "layers"):
        assert ea[key] == eb[key], key
    assert sa.manifest.skipped == sb.manifest.skipped == {"images": 1}
    assert sa.manifest.config_hash == sb.manifest.config_hash
    # the same batches through the same encode_batch: the shard files are byte-identical, not only close
    for shard in ea["shards"]:
        assert (a / shard["file"]).read_bytes() == (b / shard["file"]).read_bytes()


def test_ray_store_equals_single_process_store(setup):
    ws, cfg, ref = setup
    res = run_extract(ws, cfg, run="ray", engine=ray_extract.ray_engine(), show_progress=False)
    assert not res.reused and len(ActivationStore(res.path)) == N_IMAGES - 1
    _assert_same_store(ref, res.path)


def test_killed_actor_is_restarted_and_the_store_is_complete(setup, tmp_path):
    ws, cfg, ref = setup
    marker = tmp_path / "killed"

    class DiesOnce(ray_extract.BatchEncoder):
        def encode(self, batch):
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # the actor process dies mid-batch, as on a lost node
            return super().encode(batch)

    res = run_extract(ws, cfg, run="ray-kill", engine=ray_extract.ray_engine(encoder=DiesOnce), show_progress=False)
    assert marker.exists()  # an actor really died
    _assert_same_store(ref, res.path)


def test_failing_batch_is_one_line_and_the_rerun_completes(setup, tmp_path):
    ws, cfg, ref = setup

    class FailsOnLastShard(ray_extract.BatchEncoder):
        def encode(self, batch):
            if int(batch["batch"][0]) == 7:  # a batch of the last shard fails every time
                raise RuntimeError("synthetic failure")
            return super().encode(batch)

    opts = ray_extract.RayOptions(max_retries=1)
    with pytest.raises(CxrlensError) as err:
        run_extract(
            ws, cfg, run="ray-fail", engine=ray_extract.ray_engine(opts, encoder=FailsOnLastShard), show_progress=False
        )
    line = str(err.value)
    assert "\n" not in line and line.startswith("extract (ray): batch 7 failed (RuntimeError: synthetic failure)")
    assert not ws.activations("ray-fail").exists() and partial_dir(ws.activations("ray-fail")).is_dir()
    res = run_extract(ws, cfg, run="ray-fail", engine=ray_extract.ray_engine(), show_progress=False)
    _assert_same_store(ref, res.path)


def test_a_store_started_locally_is_finished_by_ray(setup):
    ws, cfg, ref = setup
    stop_after = 2 * 3  # the batches of the first two shards

    def stopping_engine(job, backbone):
        for i, item in enumerate(local_engine(0)(job, backbone)):
            if i == stop_after:
                raise RuntimeError("stopped")  # the process dies after 2 of 3 shards
            yield item

    with pytest.raises(RuntimeError, match="stopped"):
        run_extract(ws, cfg, run="mixed", engine=stopping_engine, show_progress=False)
    part = partial_dir(ws.activations("mixed"))
    assert sorted(p.name for p in part.glob("shard-*.json")) == ["shard-00000.json", "shard-00001.json"]
    given = []

    def counting_ray_engine(job, backbone):
        given.append(len(job.batches))
        yield from ray_extract.ray_engine()(job, backbone)

    res = run_extract(ws, cfg, run="mixed", engine=counting_ray_engine, show_progress=False)
    assert given == [3]  # only the last shard's 3 batches were computed again
    _assert_same_store(ref, res.path)


def test_missing_ray_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(CxrlensError, match=r"pip install 'cxrlens\[scale\]'"):
        ray_extract.import_ray()
