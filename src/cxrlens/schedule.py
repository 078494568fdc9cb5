"""The learning-rate schedule the trainers share: linear warm-up, then cosine decay.

A pure function of the step, so a resumed run sets exactly the rate an uninterrupted one would have.
"""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(step: int, *, lr: float, steps: int, warmup_steps: int = 0, min_lr: float = 0.0) -> float:
    """Learning rate of optimiser step ``step`` (0-based): ``lr · (step + 1) / warmup_steps`` during the warm-up,
    then a cosine from ``lr`` down to ``min_lr`` at ``steps`` (held there after)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    t = min((step - warmup_steps) / max(steps - warmup_steps, 1), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))
