"""Training on the dataset layouts people download (issue 12): a Kinetics CSV with a missing and a
corrupt video, an MMAction2 list and a Something-Something v2 layout, each trained 20 steps with
validation through `csnspec train --train LIST --val LIST`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from train_support import SPEC, read_json

from csnspec.cli import main
from csnspec.data.synth import synthesize

torch = pytest.importorskip("torch")


def _corrupt(path: Path) -> None:
    """Keep the name, lose the video: a truncated container PyAV cannot decode."""
    path.write_bytes(path.read_bytes()[:200])


def _kinetics_with_faults(root: Path, lists: dict) -> set[str]:
    """Add a row whose video was never downloaded and corrupt one video of the train CSV."""
    train = root / lists["train"]
    rows = list(csv.reader(train.read_text(encoding="utf-8").splitlines()))
    label = rows[1][0]
    rows.append([label, "neverfetched", "10", "20", "train"])
    train.write_text("\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    broken = min(root.rglob(f"{rows[2][1]}_*.mp4"))
    _corrupt(broken)
    return {"neverfetched", broken.stem}


def _corrupt_first_listed(root: Path, layout: str, lists: dict) -> set[str]:
    """Corrupt the first training video of an MMAction2 list or an SSv2 JSON."""
    if layout == "mmaction":
        rel = (root / lists["train"]).read_text(encoding="utf-8").split()[0]
        video = root / rel
    else:
        video = (
            root / "20bn-something-something-v2" / f"{read_json(root / 'train.json')[0]['id']}.webm"
        )
        if not video.exists():  # the layout keeps its videos beside the lists
            video = next(root.rglob(f"{read_json(root / 'train.json')[0]['id']}.webm"))
    _corrupt(video)
    return {video.stem}


@pytest.mark.parametrize("layout", ["kinetics", "mmaction", "ssv2"])
def test_twenty_steps_with_validation_on_each_layout(tmp_path, capsys, layout):
    data = tmp_path / layout
    summary = synthesize(data, classes=3, videos=6, frames=20, size=40, seed=3, layout=layout)
    lists = summary["lists"]
    if layout == "kinetics":
        bad = _kinetics_with_faults(data, lists)
    else:
        bad = _corrupt_first_listed(data, layout, lists)
    # `data index` probes like the loaders: every readable video found, every bad one named
    assert main(["data", "index", str(data / lists["train"]), "--json"]) == 0
    index = json.loads(capsys.readouterr().out)
    assert index["videos"] == summary["train"] - 1  # the corrupt one
    reported = " ".join(entry["name"] for entry in index["skipped"])
    for name in bad:
        assert name in reported, (name, index["skipped"])
    out = tmp_path / "run"
    code = main(
        ["train", str(SPEC), "--train", str(data / lists["train"]), "--val",
         str(data / lists["test"]), "--out", str(out), "--steps", "20", "--batch", "4",
         "--val-every", "10", "--workers", "0", "--no-progress", "--seed", "0"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    result = read_json(out / "summary.json")
    assert result["steps"] == 20
    assert result["checkpoints"]["best"] == "checkpoints/best.safetensors"
    assert (out / result["checkpoints"]["best"]).is_file()
    assert result["val"]["videos"] == summary["test"]  # every test video validated
    # every video that can be read was trained on or validated; every bad one is named
    skipped = " ".join(result["skipped"])
    for name in bad:
        assert name in skipped, (name, result["skipped"])
    assert read_json(out / "classes.json") == sorted(summary["classes"])
