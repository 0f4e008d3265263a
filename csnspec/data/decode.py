"""PyAV decoding of the frames a clip needs, resized by FFmpeg's scaler as they are converted.

`read_frames` seeks: it reads the stream's packet timestamps once per file (from the container's
index where it holds them, else by demuxing, never decoding; cached per process), seeks to the
keyframe at or before each run of wanted frames and decodes from there. Frame i is the i-th frame in
presentation order, as when decoding from the start; wherever the timestamps cannot be trusted
(missing, repeated, a frame that does not come out) it decodes from the start instead, so the frames
returned are the same either way.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np


class VideoError(Exception):
    """A video that cannot be read (missing, empty, corrupt, truncated, no video stream)."""


Picker = Callable[[int], Sequence[int]]  # frame count -> frame indices to keep (may repeat)
Sizer = Callable[[int, int], tuple[int, int]]  # (height, width) -> (height, width) to decode at
Reader = Callable[[object, Picker, Sizer], np.ndarray]  # what the clip datasets call

# One decoding thread per video: parallelism comes from the loader's workers; FFmpeg's own
# threads (auto: one per core, per worker) would oversubscribe the cores.
DECODE_THREADS = 1
# Seek forward only past this many frames: a seek flushes the decoder and restarts at a keyframe.
SEEK_GAIN = 4


def read_frames(
    path, pick: Picker, size: Sizer, *, seek: bool = True, threads: int | None = None
) -> np.ndarray:
    """The frames `pick(frame_count)` selects, as a (len, H, W, 3) uint8 RGB array.

    `path` is a video file, or a folder of frames as images (Something-Something v1), frame i
    the i-th file in name order.

    `seek=False` decodes from the first frame up to the last one needed (the reference the
    seeking path is tested against). Where the frame count is unknown or wrong (a truncated
    file), the frames that do decode are counted and used. `threads`: FFmpeg's decoding threads
    (default DECODE_THREADS; 0 lets FFmpeg choose).
    """
    import av

    path = Path(path)
    picked: dict[int, list[int]] = {}

    def chosen(count: int) -> list[int]:
        """pick(count), drawn once: a fallback must not draw a random clip again."""
        if count not in picked:
            picked[count] = list(pick(count))
        return picked[count]

    if path.is_dir():
        return _read_image_folder(path, pick, size)
    if not path.is_file():
        raise VideoError("missing file")
    stat = path.stat()
    if stat.st_size == 0:
        raise VideoError("empty file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = DECODE_THREADS if threads is None else threads
            height, width = stream.codec_context.height, stream.codec_context.width
            table = _table(str(path), stat.st_mtime_ns, stat.st_size) if seek else None
            if table is not None:
                indices = chosen(len(table.pts))
                got = _decode_seeking(container, stream, table, indices, _rgb(*size(height, width)))
                if got is not None:
                    return got
                stream.codec_context.skip_frame = "DEFAULT"
                container.seek(0)
            count = stream.frames
            if count > 0:
                got = _decode(container, stream, chosen(count), _rgb(*size(height, width)))
                if got is not None:
                    return got
                container.seek(0)
            # Unknown or wrong count: decode everything once, then pick from what exists.
            frames = list(container.decode(stream))
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, RuntimeError) as err:
        # FFmpeg's own words, without the errno and the path the caller already names
        raise VideoError(f"cannot decode: {getattr(err, 'strerror', None) or err}") from None
    if not frames:
        raise VideoError("no frames")
    rgb = _rgb(*size(frames[0].height, frames[0].width))
    return np.stack([rgb(frames[i]) for i in chosen(len(frames))])


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _read_image_folder(path: Path, pick: Picker, size: Sizer) -> np.ndarray:
    import av

    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoError(f"no frames ({', '.join(IMAGE_SUFFIXES)} files)")
    indices = list(pick(len(files)))
    rgb, kept = None, {}
    for i in indices:
        if i in kept:
            continue
        try:
            with av.open(str(files[i])) as container:
                frame = next(container.decode(video=0))
        except (av.FFmpegError, OSError, ValueError, IndexError, RuntimeError, StopIteration):
            raise VideoError(f"cannot decode frame {files[i].name}") from None
        rgb = rgb or _rgb(*size(frame.height, frame.width))
        kept[i] = rgb(frame)
    return np.stack([kept[i] for i in indices])


class FrameTable(NamedTuple):
    pts: list[int]  # presentation timestamps in order: frame i has pts[i]
    keyframes: list[int]  # indices of the keyframes, ascending


@lru_cache(maxsize=1024)
def _table(path: str, mtime_ns: int, size: int) -> FrameTable | None:
    """The frame table of a video file (keyed by its mtime and size too, so an edit is seen),
    or None when its timestamps cannot index frames."""
    import av

    try:
        with av.open(path) as container:
            packets = _indexed(container, container.streams.video[0])
        if packets is None:
            with av.open(path) as container:
                stream = container.streams.video[0]
                packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
    except (av.FFmpegError, OSError, ValueError, IndexError, RuntimeError):
        return None  # the decoding path reports what is wrong
    pts = sorted(p for p, _ in packets if p is not None)
    if not pts or len(pts) != len(packets) or len(set(pts)) != len(pts):
        return None
    where = {p: i for i, p in enumerate(pts)}
    keyframes = sorted(where[p] for p, key in packets if key)
    if not keyframes or keyframes[0] != 0:
        return None
    return FrameTable(pts, keyframes)


INDEX_CHECK = 16  # packets demuxed to check that a container's index holds presentation times


def _indexed(container, stream) -> list[tuple[int, bool]] | None:
    """(pts, keyframe) of every frame from the container's own index (an mp4's sample table,
    read at open: ~50x cheaper than demuxing the file), or None where it cannot be used.

    The index lists decode timestamps: they are presentation timestamps only where frames are
    not reordered (no B-frames), which the first packets show; and a WebM's index lists its
    keyframes only. A wrong table is still caught when decoding (and decoded from the start).
    """
    entries = [(e.timestamp, e.is_keyframe) for e in getattr(stream, "index_entries", ())]
    if not entries or len(entries) != stream.frames:
        return None
    head = []
    for packet in container.demux(stream):
        if packet.size:
            head.append(packet.pts)
        if len(head) == INDEX_CHECK:
            break
    if head != [t for t, _ in entries[: len(head)]]:
        return None
    return entries


def _decode_seeking(container, stream, table: FrameTable, indices, rgb) -> np.ndarray | None:
    """Frames at `indices`, each run decoded from the keyframe before it; None where a wanted
    frame does not come out where the table says (the caller then decodes from the start)."""
    where = {p: i for i, p in enumerate(table.pts)}
    wanted = sorted(set(indices))
    want = set(wanted)
    kept: dict[int, np.ndarray] = {}
    frames, pos = None, -1  # the decoding in progress and the last frame it gave
    seeked = False
    goal = [0]  # the frame being decoded towards: the packets of frames before it can be skipped
    for target in wanted:
        if target in kept:
            continue
        goal[0] = target
        key = table.keyframes[bisect.bisect_right(table.keyframes, target) - 1]
        if frames is None and key == 0 and not seeked:
            frames, pos, first = _frames(container, stream, where, goal), -1, True  # at the start
        elif frames is None or key > pos + SEEK_GAIN or pos > target:
            container.seek(table.pts[key], stream=stream, backward=True, any_frame=False)
            frames, pos, first, seeked = _frames(container, stream, where, goal), -1, True, True
        else:
            first = False
        for frame in frames:
            i = where.get(frame.pts)
            if i is None:
                return None
            if first and i > target:
                return None  # the seek landed past the frame: trust nothing
            first = False
            pos = i
            if i in want and i not in kept:
                kept[i] = rgb(frame)
            if i >= target:
                break
        else:
            frames = None
        if target not in kept:
            return None
    return np.stack([kept[i] for i in indices])


def _frames(container, stream, where: dict[int, int], goal: list[int]):
    """Decoded frames from the container's position on. A packet of a frame before `goal[0]` is
    decoded only if other frames refer to it (FFmpeg's skip_frame=NONREF): frames that nothing
    refers to are not needed to decode the ones after them."""
    context = stream.codec_context
    for packet in container.demux(stream):
        i = where.get(packet.pts)
        context.skip_frame = "NONREF" if i is not None and i < goal[0] else "DEFAULT"
        yield from packet.decode()


def _decode(container, stream, indices: list[int], rgb) -> np.ndarray | None:
    """Frames at `indices` decoded from the start, or None when the stream ends before the last."""
    wanted = set(indices)
    last = max(indices)
    kept = {}
    for i, frame in enumerate(container.decode(stream)):
        if i in wanted:
            kept[i] = rgb(frame)
        if i == last:
            return np.stack([kept[i] for i in indices])
    return None


def _rgb(height: int, width: int):
    """Frame -> (height, width, 3) uint8 RGB. One scaler for all the frames of a read: a frame's
    own would set up FFmpeg's scaling context again for every frame."""
    from av.video.reformatter import VideoReformatter

    scaler = VideoReformatter()

    def convert(frame) -> np.ndarray:
        return scaler.reformat(
            frame, width=width, height=height, format="rgb24", interpolation="BILINEAR"
        ).to_ndarray()

    return convert
