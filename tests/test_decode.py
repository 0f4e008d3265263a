"""The seeking decoder returns exactly the frames decoding from the start gives, for clips
anywhere in mp4 and webm videos, with B-frames and few keyframes."""

from __future__ import annotations

import numpy as np
import pytest

from csnspec.data.decode import read_frames
from csnspec.data.synth import motions, render
from csnspec.data.transforms import ClipOptions, clip_indices, view_indices

FRAMES = 90

# (file name, container format, codec, codec options): B-frames and long GOPs where the codec has them
ENCODINGS = [
    ("h264-bframes.mp4", "mp4", "libx264", {"g": "40", "bf": "3", "preset": "ultrafast"}),
    ("h264-one-keyframe.mp4", "mp4", "libx264", {"g": "1000", "bf": "2"}),
    ("mpeg4-bframes.mp4", "mp4", "mpeg4", {"g": "25", "bf": "2"}),
    ("mpeg4.mp4", "mp4", "mpeg4", {"g": "12"}),  # as `data synth` writes: the index is the table
    ("vp9.webm", "webm", "libvpx-vp9", {"g": "30", "deadline": "realtime", "cpu-used": "8"}),
    ("vp8.webm", "webm", "libvpx", {"g": "50"}),
]


def encode(path, video: np.ndarray, fmt: str, codec: str, options: dict, fps: int = 30) -> None:
    import av

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.height, stream.width = video.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module", params=ENCODINGS, ids=[e[0] for e in ENCODINGS])
def video(request, tmp_path_factory):
    name, fmt, codec, options = request.param
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"FFmpeg in this PyAV has no {codec}")
    path = tmp_path_factory.mktemp("decode") / name
    frames = render(np.random.default_rng(0), motions(3, 32)[2], FRAMES, 32)
    encode(path, frames, fmt, codec, options)
    return path


def keyframes(path) -> list[int]:
    import av

    with av.open(str(path)) as c:
        return [i for i, f in enumerate(c.decode(video=0)) if f.key_frame]


def test_videos_have_the_structure_the_test_needs(video):
    # the clips below start between keyframes: a seek must land on the keyframe before them
    keys = keyframes(video)
    assert keys[0] == 0 and len(keys) < FRAMES // 10


@pytest.mark.parametrize(
    "pick",
    [
        lambda n: clip_indices(0, n, ClipOptions(frames=8, rate=2)),  # start
        lambda n: clip_indices(n // 2 - 3, n, ClipOptions(frames=8, rate=2)),  # middle
        lambda n: clip_indices(n - 15, n, ClipOptions(frames=8, rate=2)),  # end
        lambda n: clip_indices(n - 4, n, ClipOptions(frames=4, rate=3)),  # loops past the end
        lambda n: view_indices(n, ClipOptions(frames=4, rate=2, clips=5)),  # test views
        lambda n: [n - 1, 0, n // 3, n // 3, n - 1],  # out of order, repeated
    ],
    ids=["start", "middle", "end", "wrap", "views", "scattered"],
)
def test_seeking_gives_the_frames_of_decoding_from_the_start(video, pick):
    def size(h, w):
        return (24, 24)

    seek = read_frames(video, pick, size)
    full = read_frames(video, pick, size, seek=False)
    assert seek.shape == (len(pick(FRAMES)), 24, 24, 3)
    assert np.array_equal(seek, full)


def test_every_frame_by_seeking_matches_the_sequential_decode(video):
    def same(h, w):
        return (h, w)

    full = read_frames(video, lambda n: range(n), same, seek=False)
    assert len(full) == FRAMES
    for i in (1, 29, 30, 31, 44, 61, FRAMES - 1):
        assert np.array_equal(read_frames(video, lambda n, i=i: [i], same)[0], full[i]), i


def test_the_seeking_path_is_the_one_taken(video, monkeypatch):
    # decoding from the start is the fallback; here the timestamps can be trusted, so a clip
    # at the end must come from seeking alone
    from csnspec.data import decode

    def from_the_start(*args):
        raise AssertionError("decoded from the start")

    monkeypatch.setattr(decode, "_decode", from_the_start)
    pick = lambda n: clip_indices(n - 15, n, ClipOptions(frames=8, rate=2))
    assert read_frames(video, pick, lambda h, w: (h, w)).shape == (8, 32, 32, 3)


def test_after_a_failed_seek_decoding_from_the_start_gives_the_same_frames(video, monkeypatch):
    from csnspec.data import decode

    real = decode._decode_seeking

    def seek_then_give_up(*args):
        real(*args)  # leaves the decoder mid-stream, skipping unreferenced frames

    monkeypatch.setattr(decode, "_decode_seeking", seek_then_give_up)
    pick = lambda n: clip_indices(n // 2, n, ClipOptions(frames=8, rate=2))
    full = read_frames(video, pick, lambda h, w: (h, w), seek=False)
    assert np.array_equal(read_frames(video, pick, lambda h, w: (h, w)), full)


def test_the_container_index_is_the_frame_table_where_it_can_be(video):
    """An mp4 without B-frames gives the table from its index (no demuxing); wherever the index
    is used it is the table demuxing gives; B-frames and WebM's keyframe-only index are not."""
    import av

    from csnspec.data import decode

    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        demuxed = [(p.pts, p.is_keyframe) for p in c.demux(stream) if p.size]
    with av.open(str(video)) as c:
        indexed = decode._indexed(c, c.streams.video[0])
    assert (indexed is not None) == (video.name == "mpeg4.mp4")
    assert indexed is None or indexed == demuxed
