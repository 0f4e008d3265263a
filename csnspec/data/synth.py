"""Synthetic motion videos: the class is how objects move, never how a frame looks.

Every video has the same kind of cluttered, randomly coloured static background and a few
randomly coloured squares; only their common velocity (direction and speed) depends on the
class (see `motions`).
A single frame carries no information about the class.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CsnError

# Directions a horizontal flip maps onto themselves: sideways videos go left or right at
# random, so flip augmentation keeps every label.
DIRECTIONS = ("up", "down", "sideways")
STEP = {"up": (-1, 0), "down": (1, 0), "sideways": (0, 1)}


@dataclass(frozen=True)
class Motion:
    name: str
    direction: str
    speed: float  # pixels per frame, at the video's own size


def motions(classes: int, size: int) -> list[Motion]:
    """The `classes` motion patterns for videos `size` pixels wide: the three directions at
    speeds from slow to fast (6 classes: 0.5 and 1.25 pixels per frame at size 40, so that a
    clip taking every other frame moves at most 2.5 pixels a step: within a small kernel)."""
    if classes < 2:
        raise CsnError("synthetic data needs at least 2 classes")
    tiers = math.ceil(classes / len(DIRECTIONS))
    if tiers == 1:
        speeds = [1.0]
    else:
        speeds = np.geomspace(0.5, 1.25 + 0.5 * (tiers - 2), tiers).tolist()
    names = ["slow", "fast"] if tiers == 2 else [f"s{i + 1}" for i in range(tiers)]
    out = []
    for k in range(classes):
        tier, d = divmod(k, len(DIRECTIONS))
        speed = round(speeds[tier] * size / 40, 3)
        out.append(Motion(f"{DIRECTIONS[d]}-{names[tier]}", DIRECTIONS[d], speed))
    return out


def render(rng: np.random.Generator, motion: Motion, frames: int, size: int) -> np.ndarray:
    """One video as a (frames, size, size, 3) uint8 array."""
    # Background: a coarse grid of random colours plus random rectangles (clutter).
    cells = rng.integers(0, 256, (size // 4 + 1, size // 4 + 1, 3), dtype=np.uint8)
    bg = np.repeat(np.repeat(cells, 4, 0), 4, 1)[:size, :size].copy()
    for _ in range(6):
        h, w = rng.integers(2, size // 3, 2)
        y, x = rng.integers(0, size, 2)
        bg[y : y + h, x : x + w] = rng.integers(0, 256, 3)
    # Foreground: squares on a layer that wraps around, so objects never leave the view.
    layer = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), bool)
    # Many objects (about 40% of the frame): motion, not a few pixels, dominates the clip.
    side = max(3, round(size * 0.15))
    for _ in range(18):
        y, x = rng.integers(0, size, 2)
        ys, xs = (np.arange(y, y + side) % size), (np.arange(x, x + side) % size)
        layer[np.ix_(ys, xs)] = rng.integers(0, 256, 3)
        mask[np.ix_(ys, xs)] = True
    dy, dx = STEP.get(motion.direction, (0, 0))
    vy, vx = dy * motion.speed, dx * motion.speed * (1 if rng.random() < 0.5 else -1)
    phase = rng.random(2)
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        dy, dx = round(vy * t + phase[0]), round(vx * t + phase[1])
        m = np.roll(mask, (dy, dx), (0, 1))
        out[t] = np.where(m[..., None], np.roll(layer, (dy, dx), (0, 1)), bg)
    return out


def write_mp4(path, video: np.ndarray, fps: int = 15) -> None:
    """Encode frames with PyAV's mpeg4 codec (always built into FFmpeg, deterministic)."""
    _encode(path, video, fps, "mp4", "mpeg4")


def write_webm(path, video: np.ndarray, fps: int = 15) -> None:
    """Encode frames as VP8 in WebM (Something-Something v2's container)."""
    _encode(path, video, fps, "webm", "libvpx")


def _encode(path, video: np.ndarray, fps: int, container_format: str, codec: str) -> None:
    import av

    from ..atomic import write_bytes

    encoded = io.BytesIO()  # muxed in memory, then written by the one atomic writer
    height, width = video.shape[1:3]
    with av.open(encoded, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 4_000_000  # near-lossless at these sizes
        stream.codec_context.thread_count = 1  # identical bytes for a seed
        for frame in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    write_bytes(path, encoded.getvalue())


def synthesize(
    out,
    classes: int = 6,
    videos: int = 20,
    frames: int = 24,
    size: int = 40,
    seed: int = 0,
    test_fraction: float = 0.25,
    fps: int = 15,
    layout: str = "folders",
) -> dict:
    """Write `videos` videos per class and the lists of a train and a test split in `layout`
    (see `layouts.LAYOUTS`; by default mp4 files under `out/<class>/`, train.csv, test.csv and
    classes.json); return a summary. The same arguments always give the same videos, whatever
    the layout."""
    from .layouts import LAYOUTS, video_path, write_lists

    if layout not in LAYOUTS:
        raise CsnError(f"--layout must be one of {', '.join(LAYOUTS)} (got '{layout}')")
    if size % 2 or size < 16:
        raise CsnError(f"--size must be even and at least 16 (got {size})")
    if frames < 2 or videos < 2:
        raise CsnError("synthetic data needs at least 2 frames and 2 videos per class")
    out = Path(out)
    kinds = motions(classes, size)
    names = sorted(m.name for m in kinds)
    n_test = max(1, round(videos * test_fraction))
    rows = {"train": [], "test": []}
    for k, motion in enumerate(kinds):
        for i in range(videos):
            rng = np.random.default_rng([seed, k, i])
            rel = video_path(layout, motion.name, k, i)
            write = write_webm if rel.endswith(".webm") else write_mp4
            write(out / rel, render(rng, motion, frames, size), fps)
            rows["test" if i < n_test else "train"].append(
                (rel, motion.name, names.index(motion.name))
            )
    lists = write_lists(out, layout, rows, names)
    return {
        "root": str(out),
        "layout": layout,
        "classes": {m.name: m.speed for m in kinds},
        "train": len(rows["train"]),
        "test": len(rows["test"]),
        "lists": lists,
    }
