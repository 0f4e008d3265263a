"""Training: the compiled spec learns motion, a killed run resumes bit for bit, bad videos are
skipped by name, and a spec that does not fit the clip options stops before training."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from itertools import pairwise

import pytest
from train_support import CLIP, CLIP_ARGS, EVAL_CLIP, SPEC, synth_data

from csnspec.cli import main
from csnspec.train.schedule import lr_at

torch = pytest.importorskip("torch")


def train_and_eval(data, out, backend: str) -> tuple[dict, dict]:
    from csnspec.data.transforms import ClipOptions
    from csnspec.train.eval_run import EvalConfig, evaluate
    from csnspec.train.run import TrainConfig, train

    summary = train(
        TrainConfig(
            spec=str(SPEC),
            data=str(data / "train.csv"),
            out=str(out),
            backend=backend,
            batch=8,
            steps=200,
            lr=0.1,
            workers=1,
            ckpt_every=100,
            progress=False,
            **CLIP,
        )
    )
    result = evaluate(
        EvalConfig(
            spec=str(SPEC),
            weights=str(out / "model.safetensors"),
            data=str(data / "test.csv"),
            backend=backend,
            workers=1,
            opts=ClipOptions(clips=5, crops=1, **EVAL_CLIP),
            progress=False,
        )
    )
    return summary, result


def test_torch_learns_motion_from_scratch(tmp_path_factory):
    data = synth_data(tmp_path_factory)
    out = tmp_path_factory.getbasetemp() / "run-torch"
    summary, result = train_and_eval(data, out, "torch")
    assert result["videos"] == 60 and result["classes"] == 6  # held-out videos, chance 1/6
    assert result["video_top1"] >= 0.9, result
    assert summary["steps"] == 200 and summary["skipped"] == {} and summary["final_loss"] < 1.0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10, 201, 10))
    assert {"loss", "lr", "clips_per_s"} <= set(rows[0])
    assert json.loads((out / "classes.json").read_text()) == sorted(
        json.loads((data / "classes.json").read_text())
    )
    assert (out / "model_torch.py").is_file() and (out / "checkpoints/last.safetensors").is_file()


def test_eval_cli_on_trained_weights_with_three_crops(tmp_path_factory, capsys):
    out = tmp_path_factory.getbasetemp() / "run-torch"
    if not (out / "model.safetensors").exists():
        pytest.skip("needs the weights of test_torch_learns_motion_from_scratch")
    data = synth_data(tmp_path_factory)
    code = main(
        [
            "eval",
            str(SPEC),
            "--weights",
            str(out / "model.safetensors"),
            "--data",
            str(data / "test.csv"),
            "--clips",
            "2",
            "--crops",
            "3",
            "--test-scale",
            "40",
            "--workers",
            "1",
            "--json",
            "--no-progress",
            *CLIP_ARGS,
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["views"] == "2x3" and result["clips"] == 60 * 6
    assert result["video_top1"] >= 0.85 and result["video_top5"] == 1.0


def run_cli(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "csnspec.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_sigkill_then_resume_gives_bitwise_the_same_weights(tmp_path_factory, tmp_path):
    data = synth_data(tmp_path_factory)
    args = [
        "train",
        str(SPEC),
        "--data",
        str(data / "train.csv"),
        "--batch",
        "4",
        "--steps",
        "60",
        "--ckpt-every",
        "5",
        "--log-every",
        "5",
        "--workers",
        "1",
        "--lr",
        "0.05",
        "--scale",
        "36",
        "44",
        "--no-progress",
        "--seed",
        "3",
        *CLIP_ARGS,
    ]
    full = tmp_path / "full"
    ref = run_cli([*args, "--out", str(full)])
    killed = tmp_path / "killed"
    proc = run_cli([*args, "--out", str(killed)])
    ckpt = killed / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (killed / "summary.json").exists(), "killed too late"
    assert ref.wait() == 0, ref.stderr.read().decode()
    resumed = run_cli([*args, "--out", str(killed), "--resume"])
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    summary = json.loads((killed / "summary.json").read_text())
    assert 0 < summary["resumed_from"] < 60
    a, b = weights(full / "model.safetensors"), weights(killed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [
        json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(5, 61, 5))  # no step logged twice


def test_bad_videos_are_skipped_and_reported_by_name(tmp_path_factory, tmp_path):
    data = synth_data(tmp_path_factory)
    good = [line.split(",") for line in (data / "train.csv").read_text().splitlines()[::30]]
    for path, _ in good:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes((data / path).read_bytes())
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "corrupt.mp4").write_bytes(os.urandom(5000))
    src = (data / good[0][0]).read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(src[: len(src) // 3])
    (tmp_path / "classes.json").write_text((data / "classes.json").read_text())
    label = good[0][1]
    lines = [",".join(g) for g in good] + [
        f"empty.mp4,{label}",
        f"corrupt.mp4,{label}",
        f"truncated.mp4,{label}",
        f"gone.mp4,{label}",
        f"{good[1][0]},juggling",
    ]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    n = len(good) + 3  # usable entries: every video in one batch, so each is read
    code = main(
        [
            "train",
            str(SPEC),
            "--data",
            str(tmp_path / "train.csv"),
            "--out",
            str(out),
            "--batch",
            str(n),
            "--steps",
            "2",
            "--workers",
            "1",
            "--no-progress",
            "--scale",
            "36",
            "44",
            *CLIP_ARGS,
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["skipped"]) == {
        "empty.mp4",
        "corrupt.mp4",
        "truncated.mp4",
        "gone.mp4",
        good[1][0],
    }
    assert summary["skipped"]["gone.mp4"] == "missing file"
    assert summary["skipped"][good[1][0]] == "unknown label 'juggling'"
    assert summary["clips"] == 2 * len(good) and math.isfinite(summary["final_loss"])


def test_spec_that_does_not_fit_the_clip_options_fails_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            str(SPEC),
            "--data",
            str(tmp_path / "none.csv"),
            "--out",
            str(out),
            "--frames",
            "16",
            "--crop",
            "32",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "takes 3x8x32x32 clips" in err and "3x16x32x32" in err and "--frames 8" in err
    assert not (out / "checkpoints").exists()
    code = main(
        [
            "eval",
            str(SPEC),
            "--weights",
            "w.safetensors",
            "--data",
            "d.csv",
            "--crop",
            "48",
            "--frames",
            "8",
        ]
    )
    assert code == 2 and "3x8x48x48" in capsys.readouterr().err


def test_a_finished_run_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "summary.json").write_text("{}")
    code = main(
        [
            "train",
            str(SPEC),
            "--data",
            "x.csv",
            "--out",
            str(tmp_path),
            *CLIP_ARGS,
            "--scale",
            "36",
            "44",
        ]
    )
    assert code == 2 and "already holds a run" in capsys.readouterr().err


def test_learning_rate_warms_up_then_follows_half_a_cosine():
    total, warm = 100, 20
    lrs = [lr_at(s, 0.4, total, warm) for s in range(total)]
    assert lrs[0] == pytest.approx(0.02) and lrs[19] == pytest.approx(0.4)
    assert all(a < b for a, b in pairwise(lrs[:20]))
    assert all(a >= b for a, b in pairwise(lrs[20:]))
    assert lrs[60] == pytest.approx(0.2) and lrs[-1] < 1e-3
