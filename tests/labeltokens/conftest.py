"""A tiny synthetic set for the label-token ViT: bright discs whose position defines the label, with exact masks."""

from __future__ import annotations

import torch

from cxrlens.labeltokens.train import LabelData

SYN_LABELS = ("disc-upper-left", "disc-lower-right", "bar")


def disc_data(n: int, size: int = 32, seed: int = 0) -> LabelData:
    """``n`` images (size × size) of noise; each label present with p = 0.5, independently.

    ``disc-upper-left``: a bright disc (radius size/8) centred in the upper-left quadrant; ``disc-lower-right``: the
    same in the lower-right quadrant; ``bar``: a bright horizontal bar (size/2 × 3 px) anywhere. Masks are the
    drawn pixels.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = 0.35 + 0.08 * torch.randn(n, size, size, generator=g)
    labels = (torch.rand(n, 3, generator=g) < 0.5).float()
    masks = torch.zeros(n, 3, size, size, dtype=torch.bool)
    r = size / 8
    q = size // 2
    for i in range(n):
        for j, (lo_y, lo_x) in enumerate([(0, 0), (q, q)]):
            if labels[i, j]:
                cy = lo_y + r + torch.rand(1, generator=g).item() * (q - 2 * r)
                cx = lo_x + r + torch.rand(1, generator=g).item() * (q - 2 * r)
                masks[i, j] = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if labels[i, 2]:
            y0 = int(torch.randint(0, size - 3, (1,), generator=g))
            x0 = int(torch.randint(0, size - q, (1,), generator=g))
            masks[i, 2, y0 : y0 + 3, x0 : x0 + q] = True
    images = torch.where(masks.any(1), images + 0.45, images).clamp(0, 1)
    return LabelData(images, labels, SYN_LABELS, masks)
