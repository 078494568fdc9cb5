"""An SAE run opened for reading codes: its model, activation store and stream (:class:`SAEContext`), and the SAE
codes of images — image-level (a patch stream's maximum over patches, with where it peaks) or per patch — plus the
report text and phantom truth of images. Shared by the interpretation, report and evaluation stages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from cxrlens.activations import ActivationStore
from cxrlens.data.phantom.spec import KIND_LABEL, KINDS
from cxrlens.data.reports import plain_report_text
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.errors import BadInputError
from cxrlens.sae.io import CONFIG_FILE, load_sae
from cxrlens.workspace import Workspace

__all__ = [
    "ImageCodes",
    "SAEContext",
    "StreamNames",
    "by_study",
    "encode_codes",
    "image_codes",
    "image_reports",
    "load_sae_context",
    "phantom_truth",
    "split_rows",
    "stream_parts",
    "token_code_maps",
]


def stream_parts(stream: str) -> tuple[str, str]:
    """``"block.2/patch"`` → ``("block.2", "patch")``: the layer and the token kind of a store's stream."""
    layer, _, token = stream.partition("/")
    return layer, token


class StreamNames:
    """``layer`` and ``token`` of a class with a ``stream`` attribute (``"<layer>/<token>"``)."""

    stream: str

    @property
    def layer(self) -> str:
        return stream_parts(self.stream)[0]

    @property
    def token(self) -> str:
        return stream_parts(self.stream)[1]


@dataclass
class SAEContext(StreamNames):
    """An SAE with the store and stream it was trained on, and the dataset behind the store.

    Attributes:
        sae: the model (eval mode, CPU); store: :class:`~cxrlens.activations.ActivationStore`;
        stream: ``"<layer>/<token>"`` (one token per image — CLS, mean — or the patch tokens, see
        :func:`image_codes`); dataset: dataset name; backbone: backbone spec of the store;
        index: (n_images,) table ``image_row, study_id, image_id, split`` of the store's images.
    """

    sae: Any
    sae_run: str
    store: Any
    activations: str
    stream: str
    dataset: str
    backbone: str
    index: pd.DataFrame

    @property
    def tokens_per_image(self) -> int:
        return int(self.store.info(self.stream).tokens_per_image)


def load_sae_context(ws: Workspace, sae_run: str, activations: str = "") -> SAEContext:
    """Open ``saes/<sae_run>`` and the activation store it was trained on (or ``activations``, another store with
    the same stream, e.g. the same backbone on another dataset); one clear error for each gap."""

    sae_dir = ws.sae(sae_run)
    if not (sae_dir / CONFIG_FILE).exists():
        raise BadInputError(sae_dir, "SAE run not found; train one with `cxrlens sae train`")
    header = json.loads((sae_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    trained_on, stream = header.get("activations"), header.get("stream")
    activations = activations or trained_on
    if not activations or not stream:
        raise BadInputError(sae_dir / CONFIG_FILE, "no activation store recorded (train with `cxrlens sae train`)")
    store = ActivationStore(ws.activations(activations))
    if stream not in store.stream_names:
        raise BadInputError(store.path, f"stream {stream!r} of SAE {sae_run!r} is not in the store")
    sae = load_sae(sae_dir)
    if store.info(stream).dim != sae.cfg.d_in:
        raise BadInputError(
            store.path, f"stream {stream!r} is {store.info(stream).dim}-d; SAE {sae_run!r} reads another"
        )
    meta = {**store.manifest.extra, **store.manifest.config}  # array stores keep dataset/backbone in extra
    missing = [c for c in ("study_id", "image_id", "split") if c not in store.index.columns]
    if missing:
        raise BadInputError(store.path, f"the store's index lacks {', '.join(missing)}")
    index = store.index[["study_id", "image_id", "split"]].reset_index(drop=True)
    index.insert(0, "image_row", np.arange(len(index)))
    dataset, backbone = str(meta.get("dataset") or ""), str(meta.get("backbone") or "")
    return SAEContext(sae, sae_run, store, activations, stream, dataset, backbone, index)


@torch.no_grad()
def encode_codes(sae: Any, acts_ND: torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    """(N, n_latents) float32 SAE codes of activations ``acts_ND: (N, D)``."""
    out = [sae.encode(acts_ND[i : i + batch_size].float()).numpy() for i in range(0, len(acts_ND), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, sae.cfg.n_latents), np.float32)


@dataclass(frozen=True)
class ImageCodes:
    """Image-level SAE codes of a store's images.

    Attributes:
        codes_NF: (N, F) float32 — the SAE code of the image's token for one-token streams (CLS, mean); for patch
            streams the **maximum over the image's patch tokens** (a feature is as active as its strongest patch).
        peak_NF: (N, F) int16 token index (row-major on ``grid``) of that maximum; None for one-token streams.
        grid: (h, w) patch grid of a patch stream, else None.
    """

    codes_NF: np.ndarray
    peak_NF: np.ndarray | None
    grid: tuple[int, int] | None


@torch.no_grad()
def image_codes(
    sae: Any, store: Any, stream: str, image_rows: np.ndarray | None = None, batch_images: int = 256
) -> ImageCodes:
    """SAE codes per image of ``stream`` for ``image_rows`` (default: every image), see :class:`ImageCodes`."""
    n_img = len(store)
    rows = np.arange(n_img) if image_rows is None else np.asarray(image_rows, np.int64)
    T = int(store.info(stream).tokens_per_image)
    if T == 1:
        acts = store.read(stream) if image_rows is None else store.get(stream, rows)
        return ImageCodes(encode_codes(sae, acts), None, None)
    codes = np.zeros((len(rows), sae.cfg.n_latents), np.float32)
    peak = np.zeros((len(rows), sae.cfg.n_latents), np.int16)
    for s in range(0, len(rows), batch_images):
        img = rows[s : s + batch_images]
        tok = (img[:, None] * T + np.arange(T)[None, :]).reshape(-1)
        c = torch.from_numpy(encode_codes(sae, store.get(stream, tok))).reshape(len(img), T, -1)
        v, a = c.max(1)
        codes[s : s + len(img)], peak[s : s + len(img)] = v.numpy(), a.numpy().astype(np.int16)
    grid = tuple(int(g) for g in store.grid) if store.grid is not None else (T, 1)
    return ImageCodes(codes, peak, grid)  # type: ignore[arg-type]


@torch.no_grad()
def token_code_maps(sae: Any, store: Any, stream: str, image_row: int) -> np.ndarray:
    """(T, F) SAE codes of every token of one image of a patch stream (row-major on the store's grid)."""
    T = int(store.info(stream).tokens_per_image)
    return encode_codes(sae, store.get(stream, np.arange(image_row * T, (image_row + 1) * T)))


def image_reports(studies: pd.DataFrame, image_ids: Any) -> list[str]:
    """The report text (findings, then impression) of each image id, in order ("" where none)."""

    table = studies.drop_duplicates("image_id").set_index("image_id")
    parts = [table[c].reindex(list(image_ids)).tolist() for c in ("findings", "impression")]
    return [plain_report_text(f, i) for f, i in zip(*parts, strict=True)]


def phantom_truth(ws: Workspace, dataset: str, image_ids: Any) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """On a phantom dataset: (kinds, labels) rendered ground truth per image id, else None.

    ``kinds``: (n, n_kinds) {0, 1} per finding kind (``<kind>.present``); ``labels``: (n, 13) {0, 1} per CheXpert
    label (a label is present when any kind mapping to it was drawn; "No Finding" is left out).
    """

    path = ws.dataset(dataset) / "factors.parquet"
    if not path.exists():
        return None
    factors = pd.read_parquet(path).drop_duplicates("image_id").set_index("image_id").reindex(list(image_ids))
    kinds = pd.DataFrame(
        {k: factors[f"{k}.present"].fillna(0).to_numpy(dtype=float) > 0 for k in KINDS if f"{k}.present" in factors},
    ).astype(float)
    labels = pd.DataFrame(
        {
            lab: kinds[[k for k in kinds.columns if KIND_LABEL[k] == lab]].max(axis=1).to_numpy()
            for lab in CHEXPERT_LABELS[1:]
            if any(KIND_LABEL[k] == lab for k in kinds.columns)
        }
    )
    return kinds, labels


def split_rows(index: pd.DataFrame, split: str) -> np.ndarray:
    rows = np.arange(len(index)) if split == "all" else np.flatnonzero(index["split"].astype(str).to_numpy() == split)
    return rows


def by_study(codes_NF: np.ndarray, study_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Study-level codes: (n_studies, F) maximum over each study's images, and (n_studies,) the row of each study's
    first image. Images of one study share one report, so reports are counted once per study, not per image."""
    uniq, first, inv = np.unique(np.asarray(study_ids).astype(str), return_index=True, return_inverse=True)
    out = np.zeros((len(uniq), codes_NF.shape[1]), np.float32)
    np.maximum.at(out, inv, np.asarray(codes_NF, np.float32))
    order = np.argsort(first, kind="stable")  # keep the store's order of first appearance
    return out[order], first[order]
