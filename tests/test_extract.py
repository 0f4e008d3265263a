"""`csnspec extract`: one pooled feature vector per video, over eval's views (issue 11 item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("av")

from test_export import weights  # noqa: F401 (a fixture: random weights of the tiny spec)
from train_support import SPEC

from csnspec.cli import main
from csnspec.weights.metadata import header, pretrained_cfg

CLIPS = ["--clips", "2", "--crops", "1"]
CLIP_FLAGS = ["--frames", "8", "--rate", "2", "--crop", "32", "--test-scale", "40"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """2 motion classes x 3 videos of 16 frames, 40 px."""
    from csnspec.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(root, classes=2, videos=3, frames=16, size=40, seed=1, test_fraction=0.34)
    return root


def _read(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118


def _reference_features(weights_file, index, opts, i):
    """The mean over the video's views of the pooled output of the generated model's stages,
    computed from its submodules (stem, layer1, layer2, head.pool), not through extract."""
    import csnspec
    from csnspec.backends import load_module
    from csnspec.data.dataset import EvalViews
    from csnspec.weights.io import read_safetensors

    low = csnspec.lower(csnspec.load(SPEC))
    model = load_module(low, "torch").build(6)
    arrays, _, _ = read_safetensors(weights_file)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
    model.eval()
    views, label = EvalViews(index, opts)[i]
    with torch.no_grad():
        x = torch.from_numpy(views)
        x = model.layer2(model.layer1(model.stem(x)))
        return model.head.pool(x).flatten(1).mean(0).numpy(), label


def test_one_feature_vector_per_video(tmp_path, videos, weights, capsys):  # noqa: F811
    from csnspec.data.dataset import open_index
    from csnspec.data.transforms import ClipOptions

    path, _ = weights
    out = tmp_path / "features.safetensors"
    argv = ["extract", str(SPEC), "--weights", str(path), "--data", str(videos / "test.csv")]
    assert main([*argv, "-o", str(out), *CLIPS, *CLIP_FLAGS, "--no-progress"]) == 0
    tensors, meta = _read(out)
    index = open_index(videos / "test.csv")
    listed = json.loads(meta["csnspec.videos"])
    assert listed == [v for v, _ in index.videos]
    assert tensors["features"].shape == (len(index), 32)  # the tiny spec's last width
    assert tensors["labels"].tolist() == [label for _, label in index.videos]
    assert json.loads(meta["csnspec.classes"]) == index.classes
    assert meta["csnspec.views"] == "2x1"
    opts = ClipOptions(frames=8, rate=2, crop=32, test_scale=40, clips=2, crops=1)
    want, label = _reference_features(path, index, opts, 1)
    np.testing.assert_allclose(tensors["features"][1], want, rtol=1e-5, atol=1e-6)
    assert tensors["labels"][1] == label
    assert f"{out}: {len(index)} videos x 32 features" in capsys.readouterr().out


def test_clip_options_come_from_the_weights_metadata(tmp_path, videos, weights, capsys):  # noqa: F811
    from safetensors.torch import save_file

    path, tensors = weights
    cfg = pretrained_cfg(
        "vmz", bn_eps=1e-3, num_classes=6, frames=8, sampling_rate=2, crop=32, short_side_scale=40
    )
    recorded = tmp_path / "with-cfg.safetensors"
    save_file(tensors, recorded, metadata=header(cfg))
    plain = tmp_path / "plain.safetensors"
    argv = ["extract", str(SPEC), "--data", str(videos / "test.csv"), *CLIPS, "--no-progress"]
    assert main([*argv, "--weights", str(recorded), "-o", str(plain)]) == 0
    same = tmp_path / "flags.safetensors"
    assert main([*argv, "--weights", str(path), "-o", str(same), *CLIP_FLAGS]) == 0
    # the recorded crop etc. were used: the same features as with the same flags given
    np.testing.assert_array_equal(_read(plain)[0]["features"], _read(same)[0]["features"])
    capsys.readouterr()
    other = tmp_path / "other.safetensors"
    assert main([*argv, "--weights", str(recorded), "-o", str(other), "--rate", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning: --rate 1 differs from 2 in the weights' metadata" in err


def test_unreadable_data_and_missing_weights_are_labelled(tmp_path, videos, weights, capsys):  # noqa: F811
    path, _ = weights
    broken = tmp_path / "broken"
    (broken / "a").mkdir(parents=True)
    (broken / "a" / "x.mp4").write_bytes(b"not a video")
    out = tmp_path / "f.safetensors"
    argv = ["extract", str(SPEC), "-o", str(out), *CLIPS, *CLIP_FLAGS, "--no-progress"]
    assert main([*argv, "--weights", str(path), "--data", str(broken)]) == 2
    assert f"{broken}: error: no video could be read" in capsys.readouterr().err
    missing = tmp_path / "missing.safetensors"
    assert main([*argv, "--weights", str(missing), "--data", str(videos)]) == 2
    assert capsys.readouterr().err.startswith(f"{missing}: error: no such weights file")
    assert not out.exists()


@pytest.fixture(scope="module")
def mmaction(tmp_path_factory) -> Path:
    """The `videos` fixture's videos, laid out as an MMAction2 dataset (`path label` lists)."""
    from csnspec.data.synth import synthesize

    root = tmp_path_factory.mktemp("mmaction")
    synthesize(
        root, classes=2, videos=3, frames=16, size=40, seed=1, test_fraction=0.34, layout="mmaction"
    )
    return root


def test_eval_and_extract_read_any_format_with_root(tmp_path, videos, mmaction, weights, capsys):  # noqa: F811
    """`--data` is the videos to evaluate, in any format, with `--format` and `--root` as in
    `train`: an MMAction2 list kept away from its videos gives the features of the same videos."""
    path, _ = weights
    listed = tmp_path / "lists" / "test.txt"  # not beside the videos: --root says where they are
    listed.parent.mkdir()
    listed.write_text((mmaction / "test_list_videos.txt").read_text())
    common = ["--weights", str(path), *CLIPS, *CLIP_FLAGS, "--no-progress"]
    base = tmp_path / "csv.safetensors"
    assert (
        main(["extract", str(SPEC), "--data", str(videos / "test.csv"), "-o", str(base), *common])
        == 0
    )
    out = tmp_path / "mmaction.safetensors"
    data = ["--data", str(listed), "--format", "mmaction", "--root", str(mmaction)]
    assert main(["extract", str(SPEC), *data, "-o", str(out), *common]) == 0
    got, want = _read(out)[0]["features"], _read(base)[0]["features"]
    assert got.shape == want.shape == (2, 32)
    # the same videos, maybe in another order: the same rows
    by_row = lambda a: a[np.lexsort(a.T)]
    np.testing.assert_allclose(by_row(got), by_row(want), rtol=1e-6)
    # the named format is the one read: this list is no Something-Something JSON
    capsys.readouterr()
    wrong = ["--data", str(listed), "--format", "ssv2", "--root", str(mmaction)]
    assert main(["extract", str(SPEC), *wrong, "-o", str(tmp_path / "x.safetensors"), *common]) == 2
    assert str(listed) in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps([f"c{i}" for i in range(6)]))
    evaluate = ["eval", str(SPEC), "--classes", str(classes), "--workers", "0", "--json", *common]
    assert main([*evaluate, *data]) == 0
    assert json.loads(capsys.readouterr().out)["videos"] == 2
    assert main([*evaluate, *wrong]) == 2
    assert str(listed) in capsys.readouterr().err
