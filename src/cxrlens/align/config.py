"""The config of the contrastive image–report adapter (``cxrlens align train``)."""

from __future__ import annotations

import dataclasses

from cxrlens.errors import BadInputError

__all__ = ["AlignConfig"]


# ---------------------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class AlignConfig:
    """The contrastive adapter stage.

    Attributes:
        activations: activation store run name (``activations/<run>``).
        dataset: dataset whose reports pair with the images ("" = the store's own dataset).
        pooled_stream: pooled image stream ("" = the store's first ``…/cls``, else ``…/mean``).
        patch_stream: patch stream ("" = the ``…/patch`` stream of the pooled stream's layer if stored; "none" = off).
        patch_grid: patch tokens are average-pooled to at most ``patch_grid × patch_grid`` tokens (memory bound).
        adapter: ``mlp`` (pooled ⊕ mean patch → MLP) or ``attention`` (learned queries over pooled + patch tokens).
        embed_dim: shared embedding size. hidden_dim: adapter MLP width. queries: attention-pooling queries.
        text_hidden: width of the residual MLP in the text projection (0 = linear projection only).
        epochs, batch_size, lr, weight_decay: AdamW training; init_temperature: initial softmax temperature.
        sentence_weight: weight of the (image, sentence) loss (0 = reports only).
        hard_negatives: add polarity-flipped sentences as per-image hard negatives (an extra InfoNCE column, plus
            ``polarity_weight`` × the two-way loss ``softplus(−scale · (cos(img, own) − cos(img, twin)))``).
        max_sentences: at most this many (unique) sentences per report are used.
        seed: seeds initialisation, the epoch order and the sentence draws.
    """

    activations: str
    dataset: str = ""
    pooled_stream: str = ""
    patch_stream: str = ""
    patch_grid: int = 4
    adapter: str = "mlp"
    embed_dim: int = 128
    hidden_dim: int = 512
    text_hidden: int = 256
    queries: int = 4
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    init_temperature: float = 0.07
    sentence_weight: float = 1.0
    hard_negatives: bool = True
    polarity_weight: float = 1.0
    max_sentences: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.adapter not in ("mlp", "attention"):
            raise BadInputError(None, f"adapter must be mlp or attention, got {self.adapter!r}")
        if self.embed_dim < 2 or self.hidden_dim < 1 or self.batch_size < 2 or self.epochs < 1:
            raise BadInputError(None, "need embed_dim ≥ 2, hidden_dim ≥ 1, batch_size ≥ 2 and epochs ≥ 1")
        if not 0 < self.init_temperature < 1 or self.lr <= 0 or self.sentence_weight < 0:
            raise BadInputError(None, "need 0 < init_temperature < 1, lr > 0 and sentence_weight ≥ 0")
