"""The Flax path: the same spec, compiled by the Flax backend, learns motion from scratch; its
weights evaluate with either backend."""

from __future__ import annotations

import pytest
from test_train import train_and_eval
from train_support import EVAL_CLIP, SPEC, synth_data

pytest.importorskip("flax")
pytest.importorskip("torch")


def test_flax_learns_motion_from_scratch(tmp_path_factory):
    from csnspec.data.transforms import ClipOptions
    from csnspec.train.eval_run import EvalConfig, evaluate

    data = synth_data(tmp_path_factory)
    out = tmp_path_factory.getbasetemp() / "run-flax"
    summary, result = train_and_eval(data, out, "flax")
    assert result["videos"] == 60 and result["classes"] == 6  # held-out videos, chance 1/6
    assert result["video_top1"] >= 0.9, result
    assert summary["backend"] == "flax" and summary["steps"] == 200
    # The Flax loop's weights, converted through the IR, score the same under PyTorch.
    again = evaluate(
        EvalConfig(
            spec=str(SPEC),
            weights=str(out / "model.safetensors"),
            data=str(data / "test.csv"),
            backend="torch",
            workers=1,
            opts=ClipOptions(clips=5, crops=1, **EVAL_CLIP),
            progress=False,
        )
    )
    assert abs(again["video_top1"] - result["video_top1"]) <= 1 / 60


@pytest.mark.slow
def test_flax_sigkill_then_resume_gives_bitwise_the_same_state(tmp_path_factory, tmp_path):
    import json
    import signal
    import time

    import numpy as np
    from safetensors.numpy import load_file
    from test_train import run_cli
    from train_support import CLIP_ARGS

    data = synth_data(tmp_path_factory)
    args = ["train", str(SPEC), "--backend", "flax", "--data", str(data / "train.csv"),
            "--batch", "4", "--steps", "16", "--ckpt-every", "4", "--log-every", "4",
            "--workers", "1", "--lr", "0.05", "--scale", "36", "44", "--no-progress",
            *CLIP_ARGS]  # fmt: skip
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run_cli([*args, "--out", str(full)]).wait() == 0
    proc = run_cli([*args, "--out", str(killed)])
    ckpt = killed / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (killed / "summary.json").exists(), "killed too late"
    assert run_cli([*args, "--out", str(killed), "--resume"]).wait() == 0
    assert 0 < json.loads((killed / "summary.json").read_text())["resumed_from"] < 16
    a = load_file(str(full / "checkpoints" / "last.safetensors"))
    b = load_file(str(killed / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
