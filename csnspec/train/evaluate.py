"""Clip and video accuracy: every view scored on its own (clip top-k), and the softmax averaged
over a video's views (video top-k), as in the paper's testing protocol."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Scores:
    """Accumulates per-view class probabilities, video by video."""

    k: tuple[int, ...] = (1, 5)
    clip_hits: dict = field(default_factory=dict)
    video_hits: dict = field(default_factory=dict)
    clips: int = 0
    videos: int = 0

    def add(self, probs: np.ndarray, labels: np.ndarray) -> None:
        """probs (B, V, K) softmax per view; labels (B,)."""
        b, v, classes = probs.shape
        views = probs.reshape(b * v, classes)
        view_labels = np.repeat(labels, v)
        video = probs.mean(axis=1)
        for k in self.k:
            self.clip_hits[k] = self.clip_hits.get(k, 0) + _hits(views, view_labels, k)
            self.video_hits[k] = self.video_hits.get(k, 0) + _hits(video, labels, k)
        self.clips += b * v
        self.videos += b

    def result(self) -> dict:
        out = {"clips": self.clips, "videos": self.videos}
        for k in self.k:
            out[f"clip_top{k}"] = self.clip_hits.get(k, 0) / max(1, self.clips)
            out[f"video_top{k}"] = self.video_hits.get(k, 0) / max(1, self.videos)
        return out


def _hits(probs: np.ndarray, labels: np.ndarray, k: int) -> int:
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k] if k < probs.shape[1] else None
    if top is None:
        return len(labels)
    return int((top == labels[:, None]).any(axis=1).sum())


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def score_views(index, opts, predict, *, batch: int, workers: int, seen: dict, bar=None) -> dict:
    """Clip and video top-k of `predict` ((N, 3, T, H, W) -> logits) over the test views of
    every video in `index`; unreadable videos are noted in `seen` by name."""
    from ..data.dataset import EvalViews, collate
    from ..data.loader import threaded_batches
    from .run import note_skipped

    scores = Scores()
    chunks = [list(range(i, min(i + batch, len(index)))) for i in range(0, len(index), batch)]
    for got in threaded_batches(
        EvalViews(index, opts), chunks, max(1, workers), collate_fn=collate
    ):
        note_skipped(seen, got.skipped)
        if len(got):
            b, v = got.x.shape[:2]
            logits = predict(got.x.reshape(b * v, *got.x.shape[2:]))
            scores.add(softmax(logits.astype(np.float64)).reshape(b, v, -1), got.y)
        if bar is not None:
            bar.update(len(got) + len(got.skipped))
    return scores.result()
