"""Dataset formats: the one entry point, `open_dataset`, and a reader per layout people download.

Every reader turns its annotation files into a `VideoIndex`: the usable videos (path relative to
the index's root, class index), the class names in index order, and every entry left out, by name,
with the reason. A bad entry never stops the reading; only a dataset with nothing usable does.

Formats (`FORMATS`), detected from the source unless named:

* `folder`   root/<class>/<video> (classes: the sorted folder names)
* `csv`      `path,label` lines, optional header (classes: classes.json beside, else the labels)
* `kinetics` the official Kinetics-400/600/700 CSV `label,youtube_id,time_start,time_end,split`,
             videos `{youtube_id}_{start:06d}_{end:06d}.mp4` flat or in class folders
* `mmaction` MMAction2 video lists, `path label [label ...]` space-separated
* `ssv2`     Something-Something v2: labels.json + train.json / validation.json, `<id>.webm`
* `ssv1`     Something-Something v1: labels CSV + `id;label` CSVs, JPEG frame folders `<id>/`
"""

from __future__ import annotations

from pathlib import Path

from ...errors import CsnError
from .index import VIDEO_SUFFIXES, VideoIndex, lines
from .kinetics import read_kinetics
from .lists import read_csv, read_folder, read_mmaction
from .something import SSV1_LABELS, read_ssv1, read_ssv2, ssv2_file

__all__ = ["FORMATS", "VIDEO_SUFFIXES", "VideoIndex", "detect_format", "open_dataset"]

FORMATS = ("folder", "csv", "kinetics", "mmaction", "ssv2", "ssv1")


def open_dataset(
    source,
    *,
    root=None,
    format: str | None = None,
    split: str | None = None,
    classes: list[str] | None = None,
    allow_empty: bool = False,
) -> VideoIndex:
    """The index of the dataset at `source`: a folder, a list file, or a dataset folder.

    `root`: where the videos are (default: beside the list, or a layout's usual folder);
    `format`: one of FORMATS (default: detected from `source`); `split`: the split to read
    (`train`, `val`/`validation`; a Kinetics CSV keeps the rows of that split); `classes`: a fixed
    class list (e.g. a trained run's classes.json) instead of the one the dataset implies.
    Raises CsnError naming the file for an unreadable source or, unless `allow_empty`, a
    dataset with no usable video.
    """
    source = Path(source)
    if not source.exists():
        raise CsnError(
            "no such dataset",
            filename=str(source),
            hint="give a folder of class folders, a list file, or a dataset folder "
            f"({', '.join(FORMATS)})",
        )
    fmt = format or detect_format(source)
    if fmt not in FORMATS:
        raise CsnError(f"unknown dataset format '{fmt}' (one of {', '.join(FORMATS)})")
    reader = {
        "folder": read_folder,
        "csv": read_csv,
        "kinetics": read_kinetics,
        "mmaction": read_mmaction,
        "ssv2": read_ssv2,
        "ssv1": read_ssv1,
    }[fmt]
    index = reader(source, Path(root) if root else None, split, classes)
    index.format = fmt
    if not index.videos and not allow_empty:
        raise CsnError(
            f"no usable video ({len(index.skipped)} entries skipped)",
            filename=str(source),
            hint="`csnspec data index` lists every entry skipped and why",
        )
    return index


def detect_format(source: Path) -> str:
    """The format of `source`, from its layout or its first line."""
    if source.is_dir():
        if ssv2_file(source, "labels"):
            return "ssv2"
        if (source / SSV1_LABELS).is_file():
            return "ssv1"
        return "folder"
    if source.suffix.lower() == ".json":
        return "ssv2"
    first = next(iter(lines(source)), (0, ""))[1]
    if "youtube_id" in first.replace(" ", "").lower().split(","):
        return "kinetics"
    if first.partition(";")[0].isdigit():
        return "ssv1"
    if "," in first:
        return "csv"
    return "mmaction"
