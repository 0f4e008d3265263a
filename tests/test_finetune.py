"""Fine-tuning (`--init`): a model trained on one synthetic task starts a run on a task with
another class count; the classifier is re-initialised and said so, and the fine-tuned run beats
a from-scratch run of the same length on held-out videos."""

from __future__ import annotations

import pytest
from train_support import SPEC, read_json, synth_data

from csnspec.cli import main

torch = pytest.importorskip("torch")


def train_args(data, out, *extra, steps: int):
    return ["train", str(SPEC), "--train", str(data / "train.csv"), "--val", str(data / "test.csv"),
            "--out", str(out), "--steps", str(steps), "--batch", "8", "--workers", "1",
            "--val-clips", "2", "--no-progress", "--seed", "2", *extra]  # fmt: skip


def test_fine_tuned_run_beats_a_run_from_scratch(tmp_path_factory, tmp_path, capsys):
    six = synth_data(tmp_path_factory, classes=6)  # up/down/sideways, slow and fast
    three = synth_data(tmp_path_factory, classes=3)  # up/down/sideways at one speed
    source = tmp_path / "source"
    assert main(train_args(six, source, "--lr", "0.1", steps=80)) == 0
    capsys.readouterr()
    tuned, scratch = tmp_path / "tuned", tmp_path / "scratch"
    init = str(source / "model.safetensors")
    assert main(train_args(three, tuned, "--init", init, "--lr", "0.02", steps=15)) == 0
    err = capsys.readouterr().err
    assert main(train_args(three, scratch, "--lr", "0.02", steps=15)) == 0
    note = read_json(tuned / "init.json")
    assert note["reinitialised"] == ["head.fc.weight", "head.fc.bias"]  # 6 -> 3 classes
    assert note["skipped"] == [] and "stem.conv1.weight" in note["loaded"]
    assert f"init from {init}" in err and "re-initialised: head.fc.weight, head.fc.bias" in err
    a, b = read_json(tuned / "summary.json"), read_json(scratch / "summary.json")
    print(
        f"fine-tuned: video top-1 {a['val']['video_top1']:.3f}, loss {a['final_loss']:.3f}; "
        f"from scratch: video top-1 {b['val']['video_top1']:.3f}, loss {b['final_loss']:.3f}"
    )
    assert a["val"]["videos"] == 30  # 10 held-out videos a class
    assert a["val"]["video_top1"] > b["val"]["video_top1"] + 0.1
    assert a["final_loss"] < b["final_loss"]
