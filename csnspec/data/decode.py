"""PyAV decoding of the frames a clip needs, resized by FFmpeg's scaler as they are converted."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


class VideoError(Exception):
    """A video that cannot be read (missing, empty, corrupt, truncated, no video stream)."""


Picker = Callable[[int], Sequence[int]]  # frame count -> frame indices to keep (may repeat)
Sizer = Callable[[int, int], tuple[int, int]]  # (height, width) -> (height, width) to decode at


def read_frames(path, pick: Picker, size: Sizer) -> np.ndarray:
    """The frames `pick(frame_count)` selects, as a (len, H, W, 3) uint8 RGB array.

    Decodes sequentially up to the last frame needed. Where the header's frame count is
    missing or wrong (a truncated file), the frames that do decode are counted and used.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError("missing file")
    if path.stat().st_size == 0:
        raise VideoError("empty file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            count = stream.frames
            height, width = stream.codec_context.height, stream.codec_context.width
            if count > 0:
                got = _decode(container, stream, list(pick(count)), size(height, width))
                if got is not None:
                    return got
            # Unknown or wrong count: decode everything once, then pick from what exists.
            container.seek(0)
            frames = list(container.decode(stream))
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, RuntimeError) as err:
        raise VideoError(f"cannot decode: {err}") from None
    if not frames:
        raise VideoError("no frames")
    h, w = size(frames[0].height, frames[0].width)
    return np.stack([_rgb(frames[i], h, w) for i in pick(len(frames))])


def _decode(container, stream, indices: list[int], hw: tuple[int, int]) -> np.ndarray | None:
    """Frames at `indices` or None when the stream ends before the last one."""
    wanted = set(indices)
    last = max(indices)
    kept = {}
    for i, frame in enumerate(container.decode(stream)):
        if i in wanted:
            kept[i] = _rgb(frame, *hw)
        if i == last:
            return np.stack([kept[i] for i in indices])
    return None


def _rgb(frame, height: int, width: int) -> np.ndarray:
    if (frame.height, frame.width) == (height, width):
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
