"""`csnspec search` end to end: analytic searches and their outputs, trained searches on
synthetic videos (in-process and on a local Ray instance), and resuming after SIGKILL."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import csnspec
from csnspec.cli import main
from tests.conftest import ROOT

SPACES = ROOT / "spaces"
STANDIN = "csnspec.search.trained:standin"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_analytic_pareto_search_writes_every_output(tmp_path, capsys):
    out = tmp_path / "out"
    args = [
        "search",
        str(SPACES / "bottleneck-x-16.space"),
        "--out",
        str(out),
        "--objective",
        "max:interactions,min:flops",
        "--top",
        "3",
    ]
    assert main(args) == 0
    log = capsys.readouterr().out
    assert log.splitlines()[0] == "space bottleneck-x-16: 2 choices, 20 combinations"
    records = lines(out / "results.jsonl")
    assert len(records) == 12 and len({r["key"] for r in records}) == 12
    for r in records:
        assert (
            csnspec.stats(csnspec.parse(r["spec"])).total.interactions == r["cost"]["interactions"]
        )
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert len(rows) == 12 and rows[0]["rank"] == "1"
    pareto = list(csv.DictReader((out / "pareto.csv").read_text().splitlines()))
    # bottleneck has the most interactions, bottleneck-DG g=32 the fewest FLOPs: both on the front
    fams = {(p["family"], p["g"]) for p in pareto}
    assert ("bottleneck", "") in fams and ("bottleneck-DG", "32") in fams
    tops = sorted((out / "top").glob("*.csn"))
    assert len(tops) == 3
    for path in tops:
        net = csnspec.load(path)
        assert csnspec.format_spec(net) == path.read_text()  # canonical
    assert (out / "plots" / "flops_vs_interactions.png").read_bytes()[:4] == b"\x89PNG"
    # again without --resume: refused, nothing lost; with --resume: nothing re-run
    assert main(args) == 2
    assert "already holds the results of a search" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert "0 trial(s) run now, 12 finished in all" in capsys.readouterr().out
    assert len(lines(out / "results.jsonl")) == 12


@pytest.mark.parametrize("strategy", ["random", "optuna"])
def test_sampling_strategies(tmp_path, strategy, capsys):
    out = tmp_path / strategy
    args = [
        "search",
        str(SPACES / "per-stage.space"),
        "--out",
        str(out),
        "--strategy",
        strategy,
        "--trials",
        "40",
        "--seed",
        "3",
        "--objective",
        "max:interactions,min:params",
        "--no-plots",
    ]
    assert main(args) == 0
    records = lines(out / "results.jsonl")
    assert len(records) == 40 and len({r["key"] for r in records}) == 40
    assert all(r["cost"]["flops"] <= 20e9 for r in records)
    # resuming with a larger budget adds trials and never repeats one
    assert (
        main(
            args[:-7]
            + [
                "--trials",
                "50",
                "--seed",
                "3",
                "--objective",
                "max:interactions,min:params",
                "--no-plots",
                "--resume",
            ]
        )
        == 0
    )
    records = lines(out / "results.jsonl")
    assert len(records) == 50 and len({r["key"] for r in records}) == 50


def test_errors_come_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "bad.space"
    bad.write_text("space s\ninput 3x8x32x32\nclasses 2\nstages simple x [1]\nrequire flop < 1G\n")
    assert main(["search", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:5:9: error: unknown quantity 'flop'" in err and "did you mean 'flops'?" in err
    assert not (tmp_path / "o").exists()
    assert (
        main(
            [
                "search",
                str(SPACES / "tiny-trained.space"),
                "--out",
                str(tmp_path / "o"),
                "--objective",
                "max:interaction",
            ]
        )
        == 2
    )
    assert "did you mean 'interactions'?" in capsys.readouterr().err
    assert (
        main(
            [
                "search",
                str(SPACES / "tiny-trained.space"),
                "--out",
                str(tmp_path / "o"),
                "--objective",
                "trained",
            ]
        )
        == 2
    )
    assert "--objective trained needs --train DATA and --val DATA" in capsys.readouterr().err
    # `--data DIR` meant DIR/train.csv and DIR/test.csv here; it names no split any more
    data = tmp_path / "synth"
    argv = ["search", str(SPACES / "tiny-trained.space"), "--out", str(tmp_path / "o"),
            "--objective", "trained", "--data", str(data)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"use --train {data / 'train.csv'} --val {data / 'test.csv'}" in err
    assert "Traceback" not in err
    # the data are opened before any trial starts, a bad one named
    missing = tmp_path / "missing.csv"
    argv = ["search", str(SPACES / "tiny-trained.space"), "--out", str(tmp_path / "o"),
            "--objective", "trained", "--train", str(missing), "--val", str(missing)]  # fmt: skip
    assert main(argv) == 2
    assert str(missing) in capsys.readouterr().err
    argv = ["search", str(SPACES / "tiny-trained.space"), "--out", str(tmp_path / "o"),
            "--train", str(missing)]  # fmt: skip
    assert main(argv) == 2
    assert "go with --objective trained" in capsys.readouterr().err
    assert (
        main(
            [
                "search",
                str(SPACES / "per-stage.space"),
                "--out",
                str(tmp_path / "o"),
                "--max-exhaustive",
                "1000",
            ]
        )
        == 2
    )
    assert "--strategy random --trials N" in capsys.readouterr().err


def test_killed_trained_search_resumes_without_rerunning(tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "csnspec.cli",
        "search",
        str(SPACES / "tiny-trained.space"),
        "--out",
        str(out),
        "--objective",
        "trained",
        "--objective-fn",
        STANDIN,
        "--executor",
        "local",
        "--fn-option",
        "seconds=0.3",
        "--no-plots",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if results.exists() and len(results.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r["key"] for r in lines(results)}
    assert 2 <= len(before) < 8, "the search finished before it could be killed"
    subprocess.run(cmd + ["--resume"], check=True, capture_output=True)
    after = lines(results)
    assert len(after) == 8 and len({r["key"] for r in after}) == 8
    started = [s["key"] for s in lines(out / "started.jsonl")]
    for key in before:
        assert started.count(key) == 1, "a finished trial ran again"
    assert set(started) == {r["key"] for r in after}


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    from csnspec.data.synth import synthesize

    path = tmp_path_factory.mktemp("synth")
    synthesize(path, classes=3, videos=4, frames=12, size=40, seed=0)
    return path


def eval_json(trial, synth, crop: int) -> dict:
    import contextlib
    import io

    args = ["eval", str(trial / "spec.csn"), "--weights", str(trial / "run" / "model.safetensors"),
            "--data", str(synth / "test.csv"), "--rate", "1", "--test-scale", str(crop),
            "--clips", "2", "--workers", "0", "--device", "cpu", "--json", "--no-progress"]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return json.loads(out.getvalue())


def _csv_data(synth) -> dict:
    """The synthetic dataset's own `path,label` lists."""
    return {"train": synth / "train.csv", "val": synth / "test.csv", "format": "csv"}


def _mmaction_data(tmp_path, synth) -> dict:
    """The same videos through MMAction2 lists (`path index`) kept in another folder, so that
    the trials find the videos only through --root."""
    lists = tmp_path / "lists"
    lists.mkdir()
    classes = json.loads((synth / "classes.json").read_text())
    shutil.copy(synth / "classes.json", lists / "classes.json")
    out = {"format": "mmaction", "root": synth}
    for split, name in (("train", "train"), ("val", "test")):
        rows = csv.reader((synth / f"{name}.csv").read_text().splitlines())
        listed = "".join(f"{path} {classes.index(label)}\n" for path, label in rows)
        (lists / f"{name}.txt").write_text(listed)
        out[split] = lists / f"{name}.txt"
    return out


def _trained_search(tmp_path, synth, executor: str, data: dict, extra=(), resume: bool = False):
    out = tmp_path / executor
    flags = [x for key, value in data.items() for x in (f"--{key}", str(value))]
    args = [
        "search",
        str(SPACES / "tiny-trained.space"),
        "--out",
        str(out),
        "--objective",
        "trained",
        *flags,
        "--strategy",
        "random",
        "--trials",
        "2",
        "--steps",
        "2",
        "--batch",
        "4",
        "--device",
        "cpu",
        "--executor",
        executor,
        *extra,
    ]
    assert main(args) == 0
    records = lines(out / "results.jsonl")
    assert len(records) == 2
    if resume:  # the same flags again with --resume: the data options agree, nothing runs again
        assert main([*args, "--resume"]) == 0
        assert lines(out / "results.jsonl") == records
        assert len(lines(out / "started.jsonl")) == 2
    for r in records:
        assert r["status"] == "ok", r.get("error")
        trial = out / "trials" / r["key"]
        assert math.isfinite(r["metrics"]["train_loss"])
        # the recorded accuracy is what the trial's saved weights score on the 3 test videos
        # (one per class), evaluated again from the files with the same 2 center views
        crop = json.loads((trial / "run" / "config.json").read_text())["crop"]
        again = eval_json(trial, synth, crop)
        assert again["videos"] == 3
        assert r["metrics"]["accuracy"] == again["video_top1"]
        assert r["metrics"]["clip_top1"] == again["clip_top1"]
    # search.json records where the data came from, as absolute paths (trials may run elsewhere)
    options = json.loads((out / "search.json").read_text())["trained_options"]
    for key in ("train", "val", "root"):
        assert options.get(key) == (str(Path(data[key]).resolve()) if key in data else None)
    assert options["format"] == data["format"]
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert plots == [
        "accuracy_vs_flops.png",
        "accuracy_vs_interactions.png",
        "flops_vs_interactions.png",
    ]
    return out


def test_trained_search_on_synthetic_videos_in_process(tmp_path, synth):
    pytest.importorskip("torch")
    _trained_search(tmp_path, synth, "local", _csv_data(synth), resume=True)


def test_trained_search_on_a_local_ray_instance(tmp_path, synth):
    pytest.importorskip("torch")
    pytest.importorskip(
        "ray.tune", reason="Ray Tune is not installed (pip install 'csnspec[search]')"
    )
    data = _mmaction_data(tmp_path, synth)
    _trained_search(tmp_path, synth, "ray", data, ["--ray-cpus", "2"])


def test_resuming_on_other_videos_is_refused(tmp_path, synth, capsys):
    out = tmp_path / "out"
    argv = ["search", str(SPACES / "tiny-trained.space"), "--out", str(out), "--objective",
            "trained", "--objective-fn", STANDIN, "--executor", "local", "--no-plots",
            "--train", str(synth / "train.csv")]  # fmt: skip
    assert main([*argv, "--val", str(synth / "test.csv")]) == 0
    options = json.loads((out / "search.json").read_text())["trained_options"]
    assert options["val"] == str((synth / "test.csv").resolve())  # another objective gets them too
    capsys.readouterr()
    assert main([*argv, "--val", str(synth / "train.csv"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "another --val" in err and "hint: resume with --val as it was" in err
    assert main([*argv, "--val", str(synth / "test.csv"), "--resume"]) == 0


def test_store_ignores_a_record_torn_by_a_kill(tmp_path):
    from csnspec.search.store import Store

    with Store(tmp_path) as store:
        store.append({"key": "a", "v": 1})
    with open(tmp_path / "results.jsonl", "ab") as f:
        f.write(b'{"key": "b", "v"')  # the write a SIGKILL interrupted
    store = Store(tmp_path)
    assert store.torn == 1 and "a" in store and "b" not in store
    store.append({"key": "b", "v": 2})
    store.append({"key": "a", "v": 3})  # finished keys are never written twice
    store.close()
    again = Store(tmp_path)
    again.close()
    assert again.records == {"a": {"key": "a", "v": 1}, "b": {"key": "b", "v": 2}}
    assert again.torn == 1  # the torn line stays a line of its own, never glued to a record


def test_a_corrupt_search_json_is_named(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "search.json").write_text('{"space_sha256": "ab')
    args = ["search", str(SPACES / "bottleneck-x-16.space"), "--out", str(out), "--resume"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{out / 'search.json'}: cannot read the search's settings" in err
    assert "Traceback" not in err
