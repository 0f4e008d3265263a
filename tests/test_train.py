"""Training: following the size hint gives a spec that learns motion (validated as it trains,
the best checkpoint kept), a killed run resumes bit for bit, bad videos are skipped by name, and
bad settings stop before training with one message."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from itertools import pairwise

import pytest
from train_support import CLIP, CLIP_ARGS, EVAL_CLIP, SPEC, read_json, short_run, synth_data

from csnspec.cli import main
from csnspec.train.schedule import lr_at

torch = pytest.importorskip("torch")


def train_and_eval(data, out, backend: str) -> tuple[dict, dict]:
    """The API path: 200 steps on the training list, then 5x1 views of the test list."""
    from csnspec.data.transforms import ClipOptions
    from csnspec.train.config import TrainConfig
    from csnspec.train.eval_run import EvalConfig, evaluate
    from csnspec.train.trainer import train

    summary = train(
        TrainConfig(
            spec=str(SPEC),
            train=str(data / "train.csv"),
            out=str(out),
            backend=backend,
            batch=8,
            steps=200,
            lr=0.1,
            workers=1,
            ckpt_every=100,
            progress=False,
            clip=ClipOptions(**CLIP),
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


@pytest.fixture(scope="session")
def hinted_run(tmp_path_factory):
    """A run that asked for the wrong clip size, then did exactly what the hint said (no --scale:
    the scale range follows the crop), validating on the held-out videos every 50 steps."""
    data = synth_data(tmp_path_factory)
    out = tmp_path_factory.getbasetemp() / "run-hinted"
    args = ["train", str(SPEC), "--train", str(data / "train.csv"), "--val",
            str(data / "test.csv"), "--out", str(out), "--steps", "200", "--val-every", "50",
            "--val-clips", "2", "--workers", "1", "--no-progress"]  # fmt: skip
    wrong = run_cli([*args, "--frames", "16", "--crop", "32"])
    assert wrong.returncode == 2
    hint = re.search(r"hint: pass (--frames \d+ --crop \d+)", wrong.stderr)
    assert hint, wrong.stderr
    done = run_cli([*args, *hint.group(1).split()])
    assert done.returncode == 0, done.stderr
    return data, out, done


def test_following_the_size_hint_gives_a_run_that_learns(hinted_run):
    data, out, done = hinted_run
    summary = json.loads(done.stdout)
    assert read_json(out / "summary.json") == summary
    assert read_json(out / "config.json")["scale"] == [37, 46]  # 256-320 scaled to a 32 crop
    best = summary["best_val"]
    assert best["video_top1"] >= 0.85, best  # 60 held-out videos; chance is 1/6
    assert summary["val"]["videos"] == 60 and summary["val"]["step"] == 200
    assert summary["checkpoints"] == {
        "last": "checkpoints/last.safetensors",
        "best": "checkpoints/best.safetensors",
    }
    assert (out / "checkpoints/best.safetensors").is_file()
    assert summary["steps"] == 200 and summary["skipped"] == {} and summary["final_loss"] < 1.0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(10, 201, 10))
    vals = [r for r in rows if "val" in r]
    assert [r["step"] for r in vals] == [50, 100, 150, 200]
    assert max(r["val"]["video_top1"] for r in vals) == best["video_top1"]
    assert json.loads((out / "classes.json").read_text()) == sorted(
        json.loads((data / "classes.json").read_text())
    )
    # the human-readable end names the run folder, steps, loss, best accuracy, speed
    assert f"run {out}" in done.stderr and "training on cpu" in done.stderr
    assert f"video top-1 {best['video_top1']:.1%}" in done.stderr and "clips/s" in done.stderr


def test_eval_cli_on_trained_weights_with_three_crops(hinted_run, capsys):
    data, out, _ = hinted_run
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
            "--workers",
            "1",
            "--json",
            "--no-progress",
        ]
    )
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert code == 0 and result["views"] == "2x3" and result["clips"] == 60 * 6
    assert result["video_top1"] >= 0.8 and result["video_top5"] == 1.0
    assert result["device"] == "cpu" and "evaluating on cpu" in captured.err


def run_cli(args, timeout=600):
    """The CLI in a child process; output goes to files, so a full pipe can never block it."""
    return subprocess.run(
        [sys.executable, "-m", "csnspec.cli", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def start_cli(args, log):
    return subprocess.Popen(
        [sys.executable, "-m", "csnspec.cli", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_sigkill_then_resume_gives_bitwise_the_same_weights(tmp_path_factory, tmp_path):
    data = synth_data(tmp_path_factory)
    args = ["train", str(SPEC), "--train", str(data / "train.csv"), "--batch", "4", "--steps",
            "60", "--ckpt-every", "5", "--log-every", "5", "--workers", "1", "--lr", "0.05",
            "--scale", "36", "44", "--no-progress", "--seed", "3", *CLIP_ARGS]  # fmt: skip
    full, killed = tmp_path / "full", tmp_path / "killed"
    with open(tmp_path / "full.log", "w") as full_log, open(tmp_path / "kill.log", "w") as log:
        ref = start_cli([*args, "--out", str(full)], full_log)
        proc = start_cli([*args, "--out", str(killed)], log)
        ckpt = killed / "checkpoints" / "last.safetensors"
        deadline = time.monotonic() + 120
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert ref.wait() == 0, (tmp_path / "full.log").read_text()
    assert ckpt.exists() and not (killed / "summary.json").exists(), "killed too late"
    with open(killed / "metrics.jsonl", "a") as f:
        f.write('{"step": 55, "lo')  # what a kill during a write leaves
    resumed = run_cli(["train", "--resume", str(killed)])  # nothing else needed
    assert resumed.returncode == 0, resumed.stderr
    summary = read_json(killed / "summary.json")
    assert 0 < summary["resumed_from"] < 60
    a, b = weights(full / "model.safetensors"), weights(killed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [
        json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(5, 61, 5))  # no step logged twice, the torn line gone


def test_resume_extends_a_finished_run_and_never_rewrites_it(tmp_path_factory, tmp_path, capsys):
    data = synth_data(tmp_path_factory)
    out = tmp_path / "run"
    assert main([*short_run(data, out, "--scale", "36", "44"), *CLIP_ARGS]) == 0
    capsys.readouterr()
    before = (out / "summary.json").read_bytes()
    assert main(["train", "--resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert "is finished (4 steps)" in err and "--steps N > 4" in err
    assert (out / "summary.json").read_bytes() == before
    assert main(["train", "--resume", str(out), "--steps", "12"]) == 0
    summary = read_json(out / "summary.json")
    assert summary["steps"] == 12 and summary["resumed_from"] == 4 and summary["clips"] == 32
    assert math.isfinite(summary["final_loss"])
    assert read_json(out / "config.json")["warmup"] == 1  # 10/45 of the first 4 steps, not of 12
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", "3"]) == 2
    assert "already trained 12 steps" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--lr", "0.5"]) == 2
    assert "cannot change --lr" in capsys.readouterr().err


def test_corrupt_run_files_are_named(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"spec": "x.csn", "tra')
    assert main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'config.json'}: cannot read the run's config" in err
    assert "Traceback" not in err
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


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
    args = ["train", str(SPEC), "--train", str(tmp_path / "train.csv"), "--out", str(out),
            "--batch", str(n), "--steps", "2", "--workers", "1", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    summary = read_json(out / "summary.json")
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


def test_a_dataset_without_one_readable_video_refuses_to_start(tmp_path, capsys):
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(os.urandom(3000))
    (tmp_path / "train.csv").write_text("a.mp4,up\nb.mp4,down\n")
    out = tmp_path / "run"
    code = main(["train", str(SPEC), "--train", str(tmp_path / "train.csv"), "--out", str(out),
                 "--batch", "2", "--steps", "2", "--workers", "0", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "none of the 2 videos can be decoded" in err and "a.mp4" in err
    assert not (out / "summary.json").exists()


def test_spec_that_does_not_fit_the_clip_options_fails_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", str(SPEC), "--train", str(tmp_path / "none.csv"), "--out", str(out),
                 "--frames", "16", "--crop", "32"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "takes 3x8x32x32 clips" in err and "3x16x32x32" in err and "--frames 8" in err
    assert not (out / "checkpoints").exists()
    code = main(["eval", str(SPEC), "--weights", "w.safetensors", "--data", "d.csv", "--crop",
                 "48", "--frames", "8"])  # fmt: skip
    assert code == 2 and "3x8x48x48" in capsys.readouterr().err
    code = main(["train", str(SPEC), "--train", "x.csv", "--out", str(out), "--scale", "20", "30"])
    assert code == 2 and "--scale 20 30" in capsys.readouterr().err
    code = main(["train", str(SPEC), "--data", "x.csv"])
    assert code == 2 and "hint: use --train x.csv" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a PyTorch without CUDA")
def test_asking_for_cuda_without_it_is_one_message(tmp_path_factory, tmp_path, capsys):
    data = synth_data(tmp_path_factory)
    assert main([*short_run(data, tmp_path / "run"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: this PyTorch sees no CUDA device" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before the run folder is written
    code = main(["eval", str(SPEC), "--weights", "w.safetensors", "--data", "d.csv", "--device",
                 "cuda"])  # fmt: skip
    assert code == 2 and "--device cuda" in capsys.readouterr().err


def test_a_finished_run_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "summary.json").write_text("{}")
    code = main(["train", str(SPEC), "--train", "x.csv", "--out", str(tmp_path)])
    assert code == 2 and "already holds a run" in capsys.readouterr().err


def test_learning_rate_warms_up_then_follows_half_a_cosine():
    total, warm = 100, 20
    lrs = [lr_at(s, 0.4, total, warm) for s in range(total)]
    assert lrs[0] == pytest.approx(0.02) and lrs[19] == pytest.approx(0.4)
    assert all(a < b for a, b in pairwise(lrs[:20]))
    assert all(a >= b for a, b in pairwise(lrs[20:]))
    assert lrs[60] == pytest.approx(0.2) and lrs[-1] < 1e-3
