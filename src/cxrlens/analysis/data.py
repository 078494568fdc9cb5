"""Inputs of the analyses: dataset images, labels and ground-truth factors, and latent codes from the workspace.

Latent sources (``--latents`` on the command line):

* ``vae:<analysis run>`` — posterior means of a model trained by ``cxrlens analyze train-vae`` (``latents.parquet``
  written next to it: one row per image, columns ``z<c>_<y>_<x>``);
* ``activations:<run>:<stream>`` — a stream of an activation store (``cls``/``mean`` streams: one row per image;
  ``patch`` streams are mean-pooled per image);
* ``sae:<sae run>:<activations run>:<stream>`` — SAE codes of that stream (encoded here, pooled like above);
* ``lt-vit:<run>`` — backbone features of a label-token ViT run (``cxrlens lt-vit train``): the mean of its final
  image tokens (the image stream never attends to the label tokens, so these are plain ViT features), computed here
  for every image of the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cxrlens.activations import ActivationStore
from cxrlens.console import warn_line
from cxrlens.data.images import load_image
from cxrlens.data.store import image_file, read_side_table, read_studies
from cxrlens.errors import BadInputError
from cxrlens.labeltokens.run import load_run_models
from cxrlens.sae import load_sae
from cxrlens.workspace import Workspace, artefact_identity

__all__ = [
    "SPRITE_FACTORS",
    "Codes",
    "factor_matrix",
    "load_codes",
    "load_factors",
    "load_images",
    "upstream_of",
]

# Factors of cxr-sprites that change the image (sampled independently on a grid; see cxrlens.data.phantom.datasets).
SPRITE_FACTORS: tuple[str, ...] = (
    "view",
    "ctr",
    "exposure",
    "contrast",
    "noise",
    "blur",
    "rotation",
    "scale",
    "shift_u",
    "shift_v",
    "marker",
    "cardiomegaly.present",
    "pleural_effusion.present",
    "pneumothorax.present",
    "consolidation.present",
    "edema.present",
)


def load_images(
    ws: Workspace, dataset: str, size: int, *, split: str = "all", limit: int | None = None
) -> tuple[torch.Tensor, pd.DataFrame]:
    """Grey images ``(N, size, size)`` float32 in [0, 1] (area-resized when needed) and their study-table rows.

    Unreadable images are skipped with one warning line each; the returned table holds only the loaded rows.
    """

    studies = read_studies(ws, dataset)
    if split != "all":
        studies = studies[studies["split"] == split]
    if limit is not None:
        studies = studies.head(limit)
    root = ws.dataset(dataset)
    out, keep = [], []
    for i, rel in enumerate(studies["image_path"].astype(str)):
        path = image_file(root, rel)
        try:
            arr = torch.from_numpy(np.ascontiguousarray(load_image(path), dtype=np.float32))
        except BadInputError as err:
            warn_line(f"skipped {err}")
            continue
        if arr.shape != (size, size):
            arr = torch.nn.functional.interpolate(arr[None, None], size=(size, size), mode="area")[0, 0]
        out.append(arr)
        keep.append(i)
    if not out:
        raise BadInputError(root / "studies.parquet", f"no readable images (split {split!r})")
    return torch.stack(out), studies.iloc[keep].reset_index(drop=True)


def load_factors(ws: Workspace, dataset: str, studies: pd.DataFrame) -> pd.DataFrame:
    """The dataset's ``factors.parquet`` rows in the order of ``studies`` (by ``image_id``)."""

    factors = read_side_table(ws, dataset, "factors").set_index("image_id")
    missing = set(studies["image_id"]) - set(factors.index)
    if missing:
        raise BadInputError(ws.dataset(dataset) / "factors.parquet", f"{len(missing)} images have no factor row")
    return factors.loc[studies["image_id"].to_numpy()].reset_index()


def factor_matrix(factors: pd.DataFrame, names: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
    """Numeric ``(N, F)`` factor values and per-factor "discrete" flags (strings/bools → sorted category codes)."""
    cols, discrete = [], []
    for name in names:
        if name not in factors:
            raise BadInputError(None, f"unknown factor {name!r}; available: {', '.join(map(str, factors.columns))}")
        col = factors[name]
        if col.dtype.kind in "biufc":
            vals = col.to_numpy(np.float64)
            discrete.append(col.dtype.kind == "b" or (np.unique(vals).size <= 2))
        else:
            cats = sorted(col.astype(str).unique())
            vals = col.astype(str).map({c: i for i, c in enumerate(cats)}).to_numpy(np.float64)
            discrete.append(True)
        cols.append(vals)
    return np.stack(cols, 1), discrete


@dataclass
class Codes:
    """Latent codes of images: ``codes_ND`` rows aligned with ``image_ids``; ``names`` per column; ``maps`` = the
    unpooled ``(N, C, g, g)`` layout when the source has spatial latent maps (VAE runs)."""

    source: str
    codes_ND: np.ndarray
    image_ids: np.ndarray
    names: list[str]
    maps_NCgg: np.ndarray | None = None


def upstream_of(
    ws: Workspace,
    *,
    dataset: str | None = None,
    sources: Sequence[str] = (),
    vae: str = "",
    lt_vit: str = "",
    interpret: str = "",
) -> dict[str, str]:
    """The artefacts an analysis reads, with their identities (for :func:`cxrlens.workspace.stage_hash`): its
    dataset, every latent source / model spec (``vae:…``, ``activations:…``, ``sae:…``, ``lt-vit:…``, ``qa:…``)
    and the named VAE / LT-ViT / interpretation runs. A rebuilt input under the same name then redoes the analysis."""

    paths = [ws.dataset(dataset)] if dataset else []
    for spec in sources:
        kind, _, rest = spec.partition(":")
        parts = rest.split(":")
        if kind == "vae":
            paths.append(ws.analysis(parts[0]))
        elif kind == "lt-vit":
            paths.append(ws.lt_vit(parts[0]))
        elif kind == "activations":
            paths.append(ws.activations(parts[0]))
        elif kind == "qa":
            paths.append(ws.qa(parts[0]))
        elif kind == "sae" and len(parts) >= 2:
            paths += [ws.sae(parts[0]), ws.activations(parts[1])]
    paths += [ws.analysis(vae)] if vae else []
    paths += [ws.lt_vit(lt_vit)] if lt_vit else []
    paths += [ws.interpret(interpret)] if interpret else []
    return {str(p.relative_to(ws.root)): artefact_identity(p) for p in paths}


def load_codes(ws: Workspace, source: str, dataset: str | None = None) -> Codes:
    """Codes from a latent source spec (see the module docstring); ``dataset`` is needed by ``lt-vit:`` sources."""
    kind, _, rest = source.partition(":")
    if kind == "lt-vit":
        if dataset is None:
            raise BadInputError(None, f"latent source {source!r} needs a dataset to encode")
        return _ltvit_codes(ws, source, rest, dataset)
    if kind == "vae":
        path = ws.analysis(rest) / "latents.parquet"
        if not path.exists():
            raise BadInputError(path, f"no VAE latents: run `cxrlens analyze train-vae --run {rest}` first")
        table = pd.read_parquet(path)
        cols = [c for c in table.columns if c.startswith("z")]
        codes = table[cols].to_numpy(np.float32)
        c_max = max(int(c[1:].split("_")[0]) for c in cols) + 1
        g = round((len(cols) / c_max) ** 0.5)
        maps = codes.reshape(len(codes), c_max, g, g)
        return Codes(
            source,
            maps.mean((2, 3)) if g > 1 else codes,
            table["image_id"].to_numpy(),
            [f"z{c}" for c in range(c_max)],
            maps,
        )
    if kind == "activations":
        run, _, stream = rest.partition(":")
        return _store_codes(ws, source, run, stream, sae_run=None)
    if kind == "sae":
        sae_run, _, tail = rest.partition(":")
        run, _, stream = tail.partition(":")
        return _store_codes(ws, source, run, stream, sae_run=sae_run)
    raise BadInputError(
        None, f"latent source {source!r}: expected vae:<run>, activations:<run>:<stream>, sae:… or lt-vit:<run>"
    )


@torch.no_grad()
def _ltvit_codes(ws: Workspace, source: str, run: str, dataset: str, batch_size: int = 64) -> Codes:

    model = load_run_models(ws, run)["label-tokens"].eval()
    images, studies = load_images(ws, dataset, int(model.cfg.image_size))
    pre = model.cfg.input_preprocessor()
    feats = [
        model(pre(images[i : i + batch_size])).tokens[:, : model.n_img].mean(1)
        for i in range(0, len(images), batch_size)
    ]
    codes = torch.cat(feats).numpy()
    return Codes(source, codes, studies["image_id"].to_numpy(), [f"dim{i}" for i in range(codes.shape[1])])


def _store_codes(ws: Workspace, source: str, run: str, stream: str, sae_run: str | None) -> Codes:

    store = ActivationStore(ws.activations(run))
    if stream not in store.stream_names():
        raise BadInputError(ws.activations(run), f"no stream {stream!r}; streams: {', '.join(store.stream_names())}")
    acts = store.read(stream)
    info = store.info(stream)
    if sae_run is not None:
        acts = _sae_encode(ws, sae_run, acts)
    if info.tokens_per_image > 1:
        acts = acts.view(-1, info.tokens_per_image, acts.shape[-1]).mean(1)
    index = pd.read_parquet(ws.activations(run) / "index.parquet").sort_values("row")
    prefix = "code" if sae_run is not None else "dim"
    names = [f"{prefix}{i}" for i in range(acts.shape[1])]
    return Codes(source, acts.numpy(), index["image_id"].to_numpy(), names)


def _sae_encode(ws: Workspace, sae_run: str, acts_ND: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:

    sae = load_sae(ws.sae(sae_run))
    with torch.no_grad():
        return torch.cat([sae.encode(acts_ND[i : i + batch_size]) for i in range(0, len(acts_ND), batch_size)])
