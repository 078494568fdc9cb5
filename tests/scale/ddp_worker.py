"""One rank of the torchrun tests (tests/scale/test_ddp.py): train the shared small SAE on the synthetic store.

``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/scale/ddp_worker.py <workspace> <run>
[--die-at STEP]``; ``--die-at`` kills rank 0 right after it has written the checkpoint of that step (a crash).
``… ddp_worker.py --exact OUTDIR`` instead runs :func:`cxrlens.sae.train.train` on this rank's half of each batch of
``exact_batches()`` and saves the final weights to ``OUTDIR/rank<r>.safetensors``; ``--align-exact OUTDIR`` trains
the alignment adapter with ``parallel=`` and saves ``OUTDIR/align<r>.safetensors``; ``--align-stage WORKSPACE RUN``
runs the ``align train`` stage (:func:`cxrlens.scale.ddp.run_align_train_distributed`, the hashing text encoder of
``tests/align/conftest.py``) on ``activations/planted``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.scale.ddp_config

from safetensors.torch import save_file

import cxrlens.sae.train as sae_train
from cxrlens.scale.ddp import DistEnv, TorchDataParallel, process_group, run_sae_train_distributed
from cxrlens.workspace import Workspace
from tests.scale.ddp_config import align_exact_config, align_exact_data, exact_batches, exact_config, run_config


def exact(out: Path) -> None:
    env = DistEnv.from_env()
    with process_group(env):
        half = exact_config().batch_size // env.world
        mine = [b[env.rank * half : (env.rank + 1) * half] for b in exact_batches()]
        res = sae_train.train(mine, exact_config(), parallel=TorchDataParallel(), show_progress=False)
    state = {k: v.contiguous() for k, v in res.sae.state_dict().items()}
    save_file(state, out / f"rank{env.rank}.safetensors", metadata={"tokens": str(res.tokens)})


def align_exact(out: Path) -> None:
    from cxrlens.align.train import train_adapter

    env = DistEnv.from_env()
    with process_group(env):
        model, _ = train_adapter(
            align_exact_data(), align_exact_config(), parallel=TorchDataParallel(), show_progress=False
        )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / f"align{env.rank}.safetensors")


def align_stage(workspace: str, run: str) -> None:
    from cxrlens.scale.ddp import run_align_train_distributed
    from tests.align.conftest import HashingEncoder
    from tests.scale.ddp_config import align_stage_config

    encoder = HashingEncoder()
    res = run_align_train_distributed(
        Workspace(workspace), align_stage_config(), run=run, encoder=encoder, show_progress=False
    )
    line = f"rank {os.environ['RANK']} done reused={res.reused} encoded={sum(encoder.calls)}\n"
    sys.stdout.write(line)  # one write: the two ranks share the pipe
    sys.stdout.flush()


def main() -> None:
    if sys.argv[1] == "--align-stage":
        align_stage(sys.argv[2], sys.argv[3])
        return
    if sys.argv[1] == "--exact":
        exact(Path(sys.argv[2]))
        return
    if sys.argv[1] == "--align-exact":
        align_exact(Path(sys.argv[2]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("run")
    ap.add_argument("--die-at", type=int, default=0)
    args = ap.parse_args()
    if args.die_at:
        save = sae_train.save_checkpoint

        def save_then_die(path, sae, opt, cfg, step, tokens, gen):
            out = save(path, sae, opt, cfg, step, tokens, gen)
            if step == args.die_at:
                os._exit(3)
            return out

        sae_train.save_checkpoint = save_then_die
    res = run_sae_train_distributed(Workspace(args.workspace), run_config(), run=args.run, show_progress=False)
    print(f"rank {os.environ['RANK']} done reused={res.reused}", flush=True)


if __name__ == "__main__":
    main()
