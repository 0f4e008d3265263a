"""Which videos of an index the loaders would skip: each opened and decoded, as a clip would be."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .decode import VideoError, read_frames
from .formats import VideoIndex


def probe(index: VideoIndex, workers: int = 2, progress=None) -> dict[str, str]:
    """{video: reason} for the videos of `index` that cannot be read: its first and last frames
    are decoded by the loaders' own decoder, so what fails here fails in training.
    `progress()` is called once per video probed."""

    def check(i: int) -> str | None:
        try:
            read_frames(index.path(i), lambda n: [0, n - 1], lambda h, w: (h, w))
        except VideoError as err:
            return str(err)
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = []
        for why in pool.map(check, range(len(index))):
            reasons.append(why)
            if progress is not None:
                progress()
    return {index.videos[i][0]: why for i, why in enumerate(reasons) if why is not None}


def without(index: VideoIndex, bad: dict[str, str]) -> VideoIndex:
    """`index` less the videos in `bad`, which join its skipped entries."""
    keep = [i for i, (rel, _) in enumerate(index.videos) if rel not in bad]
    return VideoIndex(
        index.root,
        [index.videos[i] for i in keep],
        index.classes,
        {**index.skipped, **bad},
        index.format,
        [index.labels[i] for i in keep],
    )
