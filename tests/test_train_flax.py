"""The Flax path: the same spec, compiled by the Flax backend, learns motion from scratch; its
weights evaluate with either backend; an interrupted run resumes to bitwise the same state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_train import train_and_eval
from train_support import (
    CLIP_ARGS,
    EVAL_CLIP,
    SPEC,
    jax_compile_cache,
    read_json,
    short_run,
    synth_data,
)

from csnspec.cli import main

pytest.importorskip("flax")
pytest.importorskip("torch")


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    """The runs here compile the same functions: later ones read the first's from disk."""
    with jax_compile_cache(tmp_path_factory.getbasetemp() / "jax-cache"):
        yield


def test_flax_learns_motion_from_scratch(tmp_path_factory):
    from csnspec.data.transforms import ClipOptions
    from csnspec.train.eval_run import EvalConfig, evaluate

    data = synth_data(tmp_path_factory)
    out = tmp_path_factory.getbasetemp() / "run-flax"
    summary, result = train_and_eval(data, out, "flax")
    assert result["videos"] == 60 and result["classes"] == 6  # held-out videos, chance 1/6
    assert result["video_top1"] >= 0.9, result
    assert summary["backend"] == "flax" and summary["steps"] == 200
    assert summary["precision"] == "float32"  # --amp auto on the CPU
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


def test_flax_interrupted_then_resumed_gives_bitwise_the_same_state(
    tmp_path_factory, tmp_path, monkeypatch
):
    """Stopped right after its step-4 checkpoint (what a SIGKILL at that moment leaves; the
    PyTorch test kills a real process), the run resumes from the folder alone."""
    from safetensors.numpy import load_file

    from csnspec.train import fit

    data = synth_data(tmp_path_factory)
    extra = ["--backend", "flax", "--ckpt-every", "2", "--log-every", "2", "--val",
             str(data / "test.csv"), "--val-every", "3", "--val-clips", "1", "--ema", "0.5",
             "--scale", "36", "44", *CLIP_ARGS]  # fmt: skip
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(short_run(data, full, *extra, steps=6)) == 0
    save = fit.save_checkpoint

    def stop_after_step_4(run, stepper, step, *rest):
        save(run, stepper, step, *rest)
        if step == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(fit, "save_checkpoint", stop_after_step_4)
    assert main(short_run(data, killed, *extra, steps=6)) == 130  # the CLI's "interrupted"
    monkeypatch.undo()
    assert not (killed / "summary.json").exists()
    assert main(["train", "--resume", str(killed)]) == 0
    summary = read_json(killed / "summary.json")
    assert (
        summary["resumed_from"] == 4
        and summary["best_val"] == read_json(full / "summary.json")["best_val"]
    )
    for name in ("checkpoints/last.safetensors", "model.safetensors", "model_ema.safetensors"):
        a, b = load_file(str(full / name)), load_file(str(killed / name))
        assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a) == ("last" in name)
        assert all(np.array_equal(a[k], b[k]) for k in a), name
    steps = [
        json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [2, 3, 4, 6, 6]  # losses every 2 steps, validations at 3 and 6


def test_flax_fine_tunes_from_torch_weights_with_frozen_bn_and_stages(tmp_path_factory, tmp_path):
    """PyTorch weights (converted through the IR) start a Flax run; frozen tensors stay put.
    The run computes in bf16 (`--amp bf16`): its weights stay float32."""
    from safetensors.numpy import load_file

    from csnspec.lowering import lower
    from csnspec.parse import load
    from csnspec.weights.convert import torch_to_flax

    data = synth_data(tmp_path_factory)
    source, out = tmp_path / "source", tmp_path / "tuned"
    assert main(short_run(data, source, "--scale", "36", "44", steps=2)) == 0
    args = ["--backend", "flax", "--init", str(source / "model.safetensors"), "--freeze-bn",
            "--freeze-stages", "1", "--lr", "0.5", "--scale", "36", "44", "--amp", "bf16"]  # fmt: skip
    assert main(short_run(data, out, *args, steps=2)) == 0
    a = torch_to_flax(load_file(str(source / "model.safetensors")), lower(load(SPEC)))
    b = load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and {v.dtype for v in b.values()} == {np.dtype(np.float32)}
    summary = read_json(out / "summary.json")
    assert summary["precision"] == "bf16" and np.isfinite(summary["final_loss"])
    frozen = [k for k in a if k.startswith(("stem.", "layer1.")) or "bn" in k.rsplit(".", 2)[-2]]
    assert "layer2.0.shortcut_bn.var" in frozen and "layer1.0.conv_b.kernel" in frozen
    assert all(np.array_equal(a[k], b[k]) for k in frozen)
    for k in ("layer2.0.conv_b.kernel", "head.fc.kernel"):
        assert not np.array_equal(a[k], b[k]), k
    assert read_json(out / "init.json")["reinitialised"] == []
