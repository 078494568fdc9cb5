"""The shared warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import pytest

from cxrlens.schedule import warmup_cosine


def test_warmup_then_cosine_to_the_floor() -> None:
    lr = lambda s: warmup_cosine(s, lr=1.0, steps=110, warmup_steps=10, min_lr=0.1)  # noqa: E731
    assert lr(0) == pytest.approx(0.1) and lr(9) == pytest.approx(1.0)
    assert lr(60) == pytest.approx(0.55) and lr(110) == pytest.approx(0.1) and lr(500) == pytest.approx(0.1)
    assert all(lr(s) >= lr(s + 1) for s in range(10, 120))


def test_no_warmup_is_plain_cosine_to_zero() -> None:
    for s in (0, 7, 25, 40):
        assert warmup_cosine(s, lr=2.0, steps=40) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * s / 40)))
