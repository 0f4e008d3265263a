"""Clip sampling in time and the spatial pipeline of the paper's section 4.1, on numpy arrays.

Training: a random start, T frames every `rate` frames; the shorter edge scaled to a random size
in [scale_min, scale_max], a random crop and a horizontal flip. Testing: `clips` starts spread
uniformly over the video; the shorter edge scaled to `test_scale`, then the center crop or three
crops along the longer edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# VMZ's normalisation of [0, 1] RGB (the Kinetics statistics its released models expect).
VMZ_MEAN = (0.43216, 0.394666, 0.37645)
VMZ_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class ClipOptions:
    frames: int = 8
    rate: int = 2
    crop: int = 224
    scale_min: int = 256
    scale_max: int = 320
    test_scale: int = 256
    flip: bool = True
    clips: int = 10  # test clips per video
    crops: int = 1  # test crops per clip: 1 (center) or 3 (along the longer edge)
    mean: tuple[float, float, float] = VMZ_MEAN
    std: tuple[float, float, float] = VMZ_STD

    @property
    def span(self) -> int:
        """Frames a clip covers in the source video."""
        return (self.frames - 1) * self.rate + 1

    @property
    def views(self) -> int:
        return self.clips * self.crops


def clip_indices(start: int, count: int, opts: ClipOptions) -> np.ndarray:
    """Frame indices of a clip starting at `start`; short videos loop."""
    return (start + np.arange(opts.frames) * opts.rate) % count


def train_indices(rng: np.random.Generator, count: int, opts: ClipOptions) -> np.ndarray:
    start = int(rng.integers(0, max(1, count - opts.span + 1)))
    return clip_indices(start, count, opts)


def view_indices(count: int, opts: ClipOptions) -> np.ndarray:
    """The frames of `opts.clips` clips spread uniformly over the video, one after another."""
    last = max(0, count - opts.span)
    starts = np.round(np.linspace(0, last, opts.clips)).astype(int)
    return np.concatenate([clip_indices(s, count, opts) for s in starts])


def scaled(height: int, width: int, short: int) -> tuple[int, int]:
    """(height, width) with the shorter edge at `short`, aspect ratio kept."""
    if height <= width:
        return short, max(short, round(width * short / height))
    return max(short, round(height * short / width)), short


def decode_size(height: int, width: int, short: int) -> tuple[int, int]:
    """The size to decode a (height, width) video at for a shorter edge of `short`: scaled down
    by FFmpeg's scaler (which filters), never up: an upscale is done on the crop alone
    (`random_crop`), which is 1.5-2x fewer pixels than the whole scaled frame."""
    if short >= min(height, width):
        return height, width
    return scaled(height, width, short)


def random_crop(
    rng: np.random.Generator,
    frames: np.ndarray,
    opts: ClipOptions,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """A random crop (and flip) of (T, H, W, 3) frames as if scaled to `size` (height, width;
    default: their own size) first: the crop's window is taken from `frames` and only the window
    is resized."""
    h, w = size or frames.shape[1:3]
    c = opts.crop
    y = int(rng.integers(0, h - c + 1))
    x = int(rng.integers(0, w - c + 1))
    fh, fw = frames.shape[1:3]
    if (fh, fw) == (h, w):
        out = frames[:, y : y + c, x : x + c]
    else:
        out = _window(frames, (y, x), (h, w), c)
    if opts.flip and rng.random() < 0.5:
        out = out[:, :, ::-1]
    return out


def _window(frames: np.ndarray, at: tuple[int, int], size: tuple[int, int], c: int):
    """The c x c window at `at` of `frames` scaled to `size`, resizing only the whole source
    pixels that cover it (then cutting the window out at its exact offset)."""
    spans = []
    for start, scaled_len, own in zip(at, size, frames.shape[1:3]):
        f = own / scaled_len
        lo, hi = math.floor(start * f), min(own, math.ceil((start + c) * f))
        out = max(c, round((hi - lo) / f))
        offset = min(out - c, max(0, round(start - lo / f)))
        spans.append((lo, hi, out, offset))
    (y0, y1, oh, oy), (x0, x1, ow, ox) = spans
    return resize(frames[:, y0:y1, x0:x1], oh, ow)[:, oy : oy + c, ox : ox + c]


def resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, h, w, 3) uint8 -> (T, height, width, 3) uint8, bilinear (pixel centres aligned).

    PyTorch's uint8 kernel where torch is installed (3-4x faster than FFmpeg's scaler here),
    FFmpeg's scaler otherwise; the two round a few pixel values differently.
    """
    try:
        import torch
    except ImportError:
        return _resize_ffmpeg(frames, height, width)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    out = torch.nn.functional.interpolate(
        x, size=(height, width), mode="bilinear", align_corners=False, antialias=False
    )
    return out.permute(0, 2, 3, 1).numpy()


def _resize_ffmpeg(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    import av
    from av.video.reformatter import VideoReformatter

    scaler = VideoReformatter()
    return np.stack(
        [
            scaler.reformat(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24"),
                width=width,
                height=height,
                interpolation="BILINEAR",
            ).to_ndarray()
            for f in frames
        ]
    )


def view_crops(
    frames: np.ndarray, opts: ClipOptions, size: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """The center crop, or three crops along the longer edge (start, center, end), of frames as
    if scaled to `size` first (as `random_crop`)."""
    h, w = size or frames.shape[1:3]
    c = opts.crop
    if opts.crops == 1:
        offsets = [((h - c) // 2, (w - c) // 2)]
    elif h >= w:
        offsets = [(y, (w - c) // 2) for y in (0, (h - c) // 2, h - c)]
    else:
        offsets = [((h - c) // 2, x) for x in (0, (w - c) // 2, w - c)]
    if frames.shape[1:3] == (h, w):
        return [frames[:, y : y + c, x : x + c] for y, x in offsets]
    return [_window(frames, at, (h, w), c) for at in offsets]


def normalise(frames: np.ndarray, opts: ClipOptions) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float32, scaled to [0, 1] then standardised."""
    mean = np.asarray(opts.mean, np.float32)[:, None, None, None] * 255
    inv = 1 / (np.asarray(opts.std, np.float32)[:, None, None, None] * 255)
    # One pass from the uint8 frames into the output layout (10x faster than astype, subtract,
    # transpose and copy, with the same float32 results).
    x = np.empty((3, *frames.shape[:3]), np.float32)
    np.subtract(frames.transpose(3, 0, 1, 2), mean, out=x)
    x *= inv
    return x
