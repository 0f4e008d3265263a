"""The learning rate of the paper's section 4.1: linear warm-up, then a half-cosine period."""

from __future__ import annotations

import math


def lr_at(step: int, base: float, total: int, warmup: int) -> float:
    """The learning rate for optimiser step `step` (0-based) of `total`.

    Warm-up rises linearly from base/warmup to base over the first `warmup` steps (Goyal et al.);
    the remaining steps follow half a cosine from base down to 0.
    """
    if step < warmup:
        return base * (step + 1) / warmup
    rest = max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(step - warmup, rest) / rest))


def default_warmup(total: int) -> int:
    """The paper warms up for 10 of 45 epochs; the same fraction of the steps."""
    return max(1, round(total * 10 / 45))
