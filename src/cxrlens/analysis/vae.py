"""Models to analyse: a convolutional autoencoder with spatial latent maps, a β-VAE and a FactorVAE.

All three share one encoder/decoder pair over grey images ``(N, 1, S, S)`` in [0, 1] (``S`` a power of two ≥ 16):

* the latent is ``(C, g, g)``: ``latent_grid = g ≥ 4`` gives spatial latent maps (a 1×1 conv head on the
  ``g × g`` feature grid); ``g = 1`` gives a vector latent (a fully connected head on the 4×4 grid);
* ``ae``: deterministic code, loss = reconstruction; ``beta-vae`` (Higgins et al. 2017): Gaussian posterior, loss =
  reconstruction + β·KL(q(z|x) ‖ N(0, I)); ``factor-vae`` (Kim & Mnih 2018): reconstruction + KL + γ·TC, where the
  total correlation is estimated by a discriminator ``D`` trained to tell ``z ~ q(z)`` from ``z`` with every latent
  dim permuted independently across a second batch (an approximate sample of ``∏_j q(z_j)``), ``TC ≈ E[log D/(1-D)]``
  (the logit difference of the two classes);
* reconstruction = Bernoulli log-likelihood (binary cross-entropy with logits) summed over pixels, mean over images.

Training is deterministic for a config: batch ``t`` and its reparameterisation noise come from generators seeded by
``(seed, t)``, so a run resumed from a checkpoint continues exactly as an uninterrupted one. Checkpoints are
safetensors (model, discriminator, optimiser states) with a JSON header (schema, config, step, loss history).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save
from torch import nn
from torch.nn import functional as F

from cxrlens import __version__
from cxrlens.checkpoint import read_checkpoint
from cxrlens.config import config_from_dict, config_to_dict
from cxrlens.errors import BadInputError
from cxrlens.figures import image_grid
from cxrlens.files import atomic_write_bytes

__all__ = [
    "KINDS",
    "ConvVAE",
    "TrainedVAE",
    "VAEConfig",
    "decode",
    "encode",
    "latent_activity",
    "load_vae",
    "save_vae",
    "train_vae",
    "traversal_grid",
]

KINDS = ("ae", "beta-vae", "factor-vae")
CHECKPOINT_SCHEMA = 1


@dataclass(frozen=True)
class VAEConfig:
    """Model and training settings.

    Attributes:
        kind: ``ae``, ``beta-vae`` or ``factor-vae``.
        image_size: S (images are resized to S×S); latent_channels: C; latent_grid: g (1 = vector latent).
        width: channels of the conv layers.
        beta: KL weight of the β-VAE (the FactorVAE uses 1); gamma: FactorVAE TC weight.
        lr: Adam learning rate of the autoencoder; disc_lr: of the FactorVAE discriminator (Adam β = 0.5, 0.9).
        batch_size, steps: training length; checkpoint_every: steps between checkpoints (0 = only at the end).
        seed: initialisation, batches and noise.
    """

    kind: str = "beta-vae"
    image_size: int = 64
    latent_channels: int = 10
    latent_grid: int = 1
    width: int = 32
    beta: float = 4.0
    gamma: float = 10.0
    lr: float = 1e-3
    disc_lr: float = 1e-4
    batch_size: int = 64
    steps: int = 2000
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        s = self.image_size
        if s < 16 or s & (s - 1):
            raise ValueError(f"image_size must be a power of two ≥ 16, got {s}")
        g = self.latent_grid
        if not (g == 1 or (g >= 4 and not g & (g - 1) and g <= s // 2)):
            raise ValueError(f"latent_grid must be 1 or a power of two in [4, image_size/2], got {g}")

    @property
    def variational(self) -> bool:
        return self.kind != "ae"


# -------------------------------------------------------------------------------------------------------- model
class ConvVAE(nn.Module):
    """Encoder ``(N, 1, S, S) → (N, C, g, g)`` (means and log-variances for the VAEs), decoder back to logits."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, c, g = cfg.width, cfg.latent_channels, cfg.latent_grid
        base = max(g, 4)
        n_down = int(math.log2(cfg.image_size // base))
        enc: list[nn.Module] = []
        ch = 1
        for i in range(n_down):
            out = w if i < 2 else 2 * w
            enc += [nn.Conv2d(ch, out, 4, stride=2, padding=1), nn.ReLU()]
            ch = out
        self.encoder = nn.Sequential(*enc)
        n_out = 2 * c if cfg.variational else c
        if g == 1:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(ch * 16, 256), nn.ReLU(), nn.Linear(256, n_out))
            self.unhead = nn.Sequential(nn.Linear(c, 256), nn.ReLU(), nn.Linear(256, ch * 16), nn.ReLU())
        else:
            self.head = nn.Conv2d(ch, n_out, 1)
            self.unhead = nn.Sequential(nn.Conv2d(c, ch, 1), nn.ReLU())
        self._ch = ch
        dec: list[nn.Module] = []
        for i in reversed(range(n_down)):  # the two largest maps get w/2 channels: most of the CPU time is there
            out = 1 if i == 0 else (w // 2 if i == 1 else (w if i == 2 else 2 * w))
            dec.append(nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1))
            if i:
                dec.append(nn.ReLU())
            ch = out
        self.decoder = nn.Sequential(*dec)

    def encode_params(self, x_N1SS: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mu, logvar)`` each ``(N, C, g, g)``; ``logvar`` is ``None`` for the plain autoencoder."""
        c, g = self.cfg.latent_channels, self.cfg.latent_grid
        h = self.head(self.encoder(x_N1SS))
        h = h.view(len(x_N1SS), -1, g, g)
        if not self.cfg.variational:
            return h, None
        return h[:, :c], h[:, c:].clamp(-12, 8)

    def decode_logits(self, z_NCgg: torch.Tensor) -> torch.Tensor:
        """Latent ``(N, C, g, g)`` → image logits ``(N, 1, S, S)``."""
        if self.cfg.latent_grid == 1:
            h = self.unhead(z_NCgg.flatten(1)).view(len(z_NCgg), self._ch, 4, 4)
        else:
            h = self.unhead(z_NCgg)
        return self.decoder(h)


class Discriminator(nn.Module):
    """FactorVAE discriminator: flattened latent ``(N, C·g·g)`` → 2 logits (0 = from q(z), 1 = permuted)."""

    def __init__(self, dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 2),
        )

    def forward(self, z_ND: torch.Tensor) -> torch.Tensor:
        return self.net(z_ND)


def permute_dims(z_ND: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each column shuffled independently across the batch: a sample of the product of the marginals."""
    idx = torch.stack([torch.randperm(len(z_ND), generator=gen) for _ in range(z_ND.shape[1])], 1)
    return torch.gather(z_ND, 0, idx)


# ----------------------------------------------------------------------------------------------------- training
@dataclass
class TrainedVAE:
    """A trained model (eval mode), its config and the per-step loss history (dicts of floats)."""

    model: ConvVAE
    cfg: VAEConfig
    history: list[dict[str, float]] = field(default_factory=list)
    discriminator: Discriminator | None = None


def _batch(step: int, n: int, cfg: VAEConfig, offset: int = 0) -> tuple[torch.Tensor, torch.Generator]:
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 2 * step + offset)
    return torch.randint(0, n, (cfg.batch_size,), generator=gen), gen


def _losses(
    model: ConvVAE, disc: Discriminator | None, x: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    cfg = model.cfg
    mu, logvar = model.encode_params(x)
    if logvar is None:
        z = mu
        kl = torch.zeros(())
    else:
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()
    recon = F.binary_cross_entropy_with_logits(model.decode_logits(z), x, reduction="none").flatten(1).sum(1).mean()
    stats = {"recon": recon.item(), "kl": kl.item()}
    if cfg.kind == "ae":
        loss = recon
    elif cfg.kind == "beta-vae":
        loss = recon + cfg.beta * kl
    else:
        assert disc is not None
        logits = disc(z.flatten(1))
        tc = (logits[:, 0] - logits[:, 1]).mean()
        loss = recon + kl + cfg.gamma * tc
        stats["tc"] = tc.item()
    stats["loss"] = loss.item()
    return loss, stats, z


def train_vae(
    images_NSS: torch.Tensor,
    cfg: VAEConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainedVAE:
    """Train on images ``(N, S, S)`` float in [0, 1] (``S = cfg.image_size``).

    With ``checkpoint_dir``, ``last.safetensors`` is written every ``checkpoint_every`` steps and training resumes
    from it when it exists (same config required). ``on_step(step, stats)`` is called after every step (progress).
    """
    if images_NSS.ndim != 3 or images_NSS.shape[1:] != (cfg.image_size, cfg.image_size):
        raise ValueError(f"images must be (N, {cfg.image_size}, {cfg.image_size}), got {tuple(images_NSS.shape)}")
    x_all = images_NSS.float().clamp(0, 1).unsqueeze(1)
    torch.manual_seed(cfg.seed)
    model = ConvVAE(cfg)
    disc = Discriminator(cfg.latent_channels * cfg.latent_grid**2) if cfg.kind == "factor-vae" else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    dopt = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9)) if disc is not None else None
    history: list[dict[str, float]] = []
    start = 0
    ckpt = Path(checkpoint_dir) / "last.safetensors" if checkpoint_dir is not None else None
    if ckpt is not None and ckpt.exists():
        start, history = _restore(ckpt, cfg, model, disc, opt, dopt)
    model.train()
    for step in range(start, cfg.steps):
        idx, gen = _batch(step, len(x_all), cfg)
        loss, stats, z = _losses(model, disc, x_all[idx], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if disc is not None and dopt is not None:
            idx2, gen2 = _batch(step, len(x_all), cfg, offset=1)
            with torch.no_grad():
                mu2, logvar2 = model.encode_params(x_all[idx2])
                z2 = mu2 + torch.exp(0.5 * logvar2) * torch.randn(mu2.shape, generator=gen2)  # type: ignore[operator]
                z_perm = permute_dims(z2.flatten(1), gen2)
            d_loss = 0.5 * (
                F.cross_entropy(disc(z.detach().flatten(1)), torch.zeros(len(z), dtype=torch.long))
                + F.cross_entropy(disc(z_perm), torch.ones(len(z_perm), dtype=torch.long))
            )
            dopt.zero_grad(set_to_none=True)
            d_loss.backward()
            dopt.step()
            stats["disc"] = d_loss.item()
        history.append(stats)
        if on_step is not None:
            on_step(step + 1, stats)
        done = step + 1
        if ckpt is not None and (done == cfg.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0)):
            _save(ckpt, cfg, model, disc, opt, dopt, done, history)
    return TrainedVAE(model.eval(), cfg, history, disc)


# -------------------------------------------------------------------------------------------------- checkpoints
def _header(cfg: VAEConfig, step: int, history: list[dict[str, float]]) -> dict[str, str]:

    head = {"schema": CHECKPOINT_SCHEMA, "package_version": __version__, "config": config_to_dict(cfg), "step": step}
    return {"cxrlens.vae": json.dumps(head, sort_keys=True), "history": json.dumps(history)}


def _save(
    path: Path,
    cfg: VAEConfig,
    model: ConvVAE,
    disc: Discriminator | None,
    opt: torch.optim.Optimizer | None,
    dopt: torch.optim.Optimizer | None,
    step: int,
    history: list[dict[str, float]],
) -> Path:

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    if disc is not None:
        tensors.update({f"disc.{k}": v.detach().contiguous() for k, v in disc.state_dict().items()})
    for prefix, o in (("opt", opt), ("dopt", dopt)):
        if o is None:
            continue
        for idx, st in o.state_dict()["state"].items():
            for key, val in st.items():
                tensors[f"{prefix}.{idx}.{key}"] = torch.as_tensor(val).detach().clone().contiguous()
    return atomic_write_bytes(path, save(tensors, metadata=_header(cfg, step, history)))


def _read(path: Path) -> tuple[dict[str, Any], list[dict[str, float]], dict[str, torch.Tensor]]:

    head, meta, tensors = read_checkpoint(path, key="cxrlens.vae", schema=CHECKPOINT_SCHEMA, kind="VAE")
    return head, json.loads(meta.get("history", "[]")), tensors


def _load_opt(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith(prefix + "."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def _restore(path, cfg, model, disc, opt, dopt) -> tuple[int, list[dict[str, float]]]:
    head, history, tensors = _read(path)
    if config_from_dict(VAEConfig, head["config"]) != cfg:
        raise BadInputError(path, "checkpoint was written by a different config; delete it or use that config")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if disc is not None:
        disc.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("disc.")})
    _load_opt(opt, tensors, "opt")
    if dopt is not None:
        _load_opt(dopt, tensors, "dopt")
    return int(head["step"]), history


def save_vae(trained: TrainedVAE, path: str | Path) -> Path:
    """The final model (no optimiser state) with its config and history."""
    return _save(
        Path(path), trained.cfg, trained.model, trained.discriminator, None, None, trained.cfg.steps, trained.history
    )


def load_vae(path: str | Path) -> TrainedVAE:
    """A model written by :func:`save_vae` or a training checkpoint, in eval mode."""
    head, history, tensors = _read(Path(path))
    cfg = config_from_dict(VAEConfig, head["config"])
    model = ConvVAE(cfg)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    return TrainedVAE(model.eval(), cfg, history)


# ------------------------------------------------------------------------------------------------ using a model
@torch.no_grad()
def encode(model: ConvVAE, images_NSS: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Posterior means (the code) ``(N, C, g, g)`` of images ``(N, S, S)``."""
    model.eval()
    x = images_NSS.float().unsqueeze(1)
    return torch.cat([model.encode_params(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)])


@torch.no_grad()
def decode(model: ConvVAE, z_NCgg: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Images ``(N, S, S)`` in [0, 1] (sigmoid of the decoder logits) of latents ``(N, C, g, g)``."""
    model.eval()
    out = [torch.sigmoid(model.decode_logits(z_NCgg[i : i + batch_size])) for i in range(0, len(z_NCgg), batch_size)]
    return torch.cat(out)[:, 0]


def latent_activity(mu_NCgg: torch.Tensor) -> np.ndarray:
    """Per latent channel: variance over images (and positions) of the code, ``(C,)``. A channel below 0.01 is
    inactive (Burda et al. 2016's active-unit criterion, applied to the posterior means)."""
    return mu_NCgg.transpose(0, 1).flatten(1).var(1).numpy()


def traversal_grid(
    model: ConvVAE,
    base_image_SS: torch.Tensor,
    mu_ref_NCgg: torch.Tensor,
    path: str | Path,
    *,
    n_values: int = 9,
    span: float = 2.5,
    max_rows: int = 10,
    title: str = "",
) -> Path:
    """Latent traversal PNG: one row per latent channel (most active first, inactive ones marked), columns vary that
    channel (every position of a map at once) over ``base ± span·std`` with std taken from ``mu_ref``."""

    base = encode(model, base_image_SS[None])[0]
    act = latent_activity(mu_ref_NCgg)
    std = np.sqrt(act)
    order = np.argsort(-act)[:max_rows]
    ts = np.linspace(-span, span, n_values)
    rows = []
    for c in order:
        z = base.repeat(n_values, 1, 1, 1)
        z[:, c] = base[c] + torch.tensor(ts * std[c], dtype=torch.float32)[:, None, None]
        rows.append(decode(model, z).numpy())
    labels = [f"z{c}{'' if act[c] >= 0.01 else ' (inactive)'}\nvar {act[c]:.2f}" for c in order]
    return image_grid(np.stack(rows), path, row_labels=labels, col_labels=[f"{t:+.1f}σ" for t in ts], title=title)
