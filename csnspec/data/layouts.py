"""Where `data synth --layout` puts its videos and lists: each layout as the real dataset is
downloaded, so that every dataset format can be tried (and tested) on synthetic videos.

A layout names the video files and writes the train and test lists; `formats.open_dataset`
reads them back.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_text

LAYOUTS = ("folders", "kinetics", "mmaction", "ssv2")

ListedVideo = tuple[str, str, int]  # (video path relative to the root, class name, class index)


def video_path(layout: str, name: str, k: int, i: int) -> str:
    """The path of video `i` of class `k` (named `name`), relative to the dataset root."""
    if layout == "kinetics":
        return f"videos/{name}/{youtube_id(k, i)}_{10 * i:06d}_{10 * i + 10:06d}.mp4"
    if layout == "ssv2":
        return f"20bn-something-something-v2/{ssv2_id(k, i)}.webm"
    if layout == "mmaction":
        return f"videos/{name}/{name}_{i:04d}.mp4"
    return f"{name}/{name}_{i:04d}.mp4"


def youtube_id(k: int, i: int) -> str:
    """An 11-character id, as YouTube's are."""
    return f"syn{k:03d}v{i:04d}"


def ssv2_id(k: int, i: int) -> int:
    return 100000 * (k + 1) + i


def write_lists(
    out: Path, layout: str, rows: dict[str, list[ListedVideo]], classes: list[str]
) -> dict:
    """Write the lists of the `train` and `test` splits; return {split: list file name}."""
    if layout == "ssv2":
        write_json(out / "labels.json", {name: str(k) for k, name in enumerate(classes)})
        names = {"train": "train.json", "test": "validation.json"}
        for split, entries in rows.items():
            write_json(
                out / names[split],
                [
                    {
                        "id": Path(rel).stem,
                        "label": f"{name} (something)",
                        "template": name,
                        "placeholders": ["something"],
                    }
                    for rel, name, _ in entries
                ],
            )
        return names
    if layout == "kinetics":
        names = {"train": "train.csv", "test": "test.csv"}
        split_column = {"train": "train", "test": "val"}
        for split, entries in rows.items():
            lines = ["label,youtube_id,time_start,time_end,split"]
            for rel, name, _ in entries:
                ytid, start, end = Path(rel).stem.rsplit("_", 2)
                lines.append(f"{name},{ytid},{int(start)},{int(end)},{split_column[split]}")
            write_text(out / names[split], "\n".join(lines) + "\n")
        return names
    write_json(out / "classes.json", classes)
    if layout == "mmaction":
        names = {"train": "train_list_videos.txt", "test": "test_list_videos.txt"}
        for split, entries in rows.items():
            write_text(out / names[split], "".join(f"{rel} {k}\n" for rel, _, k in entries))
        return names
    names = {"train": "train.csv", "test": "test.csv"}
    for split, entries in rows.items():
        write_text(out / names[split], "".join(f"{rel},{name}\n" for rel, name, _ in entries))
    return names


def write_json(path: Path, value) -> None:
    write_text(path, json.dumps(value, indent=1) + "\n")
