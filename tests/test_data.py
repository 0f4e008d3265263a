"""Video data: synthetic motion videos, dataset indexes, clip sampling, spatial transforms,
decoding errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from csnspec.cli import main
from csnspec.data.dataset import EvalViews, Skipped, TrainClips, collate, open_index
from csnspec.data.decode import VideoError, read_frames
from csnspec.data.loader import BatchPlan, threaded_batches
from csnspec.data.synth import motions, render, synthesize
from csnspec.data.transforms import (
    ClipOptions,
    decode_size,
    normalise,
    random_crop,
    resize,
    scaled,
    train_indices,
    view_crops,
    view_indices,
)
from csnspec.errors import CsnError

OPTS = ClipOptions(frames=4, rate=2, crop=16, scale_min=18, scale_max=22, test_scale=20)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    synthesize(root, classes=6, videos=2, frames=10, size=24, seed=3)
    return root


def all_frames(path):
    return read_frames(path, lambda n: range(n), lambda h, w: (h, w))


def test_synth_writes_mp4s_lists_and_sorted_classes(small):
    classes = json.loads((small / "classes.json").read_text())
    assert classes == sorted(classes) and len(classes) == 6
    train = (small / "train.csv").read_text().splitlines()
    test = (small / "test.csv").read_text().splitlines()
    assert len(train) == len(test) == 6
    for line in train + test:
        path, label = line.split(",")
        assert path.startswith(label + "/") and (small / path).stat().st_size > 0
        assert all_frames(small / path).shape == (10, 24, 24, 3)


def test_synth_is_deterministic_for_a_seed(small, tmp_path):
    synthesize(tmp_path, classes=6, videos=2, frames=10, size=24, seed=3)
    for line in (small / "train.csv").read_text().splitlines():
        path = line.split(",")[0]
        assert (small / path).read_bytes() == (tmp_path / path).read_bytes()


def test_a_single_frame_does_not_tell_the_classes_apart():
    # Same random draws, different motion: the first frames are identical, later ones differ.
    videos = [render(np.random.default_rng(7), m, 6, 32) for m in motions(6, 32)]
    assert all(np.array_equal(v[0], videos[0][0]) for v in videos)
    assert len({v[-1].tobytes() for v in videos}) == 6
    speeds = {m.name: m.speed for m in motions(6, 40)}
    assert speeds["up-fast"] > 2 * speeds["up-slow"] > 0


def test_folder_index_sorts_classes(small):
    index = open_index(small)
    assert index.classes == sorted(index.classes) and len(index) == 12
    assert all(index.path(i).is_file() for i in range(len(index)))


def test_list_index_reports_unknown_labels_and_missing_files(small, tmp_path):
    lst = tmp_path / "list.csv"
    good = (small / "train.csv").read_text().splitlines()[:2]
    lst.write_text(
        "path,label\n" + "\n".join(good) + "\nnope.mp4,up-slow\n"
        f"{good[0].split(',')[0]},juggling\n{good[1].split(',')[0]},3\n"
    )
    index = open_index(lst, root=small, classes=json.loads((small / "classes.json").read_text()))
    assert len(index) == 3  # two by name, one by index
    assert index.videos[2][1] == 3
    assert index.skipped == {
        "nope.mp4": "missing file",
        good[0].split(",")[0]: "unknown label 'juggling'",
    }


def test_list_index_errors_are_clear(tmp_path):
    with pytest.raises(CsnError, match="absent.csv: error: no such dataset"):
        open_index(tmp_path / "absent.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\njust-a-path.mp4\n")
    with pytest.raises(CsnError, match=r"bad.csv: error: no usable video \(1 entries skipped\)"):
        open_index(bad)


def test_clip_sampling_in_time():
    o = ClipOptions(frames=8, rate=2)
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = train_indices(rng, 30, o)
        assert np.all(np.diff(idx) == 2) and 0 <= idx[0] <= 30 - 15 and idx[-1] < 30
    assert list(train_indices(rng, 5, o)) == [0, 2, 4, 1, 3, 0, 2, 4]  # short videos loop
    views = view_indices(40, ClipOptions(frames=8, rate=2, clips=10)).reshape(10, 8)
    assert views[0, 0] == 0 and views[-1, -1] == 39  # spread from the first to the last frame
    assert np.all(np.diff(views[:, 0]) > 0)


def test_spatial_pipeline():
    assert scaled(240, 320, 36) == (36, 48) and scaled(320, 240, 36) == (48, 36)
    frames = np.arange(2 * 20 * 30 * 3, dtype=np.uint8).reshape(2, 20, 30, 3)
    crops = view_crops(frames, ClipOptions(crop=16, crops=3))
    assert [c[0, 0, 0, 0] for c in crops] == [frames[0, 2, x, 0] for x in (0, 7, 14)]
    (center,) = view_crops(frames, ClipOptions(crop=16, crops=1))
    assert np.array_equal(center, frames[:, 2:18, 7:23])
    rng = np.random.default_rng(1)
    assert random_crop(rng, frames, ClipOptions(crop=16)).shape == (2, 16, 16, 3)
    x = normalise(np.full((2, 4, 4, 3), 255, np.uint8), ClipOptions())
    assert x.shape == (3, 2, 4, 4) and x.dtype == np.float32
    assert np.allclose(
        x[:, 0, 0, 0], (1 - np.array(ClipOptions().mean)) / np.array(ClipOptions().std)
    )


def test_training_clips_depend_only_on_seed_epoch_and_video(small):
    index = open_index(small / "train.csv")
    ds = TrainClips(index, OPTS, seed=5)
    a, label = ds[(0, 1)]
    assert a.shape == (3, 4, 16, 16) and label == index.videos[1][1]
    assert np.array_equal(a, ds[(0, 1)][0])
    assert np.array_equal(a, TrainClips(index, OPTS, seed=5)[(0, 1)][0])
    assert not np.array_equal(a, ds[(1, 1)][0])
    # order of reading does not matter either: threads return the same clips
    plan = BatchPlan(len(index), 3, seed=5, start=0, stop=4)
    first = [b.x for b in threaded_batches(ds, plan, workers=1)]
    again = [b.x for b in threaded_batches(ds, plan, workers=3)]
    assert all(np.array_equal(p, q) for p, q in zip(first, again))


def test_batch_plan_is_a_function_of_seed_and_epoch():
    plan = BatchPlan(10, 4, seed=1, start=0, stop=6)
    steps = list(plan)
    assert len(steps) == 6 and all(len(s) == 4 for s in steps)
    assert {k[1] for s in steps[:2] for k in s} <= set(range(10)) and steps[2][0][0] == 1
    assert list(BatchPlan(10, 4, seed=1, start=3, stop=6)) == steps[3:]
    ranks = [list(BatchPlan(10, 4, 1, 0, 6, rank=r, world=2)) for r in (0, 1)]
    assert all(sorted(a + b) == sorted(s) for a, b, s in zip(*ranks, steps))


def test_test_views_and_collate(small):
    index = open_index(small / "test.csv")
    views = EvalViews(
        index, ClipOptions(frames=4, rate=2, crop=16, test_scale=20, clips=3, crops=3)
    )
    x, _ = views[0]
    assert x.shape == (9, 3, 4, 16, 16)
    batch = collate([views[0], Skipped("bad.mp4", "empty file"), views[1]])
    assert batch.x.shape == (2, 9, 3, 4, 16, 16) and batch.skipped[0].name == "bad.mp4"
    assert len(collate([Skipped("a", "b")])) == 0


def test_unreadable_videos_are_skipped_by_name(small, tmp_path):
    good = small / (small / "train.csv").read_text().splitlines()[0].split(",")[0]
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for name, why in [
        ("empty", "empty"),
        ("corrupt", "decode"),
        ("truncated", "decode"),
        ("absent", "missing"),
    ]:
        with pytest.raises(VideoError, match=why):
            all_frames(tmp_path / f"{name}.mp4")
    lst = tmp_path / "list.csv"
    lst.write_text("empty.mp4,0\ncorrupt.mp4,0\ntruncated.mp4,0\n")
    ds = TrainClips(open_index(lst), OPTS, seed=0)
    assert [ds[(0, i)].name for i in range(3)] == ["empty.mp4", "corrupt.mp4", "truncated.mp4"]


def test_cli_data_synth_and_index(tmp_path, capsys):
    out = tmp_path / "syn"
    assert (
        main(
            [
                "data",
                "synth",
                str(out),
                "--classes",
                "3",
                "--videos",
                "2",
                "--frames",
                "6",
                "--size",
                "16",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["train"] == 3
    assert main(["data", "index", str(out / "train.csv")]) == 0
    assert "3 videos, 3 classes" in capsys.readouterr().out
    assert main(["data", "synth", str(out), "--size", "15"]) == 2
    assert "--size must be even" in capsys.readouterr().err


def smooth_frames(t: int = 2, h: int = 24, w: int = 32) -> np.ndarray:
    """Frames of slow gradients: resampling them is well defined to a level or two."""
    y, x = np.mgrid[0:h, 0:w].astype(float)
    planes = [120 + 60 * np.sin(x / 11 + k) * np.cos(y / 13 - k) for k in range(3)]
    frame = np.stack(planes, -1)
    return np.stack([frame + 5 * i for i in range(t)]).round().astype(np.uint8)


def test_an_upscale_is_done_on_the_crops_alone(small):
    """A video smaller than the scale is decoded at its own size and only the crops' windows are
    resized: the clips match scaling the whole frame, then cropping."""
    assert decode_size(24, 32, 30) == (24, 32) and decode_size(24, 32, 18) == (18, 24)
    frames = smooth_frames()
    o = ClipOptions(crop=24, flip=False)
    size = scaled(24, 32, 40)
    whole = resize(frames, *size).astype(float)
    for seed in range(4):
        ours = random_crop(np.random.default_rng(seed), frames, o, size)
        rng = np.random.default_rng(seed)  # the window random_crop draws
        y, x = int(rng.integers(0, size[0] - 23)), int(rng.integers(0, size[1] - 23))
        ref = whole[:, y : y + 24, x : x + 24]
        assert ours.shape == ref.shape and np.abs(ours - ref).mean() < 1.5
    for crops in (1, 3):  # the test views too
        o = ClipOptions(crop=24, crops=crops)
        pairs = zip(view_crops(frames, o, size), view_crops(whole, o), strict=True)
        assert all(a.shape == b.shape and np.abs(a - b).mean() < 1.5 for a, b in pairs)
    clip, _ = TrainClips(open_index(small / "train.csv"), ClipOptions(4, 2, 24, 28, 32), 0)[(0, 0)]
    assert clip.shape == (3, 4, 24, 24)


def test_resize_without_torch_uses_ffmpeg(monkeypatch):
    import sys

    frames = smooth_frames()
    with_torch = resize(frames, 37, 41).astype(float)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    without = resize(frames, 37, 41)
    assert without.shape == (2, 37, 41, 3) and without.dtype == np.uint8
    assert np.abs(without - with_torch).mean() < 2
