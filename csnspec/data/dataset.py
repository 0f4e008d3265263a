"""Dataset indexes (`formats.open_dataset`) and the clip datasets built on them.

A dataset item is read by key, never by position in an iterator, and its randomness is seeded by
(seed, epoch, video): the same key gives the same clip in any worker, in any order, after a resume.
A video that cannot be read comes back as a `Skipped` record for the collate function to drop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .decode import Reader, VideoError, read_frames
from .formats import VideoIndex, open_dataset
from .transforms import (
    ClipOptions,
    decode_size,
    normalise,
    random_crop,
    scaled,
    train_indices,
    view_crops,
    view_indices,
)

log = logging.getLogger("csnspec.data")


def open_index(data, root=None, classes: list[str] | None = None, **kw) -> VideoIndex:
    """The index of `data` (see `open_dataset`, which this calls), its skipped entries logged."""
    index = open_dataset(data, root=root, classes=classes, **kw)
    for name, why in index.skipped.items():
        log.debug("skipping %s: %s", name, why)
    if index.skipped:
        log.warning(
            "%s: %d entries skipped (`csnspec data index` lists them)", data, len(index.skipped)
        )
    return index


@dataclass(frozen=True)
class Skipped:
    """A video that could not be read, in place of its clip."""

    name: str
    reason: str


class Sizes:
    """The reader's sizer for a shorter edge of `short` (`decode_size`), remembering the size of
    the video it was asked about: the frames are cropped as if scaled to `scaled()`."""

    def __init__(self, short: int):
        self.short, self.native = short, (short, short)

    def __call__(self, height: int, width: int) -> tuple[int, int]:
        self.native = (height, width)
        return decode_size(height, width, self.short)

    def scaled(self) -> tuple[int, int]:
        return scaled(*self.native, self.short)


class TrainClips:
    """Training clips: key (epoch, video) -> (clip (3, T, H, W) float32, label) or Skipped."""

    def __init__(
        self, index: VideoIndex, opts: ClipOptions, seed: int, reader: Reader = read_frames
    ):
        self.index, self.opts, self.seed, self.reader = index, opts, seed, reader

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key):
        epoch, i = key
        rng = np.random.default_rng([self.seed, epoch, i])
        o = self.opts
        short = int(rng.integers(o.scale_min, o.scale_max + 1))
        size = Sizes(short)
        try:
            frames = self.reader(self.index.path(i), lambda n: train_indices(rng, n, o), size)
        except VideoError as err:
            return Skipped(self.index.videos[i][0], str(err))
        clip = random_crop(rng, frames, o, size.scaled())
        return normalise(clip, o), self.index.videos[i][1]


class EvalViews:
    """Test views of a video: key video -> (views (V, 3, T, H, W) float32, label) or Skipped.

    Views are ordered clip-major: clip 0 crops 0..crops-1, clip 1, ...
    """

    def __init__(self, index: VideoIndex, opts: ClipOptions, reader: Reader = read_frames):
        self.index, self.opts, self.reader = index, opts, reader

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        o = self.opts
        size = Sizes(o.test_scale)
        try:
            frames = self.reader(self.index.path(i), lambda n: view_indices(n, o), size)
        except VideoError as err:
            return Skipped(self.index.videos[i][0], str(err))
        views = [
            normalise(crop, o)
            for clip in frames.reshape(o.clips, o.frames, *frames.shape[1:])
            for crop in view_crops(clip, o, size.scaled())
        ]
        return np.stack(views), self.index.videos[i][1]


@dataclass
class Batch:
    x: np.ndarray  # (B, 3, T, H, W) or (B, V, 3, T, H, W)
    y: np.ndarray  # (B,) int64
    skipped: list[Skipped]

    def __len__(self) -> int:
        return len(self.y)


def collate(items) -> Batch:
    """Stack the readable items; keep the unreadable ones' names for the run's summary."""
    good = [it for it in items if not isinstance(it, Skipped)]
    bad = [it for it in items if isinstance(it, Skipped)]
    if not good:
        return Batch(np.zeros((0,), np.float32), np.zeros((0,), np.int64), bad)
    return Batch(np.stack([g[0] for g in good]), np.array([g[1] for g in good], np.int64), bad)
