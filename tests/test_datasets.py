"""Dataset formats, each on a small dataset laid out as the real one is downloaded, and
`csnspec data index`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from csnspec.cli import main
from csnspec.data.formats import detect_format, open_dataset
from csnspec.data.synth import motions, render, write_mp4
from csnspec.errors import CsnError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """One tiny readable mp4, copied under every name a layout needs."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_mp4(path, render(np.random.default_rng(0), motions(3, 16)[0], 6, 16))
    return path


@pytest.fixture(scope="module")
def webm(tmp_path_factory):
    import av

    path = tmp_path_factory.mktemp("clip") / "clip.webm"
    video = render(np.random.default_rng(1), motions(3, 16)[1], 6, 16)
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=15)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def place(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


# Kinetics-400 train.csv rows as published (labels with spaces, one quoted with a comma)
KINETICS_CSV = """label,youtube_id,time_start,time_end,split
abseiling,--0NZoFnwcs,14,24,train
abseiling,-3B32lodo2M,59,69,train
playing guitar,-4M4lJo3Sfs,0,10,train
"passing American football (in game), not",-5VwCW1nNmk,226,236,train
playing guitar,zzMissing00,30,40,train
abseiling,corrupt0000,1,11,train
playing guitar,-7rYFJGnl0U,5,15,val
"""


@pytest.mark.parametrize("layout", ["class folders", "flat"])
def test_kinetics_csv_finds_videos_in_either_layout(tmp_path, clip, layout):
    (tmp_path / "train.csv").write_text(KINETICS_CSV)
    videos = tmp_path / "videos"
    for row in KINETICS_CSV.splitlines()[1:]:
        label, ytid, start, end, _ = row.rsplit(",", 4)
        label = label.strip('"')
        name = f"{ytid}_{int(start):06d}_{int(end):06d}.mp4"
        if ytid == "zzMissing00":
            continue
        target = videos / (f"{label}/{name}" if layout == "class folders" else name)
        place(clip, target)
        if ytid == "corrupt0000":
            target.write_bytes(b"\x00" * 500)
    index = open_dataset(tmp_path / "train.csv", root=videos)
    assert index.format == "kinetics"
    assert index.classes == [
        "abseiling",
        "passing American football (in game), not",
        "playing guitar",
    ]
    found = {rel.rsplit("/", 1)[-1]: index.classes[k] for rel, k in index.videos}
    assert found["--0NZoFnwcs_000014_000024.mp4"] == "abseiling"
    assert found["-5VwCW1nNmk_000226_000236.mp4"].startswith("passing")
    assert len(index) == 6  # the corrupt one is there: only decoding finds it (data index does)
    assert index.skipped == {"zzMissing00_000030_000040": "missing file"}
    assert all(index.path(i).is_file() for i in range(len(index)))
    val = open_dataset(tmp_path / "train.csv", root=videos, split="val")
    assert [v.rsplit("/", 1)[-1] for v, _ in val.videos] == ["-7rYFJGnl0U_000005_000015.mp4"]


def test_kinetics_errors_name_the_file(tmp_path, clip):
    bad = tmp_path / "k.csv"
    bad.write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc,x,10,train\n")
    (tmp_path / "abc_000000_000010.mp4").write_bytes(clip.read_bytes())
    index = open_dataset(bad, allow_empty=True)
    assert index.skipped == {
        "k.csv:2": "expected label,youtube_id,time_start,time_end,split, "
        "got 'abseiling,abc,x,10,train'"
    }
    with pytest.raises(CsnError, match=r"k.csv: error: no usable video"):
        open_dataset(bad)
    with pytest.raises(CsnError, match=r"nowhere: error: the videos folder does not exist"):
        open_dataset(bad, root=tmp_path / "nowhere")


def test_mmaction_video_list_with_multi_labels_and_bad_lines(tmp_path, clip):
    for name in ("a/1.mp4", "a/2.mp4", "b/3.mp4"):
        place(clip, tmp_path / "videos" / name)
    lst = tmp_path / "kinetics400_train_list_videos.txt"
    lst.write_text("a/1.mp4 0\na/2.mp4 2\nb/3.mp4 1 2\nb/4.mp4 1\nc/5.mp4\nc/6.mp4 x\n\n")
    index = open_dataset(lst, root=tmp_path / "videos")
    assert index.format == "mmaction" and index.classes == ["0", "1", "2"]
    assert index.videos == [("a/1.mp4", 0), ("a/2.mp4", 2), ("b/3.mp4", 1)]
    assert index.labels == [(0,), (2,), (1, 2)]
    assert index.skipped == {
        "b/4.mp4": "missing file",
        f"{lst.name}:5": "no label for 'c/5.mp4'",
        f"{lst.name}:6": "expected `path label [label ...]`, got 'c/6.mp4 x'",
    }


SSV2_LABELS = {"Holding something": "0", "Pushing something from left to right": "1"}
SSV2_TRAIN = [
    {
        "id": "78687",
        "label": "holding a cup",
        "template": "Holding [something]",
        "placeholders": ["a cup"],
    },
    {
        "id": "42326",
        "label": "pushing a pen from left to right",
        "template": "Pushing [something] from left to right",
        "placeholders": ["a pen"],
    },
    {
        "id": "100",
        "label": "holding a key",
        "template": "Holding [something]",
        "placeholders": ["a key"],
    },
    {"id": "5", "template": "Spinning [something]"},
    {"label": "no id"},
]


@pytest.mark.parametrize("names", ["short", "official"])
def test_something_something_v2(tmp_path, webm, names):
    prefix = "" if names == "short" else "something-something-v2-"
    (tmp_path / f"{prefix}labels.json").write_text(json.dumps(SSV2_LABELS))
    (tmp_path / f"{prefix}train.json").write_text(json.dumps(SSV2_TRAIN))
    (tmp_path / f"{prefix}validation.json").write_text(json.dumps(SSV2_TRAIN[:1]))
    videos = tmp_path / "20bn-something-something-v2"
    for vid in ("78687", "42326", "5"):
        place(webm, videos / f"{vid}.webm")
    assert detect_format(tmp_path) == "ssv2"
    index = open_dataset(tmp_path)  # the train split, videos in the official folder
    assert index.root == videos
    assert index.classes == list(SSV2_LABELS)  # in labels.json's order
    assert index.videos == [("78687.webm", 0), ("42326.webm", 1)]
    assert index.skipped == {
        "100.webm": "missing file",
        "5.webm": "unknown label 'Spinning something'",
        f"{prefix}train.json[4]": "expected an entry with `id` and `template`",
    }
    assert len(open_dataset(tmp_path, split="val")) == 1
    assert len(open_dataset(tmp_path / f"{prefix}train.json", root=videos)) == 2
    with pytest.raises(CsnError, match="no test split"):
        open_dataset(tmp_path, split="test")


def test_path_label_csv_with_bom_and_bad_lines_skipped_by_line(tmp_path, clip):
    place(clip, tmp_path / "up" / "1.mp4")
    place(clip, tmp_path / "down" / "2.mp4")
    lst = tmp_path / "train.csv"
    lst.write_bytes(
        "\ufeffpath,label\nup/1.mp4,up\ndown/2.mp4,down\nup/3.mp4,\n,down\nno-comma\n".encode()
    )
    index = open_dataset(lst)
    assert index.format == "csv" and index.classes == ["down", "up"]
    assert index.videos == [("up/1.mp4", 1), ("down/2.mp4", 0)]
    assert index.skipped == {
        "train.csv:4": "no label for 'up/3.mp4'",
        "train.csv:5": "empty path",
        "train.csv:6": "expected `path,label`, got 'no-comma'",
    }


def test_class_folders_and_split_subfolder(tmp_path, clip):
    for name in ("train/b/1.mp4", "train/a/2.mkv", "train/a/notes.txt", "val/a/3.mp4"):
        place(clip, tmp_path / name)
    index = open_dataset(tmp_path / "train")
    assert index.format == "folder" and index.classes == ["a", "b"]
    assert index.videos == [("a/2.mkv", 0), ("b/1.mp4", 1)]
    assert open_dataset(tmp_path, split="val").videos == [("a/3.mp4", 0)]


def test_format_detection_and_named_format(tmp_path):
    files = {
        "k.csv": KINETICS_CSV,
        "p.csv": "path,label\na.mp4,x\n",
        "m.txt": "a.mp4 3\n",
        "s.json": "[]",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    got = {name: detect_format(tmp_path / name) for name in files}
    assert got == {"k.csv": "kinetics", "p.csv": "csv", "m.txt": "mmaction", "s.json": "ssv2"}
    with pytest.raises(CsnError, match="not a Kinetics CSV"):
        open_dataset(tmp_path / "p.csv", format="kinetics")
    with pytest.raises(CsnError, match=r"absent: error: no such dataset"):
        open_dataset(tmp_path / "absent")


def test_cli_data_index_probes_and_reports_every_skipped_video(tmp_path, clip, capsys):
    for name in ("a/1.mp4", "a/2.mp4", "b/3.mp4"):
        place(clip, tmp_path / name)
    (tmp_path / "b" / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "b" / "empty.mp4").write_bytes(b"")
    assert main(["data", "index", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["videos"] == 3 and out["probed"] and out["format"] == "folder"
    assert out["classes"] == [{"name": "a", "videos": 2}, {"name": "b", "videos": 1}]
    reasons = {s["name"]: s["reason"] for s in out["skipped"]}
    assert set(reasons) == {"b/corrupt.mp4", "b/empty.mp4"}
    assert reasons["b/empty.mp4"] == "empty file" and "cannot decode" in reasons["b/corrupt.mp4"]

    assert main(["data", "index", str(tmp_path), "--no-probe"]) == 0
    text = capsys.readouterr().out
    assert "5 videos, 2 classes, 0 skipped" in text and "not opened (--no-probe)" in text


def test_cli_data_index_with_nothing_usable_exits_2(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bad.mp4").write_bytes(b"junk" * 100)
    assert main(["data", "index", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "skipped a/bad.mp4: cannot decode" in captured.out
    assert "no usable video" in captured.err
    assert main(["data", "index", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: error: no such dataset" in capsys.readouterr().err


def write_jpegs(folder, video):
    import av

    folder.mkdir(parents=True)
    for t, image in enumerate(video, 1):
        with av.open(str(folder / f"{t:05d}.jpg"), "w", format="image2") as container:
            stream = container.add_stream("mjpeg", rate=1)
            stream.height, stream.width = image.shape[:2]
            stream.pix_fmt = "yuvj420p"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())


def test_something_something_v1_frame_folders(tmp_path):
    from csnspec.data.dataset import TrainClips
    from csnspec.data.decode import read_frames
    from csnspec.data.transforms import ClipOptions

    (tmp_path / "something-something-v1-labels.csv").write_text(
        "Holding something\nPutting something, something and something on the table\n"
    )
    (tmp_path / "something-something-v1-train.csv").write_text(
        "100218;Putting something, something and something on the table\n"
        "4;Holding something\n7;Spinning something\n9;Holding something\nbroken line\n"
    )
    frames = tmp_path / "20bn-something-something-v1"
    video = render(np.random.default_rng(2), motions(6, 32)[4], 5, 32)
    for vid in ("100218", "4", "7"):
        write_jpegs(frames / vid, video)
    assert detect_format(tmp_path) == "ssv1"
    assert detect_format(tmp_path / "something-something-v1-train.csv") == "ssv1"
    index = open_dataset(tmp_path)
    assert index.root == frames and len(index.classes) == 2
    assert index.videos == [("100218", 1), ("4", 0)]
    assert index.skipped == {
        "7": "unknown label 'Spinning something'",
        "9": "missing frame folder",
        "something-something-v1-train.csv:5": "expected `id;label`, got 'broken line'",
    }
    # the frame folders are read like videos: frame i is the i-th image
    clip, label = TrainClips(
        index,
        ClipOptions(frames=3, rate=2, crop=16, scale_min=32, scale_max=32, flip=False),
        seed=0,
    )[(0, 0)]
    assert clip.shape == (3, 3, 16, 16) and label == 1

    got = read_frames(frames / "4", lambda n: [4, 0], lambda h, w: (h, w))
    assert got.shape == (2, 32, 32, 3)
    for k, i in enumerate([4, 0]):  # JPEG is lossy: the nearest frame is the one asked for
        errors = [np.abs(got[k].astype(int) - frame).mean() for frame in video]
        assert int(np.argmin(errors)) == i


@pytest.mark.parametrize("layout", ["kinetics", "mmaction", "ssv2"])
def test_synth_writes_each_layout_and_open_dataset_reads_it_back(tmp_path, capsys, layout):
    from csnspec.data.layouts import ssv2_id

    args = ["data", "synth", str(tmp_path), "--classes", "3", "--videos", "2", "--frames", "6"]
    assert main([*args, "--size", "16", "--layout", layout]) == 0
    summary = json.loads(capsys.readouterr().out)
    names = sorted(m.name for m in motions(3, 16))
    for split, count in (("train", 3), ("test", 3)):
        index = open_dataset(tmp_path / summary["lists"][split])
        assert index.format == layout and index.classes == names
        assert len(index) == count and not index.skipped
        for rel, k in index.videos:
            if layout == "ssv2":  # the id says which motion it shows
                j = next(j for j in range(3) for i in range(2) if rel == f"{ssv2_id(j, i)}.webm")
                assert motions(3, 16)[j].name == names[k]
            else:
                assert rel.split("/")[-2] == names[k]
    assert main(["data", "index", str(tmp_path / summary["lists"]["train"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["videos"] == 3
