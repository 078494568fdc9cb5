"""The common interface of every sparse autoencoder in cxrlens, and the sparse kernels the TopK family shares.

Every SAE is an ``nn.Module`` with parameters ``W_enc: (L, D)`` (one encoder row per latent), ``b_enc: (L,)``,
``W_dec: (L, D)`` (one dictionary atom per row) and ``b_dec: (D,)``, plus

* ``encode(x: (B, D)) -> codes: (B, L)`` and ``decode(codes: (B, L)) -> x_hat: (B, D)`` in the caller's units;
* ``forward(x) -> (x_hat, codes, aux)`` (``aux``: a dict of extra tensors, e.g. TopK indices);
* ``loss(x) -> dict`` of scalar terms: always ``loss`` (what the optimiser minimises), ``mse`` (mean squared error
  per element, in normalised units), ``l0`` (mean active latents per token), plus the family's own terms
  (``sparsity``, ``aux`` …).

**Input normalisation.** ``input_scale`` (a buffer, saved with the model) multiplies inputs so that
``E‖x·s‖² = D`` on the data it was fitted on (:meth:`SAE.fit_input_scale`); every internal computation and loss is
in these normalised units, and :meth:`SAE.decode` divides by ``s`` again, so callers see their own units.

**Dead latents.** ``tokens_since_fired: (L,)`` counts the training tokens since each latent was last active; it
lives in the model (so checkpoints resume exactly) and is updated by :meth:`SAE.loss` in training mode.

**Decoder norms.** Families whose method requires unit-norm atoms set ``unit_norm_decoder = True``; the trainer
then removes the gradient component parallel to each atom before the step and renormalises after it
(:meth:`SAE.project_decoder`).

**Scale invariance.** Scaling latent i's encoder row and every term in its pre-activation units (``b_enc,i``; the
gated ``b_mag,i``; the JumpReLU threshold; BatchTopK's global threshold) by ``1/c`` and its atom ``W_dec,i`` by
``c`` leaves the support and the reconstruction unchanged. No objective here may be lowered by that move, or
training would buy sparsity by shrinking codes and growing atoms. How each family holds to it:

============================  =====================================================  =========================
family                        sparsity term under the rescaling                      atoms
============================  =====================================================  =========================
relu                          ``λ Σ codes_i · ‖W_dec,i‖``: invariant                 free
topk, batchtopk, matryoshka   none; only a common c is a symmetry (the selection     unit norm
                              compares latents), and it leaves every term unchanged
jumprelu                      ``λ Σ H(z_i − θ_i)``: invariant (θ scales with z)      unit norm (fixes ε's units)
gated                         ``λ Σ ReLU(π_gate)_i · sg(‖W_dec,i‖)``: invariant      unit norm
hybrid                        switched measure of ``ReLU(π_gate)_i · ‖W_dec,i‖``     free or unit (switch)
============================  =====================================================  =========================

``tests/sae/test_invariance.py`` checks it for every family and every valid switch combination of the hybrid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OBJECTIVE_VERSION", "SAE", "SAEConfig", "gather_decode", "sparse_encode"]

# Bumped whenever a family's training objective changes without a config change (2: every sparsity penalty made
# invariant to the encoder-down / decoder-up rescaling). Folded into the training stage's skip hash, so an SAE
# trained under an older objective is retrained rather than silently reused.
OBJECTIVE_VERSION = 2


@dataclass(frozen=True)
class SAEConfig:
    """Architecture of one SAE (every family reads the fields it needs; the rest are ignored).

    Attributes:
        arch: registered family name (``relu``, ``topk``, ``batchtopk``, ``jumprelu``, ``gated``, ``matryoshka``,
            ``hybrid``); d_in: input width D; n_latents: dictionary size L.
        k: active latents per token (TopK family; BatchTopK: mean per token over the batch).
        aux_k: latents the AuxK loss may use to explain the residual; aux_coeff: its weight (0 disables).
        dead_tokens: a latent silent for this many training tokens counts as dead (AuxK and reporting).
        sparsity_coeff: weight of the sparsity term (ReLU L1, Gated/hybrid gate penalty, JumpReLU L0).
        jump_bandwidth: rectangle-kernel width ε of the JumpReLU straight-through estimators;
            jump_threshold_init: initial JumpReLU threshold (normalised units).
        matryoshka_prefixes: nested prefix sizes (ascending, last = n_latents; empty = L/16, L/4, L).
        hybrid_*: the SAE-Rad switches, see :mod:`cxrlens.sae.hybrid`. ``hybrid_decoder_sparsity=False`` needs
            ``hybrid_free_decoder=False`` (a penalty on the gate alone with free atoms can be lowered by rescaling).
    """

    arch: str = "topk"
    d_in: int = 768
    n_latents: int = 12288
    k: int = 32
    aux_k: int = 512
    aux_coeff: float = 1 / 32
    dead_tokens: int = 1_000_000
    sparsity_coeff: float = 5.0
    jump_bandwidth: float = 0.1
    jump_threshold_init: float = 1.0
    matryoshka_prefixes: tuple[int, ...] = ()
    hybrid_decoder_sparsity: bool = True
    hybrid_free_decoder: bool = True
    hybrid_sparsity_norm: str = "tanh"
    hybrid_tanh_scale: float = 4.0
    hybrid_aux_live_decoder: bool = True

    def __post_init__(self) -> None:
        if self.d_in < 1 or self.n_latents < 1:
            raise ValueError("d_in and n_latents must be ≥ 1")
        if not 1 <= self.k <= self.n_latents:
            raise ValueError(f"k must be in [1, n_latents], got {self.k}")
        if self.matryoshka_prefixes and (
            list(self.matryoshka_prefixes) != sorted(set(self.matryoshka_prefixes))
            or self.matryoshka_prefixes[-1] != self.n_latents
        ):
            raise ValueError("matryoshka_prefixes must be strictly ascending and end at n_latents")
        if self.hybrid_sparsity_norm not in ("l1", "tanh", "l0"):
            raise ValueError("hybrid_sparsity_norm must be l1, tanh or l0")
        if self.hybrid_tanh_scale <= 0:
            raise ValueError("hybrid_tanh_scale must be > 0")
        if self.arch == "hybrid" and self.hybrid_free_decoder and not self.hybrid_decoder_sparsity:
            raise ValueError(
                "hybrid_decoder_sparsity=false needs hybrid_free_decoder=false: a penalty on the gate alone with free "
                "atoms is lowered by shrinking the encoder and growing the atoms (same reconstruction, same L0)"
            )


class _SparseEncode(torch.autograd.Function):
    """Selected pre-activations ``x[rows] · W[cols] + b[cols]`` with a sparse backward (no dense ``(B, L)`` grad).

    Forward gathers values already computed densely; backward scatters ``grad`` into ``W`` and ``b`` with one
    sparse×dense product, ``O(nnz · D)`` instead of the ``O(B · L · D)`` of a dense matmul backward.
    """

    @staticmethod
    def forward(ctx, values, x_BD, W_LD, b_L, rows, cols):  # type: ignore[override]
        ctx.save_for_backward(x_BD, W_LD, rows, cols)
        return values.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x_BD, W_LD, rows, cols = ctx.saved_tensors
        L = W_LD.shape[0]
        g = grad.reshape(-1).to(x_BD.dtype)
        S = torch.sparse_coo_tensor(
            torch.stack([cols.reshape(-1), rows.reshape(-1)]), g, (L, x_BD.shape[0]), check_invariants=False
        )
        grad_W = torch.sparse.mm(S, x_BD) if ctx.needs_input_grad[2] else None
        grad_x = None
        if ctx.needs_input_grad[1]:  # Σ_j g[b, j] W[cols[b, j]]: a gather, fastest as an embedding bag
            if cols.dim() == 2:
                grad_x = F.embedding_bag(cols, W_LD, per_sample_weights=grad.to(W_LD.dtype), mode="sum")
            else:
                grad_x = torch.sparse.mm(S.t(), W_LD)
        grad_b = torch.zeros(L, dtype=g.dtype, device=g.device).index_add_(0, cols.reshape(-1), g)
        return None, grad_x, grad_W, grad_b, None, None


def sparse_encode(pre_BL: torch.Tensor, x_BD: torch.Tensor, W_LD: torch.Tensor, b_L: torch.Tensor, rows, cols):
    """Differentiable gather ``pre[rows, cols]`` whose gradient flows sparsely into ``W_LD`` and ``b_L``.

    ``pre_BL`` must equal ``x_BD @ W_LD.T + b_L`` (computed without grad); ``rows``/``cols`` index the selected
    entries (any shape, same shape). Returns the selected values with that shape.
    """
    values = pre_BL[rows, cols]
    if not (W_LD.requires_grad or b_L.requires_grad) or not torch.is_grad_enabled():
        return values
    return _SparseEncode.apply(values, x_BD, W_LD, b_L, rows, cols)


def gather_decode(values: torch.Tensor, cols: torch.Tensor, W_dec_LD: torch.Tensor, offsets=None) -> torch.Tensor:
    """``Σ_j values[j] · W_dec[cols[j]]`` per token: a gather of the active atoms instead of a dense matmul.

    ``values, cols: (B, K)`` (fixed K per token) or flat ``(nnz,)`` with ``offsets: (B,)`` (start of each token's
    entries, ascending). Returns ``(B, D)``.
    """
    if offsets is None:
        return F.embedding_bag(cols, W_dec_LD, per_sample_weights=values, mode="sum")
    return F.embedding_bag(cols, W_dec_LD, offsets, per_sample_weights=values, mode="sum")


class SAE(nn.Module):
    """Base class: parameters, normalisation, dense encode/decode, dead-latent tracking, the loss wrapper.

    Subclasses implement :meth:`_train_terms` (and override :meth:`encode_n` / :meth:`forward` when their
    inference path differs from ``ReLU(W_enc (x − b_dec) + b_enc)``).
    """

    unit_norm_decoder: bool = False

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, L = cfg.d_in, cfg.n_latents
        W = torch.randn(L, D)
        W = W / W.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W.clone())
        self.W_enc = nn.Parameter(W.clone())  # encoder initialised as the decoder's transpose
        self.b_enc = nn.Parameter(torch.zeros(L))
        self.b_dec = nn.Parameter(torch.zeros(D))
        self.register_buffer("input_scale", torch.ones(()))
        self.register_buffer("tokens_since_fired", torch.zeros(L, dtype=torch.int64))

    # ------------------------------------------------------------------ normalisation and initialisation
    @torch.no_grad()
    def fit_input_scale(self, x_ND: torch.Tensor) -> float:
        """Set ``input_scale`` so that ``E‖x·s‖² = D`` on ``x_ND`` (a sample of the training data)."""
        ms = x_ND.float().pow(2).sum(-1).mean().clamp_min(1e-12)
        self.input_scale.fill_(math.sqrt(self.cfg.d_in / float(ms)))
        return float(self.input_scale)

    @torch.no_grad()
    def init_b_dec(self, x_ND: torch.Tensor, method: str = "geometric_median") -> None:
        """Initialise ``b_dec`` at the geometric median (Weiszfeld) or mean of ``x_ND`` (normalised units)."""
        x = x_ND.float() * self.input_scale
        if method == "mean":
            self.b_dec.copy_(x.mean(0))
        elif method == "geometric_median":
            self.b_dec.copy_(geometric_median(x))
        elif method != "zeros":
            raise ValueError(f"unknown b_dec init {method!r}")

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.input_scale

    # ------------------------------------------------------------------ inference
    def pre_acts(self, x_n: torch.Tensor) -> torch.Tensor:
        """``(x_n − b_dec) W_encᵀ + b_enc``: (B, L) pre-activations of normalised inputs."""
        return torch.addmm(self.b_enc, x_n - self.b_dec, self.W_enc.t())

    def encode_n(self, x_n: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pre_acts(x_n))

    def decode_n(self, codes_BL: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b_dec, codes_BL, self.W_dec)

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, L)`` of inputs in the caller's units."""
        return self.encode_n(self.normalise(x_BD))

    def decode(self, codes_BL: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``(B, D)`` in the caller's units (normalisation undone)."""
        return self.decode_n(codes_BL) / self.input_scale

    def forward(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        codes = self.encode(x_BD)
        return self.decode(codes), codes, {}

    # ------------------------------------------------------------------ training
    def _train_terms(
        self, x_n: torch.Tensor, sparsity_scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(x_hat_n: (B, D), active: (B, L) bool or (nnz,) latent ids, extra loss terms) for normalised x."""
        raise NotImplementedError

    def loss(self, x_BD: torch.Tensor, sparsity_scale: float = 1.0) -> dict[str, torch.Tensor]:
        """Loss terms on a batch ``x_BD: (B, D)``; ``loss`` = Σ‖x − x̂‖²/B (normalised units) + the family's terms.

        ``sparsity_scale`` multiplies the sparsity coefficient (the trainer's warm-up). In training mode this also
        advances ``tokens_since_fired``.
        """
        x_n = self.normalise(x_BD.to(self.W_dec.dtype))
        x_hat, active, extra = self._train_terms(x_n, sparsity_scale)
        err = (x_hat - x_n).pow(2)
        recon = err.sum(-1).mean()
        with torch.no_grad():
            if active.dtype == torch.bool:
                fired = active.any(0)
                l0 = active.sum(-1).float().mean()
            else:
                fired = torch.zeros(self.cfg.n_latents, dtype=torch.bool, device=x_n.device)
                fired[active.reshape(-1)] = True
                l0 = torch.tensor(active.numel() / x_n.shape[0], device=x_n.device)
            if self.training:
                self.tokens_since_fired += x_n.shape[0]
                self.tokens_since_fired[fired] = 0
        total = recon + sum(v for k, v in extra.items() if not k.startswith("_"))
        out = {"loss": total, "mse": recon.detach() / self.cfg.d_in, "l0": l0}
        out.update({k.lstrip("_"): v.detach() for k, v in extra.items()})
        return out

    def dead_mask(self, window: int | None = None) -> torch.Tensor:
        """(L,) bool: latents silent for ≥ ``window`` training tokens (default ``cfg.dead_tokens``)."""
        return self.tokens_since_fired >= (self.cfg.dead_tokens if window is None else window)

    @torch.no_grad()
    def project_decoder(self) -> None:
        """Renormalise the atoms to unit norm (no-op unless the family requires it)."""
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Drop the gradient component along each (unit) atom so the step does not fight the renormalisation."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            W, G = self.W_dec, self.W_dec.grad
            G.addcmul_(torch.einsum("ld,ld->l", G, W)[:, None], W, value=-1.0)

    def decoder_norms(self) -> torch.Tensor:
        return self.W_dec.norm(dim=1)


@torch.no_grad()
def geometric_median(x_ND: torch.Tensor, iters: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising Σ‖x_i − m‖ (robust centre of the data), (D,)."""
    m = x_ND.mean(0)
    for _ in range(iters):
        w = 1.0 / (x_ND - m).norm(dim=1).clamp_min(1e-8)
        new = (w[:, None] * x_ND).sum(0) / w.sum()
        if (new - m).norm() <= tol * (m.norm() + 1e-12):
            return new
        m = new
    return m
