"""Dataset indexes (folder-per-class or `path,label` lists) and the clip datasets built on them.

A dataset item is read by key, never by position in an iterator, and its randomness is seeded by
(seed, epoch, video): the same key gives the same clip in any worker, in any order, after a resume.
A video that cannot be read comes back as a `Skipped` record for the collate function to drop.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CsnError
from .decode import VideoError, read_frames
from .transforms import (
    ClipOptions,
    normalise,
    random_crop,
    scaled,
    train_indices,
    view_crops,
    view_indices,
)

log = logging.getLogger("csnspec.data")

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v"}


@dataclass
class VideoIndex:
    """Videos and their class indices; `skipped` maps names left out to the reason."""

    root: Path
    videos: list[tuple[str, int]]  # (path relative to root, class index)
    classes: list[str]
    skipped: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.videos)

    def path(self, i: int) -> Path:
        return self.root / self.videos[i][0]


def open_index(data, root=None, classes: list[str] | None = None) -> VideoIndex:
    """The index of `data`: a folder of class folders, or an annotation list (`path,label`).

    `classes` fixes the class list (e.g. the classes.json of a trained run); otherwise an
    annotation list uses the classes.json beside it when there is one, else the sorted names.
    """
    data = Path(data)
    if data.is_dir():
        return _index_folder(data, classes)
    if data.is_file():
        return _index_list(data, Path(root) if root else data.parent, classes)
    raise CsnError(
        "no such dataset (a folder of class folders or a `path,label` list)", filename=str(data)
    )


def _index_folder(root: Path, classes) -> VideoIndex:
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise CsnError("no class folders (expected root/<class>/<video>)", filename=str(root))
    classes = list(classes) if classes is not None else found
    lookup = {c: i for i, c in enumerate(classes)}
    index = VideoIndex(root, [], classes)
    for name in found:
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            rel = f"{name}/{f.name}"
            if name in lookup:
                index.videos.append((rel, lookup[name]))
            else:
                index.skipped[rel] = f"unknown label '{name}'"
    if not index.videos:
        raise CsnError(f"no videos ({', '.join(sorted(VIDEO_SUFFIXES))})", filename=str(root))
    return index


def _index_list(path: Path, root: Path, classes) -> VideoIndex:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or (n == 1 and line.lower() == "path,label"):
            continue
        name, sep, label = line.rpartition(",")
        if not sep or not name.strip() or not label.strip():
            raise CsnError(f"expected `path,label`, got '{line}'", filename=f"{path}:{n}")
        rows.append((name.strip(), label.strip()))
    if not rows:
        raise CsnError("no videos listed", filename=str(path))
    if classes is None:
        beside = path.parent / "classes.json"
        if beside.is_file():
            classes = json.loads(beside.read_text(encoding="utf-8"))
        elif all(label.isdigit() for _, label in rows):
            classes = [str(i) for i in range(max(int(label) for _, label in rows) + 1)]
        else:
            classes = sorted({label for _, label in rows if not label.isdigit()})
    classes = list(classes)
    lookup = {c: i for i, c in enumerate(classes)}
    index = VideoIndex(root, [], classes)
    for name, label in rows:
        k = lookup.get(label)
        if k is None and label.isdigit() and int(label) < len(classes):
            k = int(label)
        if k is None:
            index.skipped[name] = f"unknown label '{label}'"
        elif not (root / name).is_file():
            index.skipped[name] = "missing file"
        else:
            index.videos.append((name, k))
    for name, why in index.skipped.items():
        log.warning("skipping %s: %s", name, why)
    if not index.videos:
        raise CsnError(f"none of the {len(rows)} listed videos can be used", filename=str(path))
    return index


@dataclass(frozen=True)
class Skipped:
    """A video that could not be read, in place of its clip."""

    name: str
    reason: str


class TrainClips:
    """Training clips: key (epoch, video) -> (clip (3, T, H, W) float32, label) or Skipped."""

    def __init__(self, index: VideoIndex, opts: ClipOptions, seed: int):
        self.index, self.opts, self.seed = index, opts, seed

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key):
        epoch, i = key
        rng = np.random.default_rng([self.seed, epoch, i])
        o = self.opts
        short = int(rng.integers(o.scale_min, o.scale_max + 1))
        try:
            frames = read_frames(
                self.index.path(i),
                lambda n: train_indices(rng, n, o),
                lambda h, w: scaled(h, w, short),
            )
        except VideoError as err:
            return Skipped(self.index.videos[i][0], str(err))
        return normalise(random_crop(rng, frames, o), o), self.index.videos[i][1]


class EvalViews:
    """Test views of a video: key video -> (views (V, 3, T, H, W) float32, label) or Skipped.

    Views are ordered clip-major: clip 0 crops 0..crops-1, clip 1, ...
    """

    def __init__(self, index: VideoIndex, opts: ClipOptions):
        self.index, self.opts = index, opts

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        o = self.opts
        try:
            frames = read_frames(
                self.index.path(i),
                lambda n: view_indices(n, o),
                lambda h, w: scaled(h, w, o.test_scale),
            )
        except VideoError as err:
            return Skipped(self.index.videos[i][0], str(err))
        views = [
            normalise(crop, o)
            for clip in frames.reshape(o.clips, o.frames, *frames.shape[1:])
            for crop in view_crops(clip, o)
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
