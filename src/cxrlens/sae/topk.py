"""TopK (Gao et al. 2024) and BatchTopK (Bussmann et al. 2024) SAEs, with the AuxK loss for dead latents.

* **TopK**: ``codes = ReLU(TopK_k(W_enc (x − b_dec) + b_enc))`` per token; no sparsity penalty, L0 ≤ k by
  construction; unit-norm atoms.
* **BatchTopK**: in training the ``k · B`` largest pre-activations of the whole batch are kept (tokens may use more
  or fewer than k latents). A global threshold θ is learned as the running mean (momentum 0.01) of the smallest
  kept activation per batch; inference is ``codes = pre · 1[pre > θ]``, so a token's codes do not depend on the
  rest of its batch.
* **AuxK**: latents silent for ``cfg.dead_tokens`` training tokens are dead; the ``aux_k`` largest dead
  pre-activations must reconstruct the residual ``e = x − x̂`` (detached): ``aux = aux_coeff · ‖e − ê‖²``.
* **Scale invariance**: there is no sparsity penalty to game. The selection compares pre-activations across
  latents, so rescaling latents by different factors changes which ones win (it is not a reparametrisation); a
  common factor (encoder and ``b_enc`` × 1/c, BatchTopK's θ × 1/c, atoms × c) keeps the support, the reconstruction
  and every loss term. Atoms are unit-norm, as in both papers.

Speed (the point of this module on a CPU): the encoder pre-activations are one dense matmul computed without
autograd; only the selected ``B · k`` entries are re-attached to the graph (:func:`sparse_encode`, whose backward is
one sparse×dense product), and the decoder is a gather of k atoms per token (:func:`gather_decode`) instead of a
``(B, L) × (L, D)`` matmul. Per step that removes four of the five dense ``B·L·D`` products of a naïve TopK SAE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxrlens.sae.base import SAE, SAEConfig, gather_decode, sparse_encode

__all__ = ["BatchTopKSAE", "TopKSAE"]


class TopKSAE(SAE):
    unit_norm_decoder = True

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)

    # ------------------------------------------------------------------ selection (overridden by BatchTopK)
    def _select(self, pre_BL: torch.Tensor):
        """(rows, cols, offsets) of the kept entries; offsets is None for a fixed k per token."""
        _, cols = pre_BL.topk(self.cfg.k, dim=-1, sorted=False)
        rows = torch.arange(pre_BL.shape[0], device=pre_BL.device)[:, None].expand_as(cols)
        return rows, cols, None

    def _encode_sparse_n(self, x_n: torch.Tensor):
        x_in = x_n - self.b_dec
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, x_in, self.W_enc.t())
            rows, cols, offsets = self._select(pre)
        vals = F.relu(sparse_encode(pre, x_in, self.W_enc, self.b_enc, rows, cols))
        return pre, x_in, rows, cols, offsets, vals

    def encode_sparse(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, latent ids), each (B, k), of the per-token TopK codes (inference; no dense (B, L) tensor)."""
        _, _, _, cols, _, vals = self._encode_sparse_n(self.normalise(x_BD))
        return vals, cols

    def encode_n(self, x_n: torch.Tensor) -> torch.Tensor:
        _, _, rows, cols, _, vals = self._encode_sparse_n(x_n)
        codes = torch.zeros(x_n.shape[0], self.cfg.n_latents, dtype=vals.dtype, device=vals.device)
        return codes.index_put_((rows.reshape(-1), cols.reshape(-1)), vals.reshape(-1))

    def forward(self, x_BD: torch.Tensor):
        x_n = self.normalise(x_BD)
        _, _, rows, cols, offsets, vals = self._encode_sparse_n(x_n)
        x_hat = (gather_decode(vals, cols, self.W_dec, offsets) + self.b_dec) / self.input_scale
        codes = torch.zeros(x_n.shape[0], self.cfg.n_latents, dtype=vals.dtype, device=vals.device)
        codes = codes.index_put((rows.reshape(-1), cols.reshape(-1)), vals.reshape(-1))
        return x_hat, codes, {"values": vals, "indices": cols}

    # ------------------------------------------------------------------ training
    def _train_terms(self, x_n: torch.Tensor, sparsity_scale: float):
        pre, x_in, _, cols, offsets, vals = self._encode_sparse_n(x_n)
        x_hat = gather_decode(vals, cols, self.W_dec, offsets) + self.b_dec
        active = cols[vals.detach() > 0]
        extra = self._extra_terms(x_n, x_hat, vals, cols, offsets)
        extra["aux"] = self._auxk(pre, x_in, x_n, x_hat)
        return x_hat, active, extra

    def _extra_terms(self, x_n, x_hat, vals, cols, offsets) -> dict[str, torch.Tensor]:
        return {}

    def _auxk(self, pre, x_in, x_n, x_hat) -> torch.Tensor:
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        if self.cfg.aux_coeff <= 0 or n_dead == 0 or not self.training:
            return torch.zeros((), device=x_n.device)
        n_aux = min(self.cfg.aux_k, n_dead)
        with torch.no_grad():
            _, cols = pre.masked_fill(~dead, float("-inf")).topk(n_aux, dim=-1, sorted=False)
        rows = torch.arange(pre.shape[0], device=pre.device)[:, None].expand_as(cols)
        vals = F.relu(sparse_encode(pre, x_in, self.W_enc, self.b_enc, rows, cols))
        resid = (x_n - x_hat).detach()
        e_hat = gather_decode(vals, cols, self.W_dec)
        return self.cfg.aux_coeff * (resid - e_hat).pow(2).sum(-1).mean()


class BatchTopKSAE(TopKSAE):
    """BatchTopK: batch-level selection in training, a learned global threshold at inference."""

    threshold_momentum = 0.01

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("threshold", torch.full((), -1.0))  # < 0: not learned yet

    def _select(self, pre_BL: torch.Tensor):
        B, L = pre_BL.shape
        if self.training or float(self.threshold) < 0:
            if not self.training:  # untrained threshold: fall back to per-token TopK
                return super()._select(pre_BL)
            top_v, flat = pre_BL.reshape(-1).topk(self.cfg.k * B, sorted=False)
            keep = top_v > 0
            flat, top_v = flat[keep], top_v[keep]
            if len(top_v):
                m = float(top_v.min())
                t = float(self.threshold)
                self.threshold.fill_(m if t < 0 else (1 - self.threshold_momentum) * t + self.threshold_momentum * m)
        else:
            flat = torch.nonzero((pre_BL > self.threshold).reshape(-1)).reshape(-1)
        flat = flat.sort().values  # row-major: entries of each token are contiguous
        rows, cols = flat // L, flat % L
        offsets = torch.searchsorted(rows, torch.arange(B, device=rows.device))
        return rows, cols, offsets

    def encode_sparse(self, x_BD: torch.Tensor):
        raise NotImplementedError("BatchTopK codes have a variable count per token; use encode() or forward()")
