"""TensorBoard scalars beside metrics.jsonl when `tensorboard` is installed (metrics.jsonl stays
the record: a resume rewrites it, TensorBoard's event files only grow)."""

from __future__ import annotations

import math


class Board:
    def __init__(self, writer):
        self.writer = writer

    @classmethod
    def open(cls, folder) -> Board | None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # no torch or no tensorboard: nothing to write
            return None
        return cls(SummaryWriter(str(folder)))

    def scalars(self, step: int, values: dict) -> None:
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.writer.close()
