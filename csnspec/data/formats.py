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

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CsnError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
FORMATS = ("folder", "csv", "kinetics", "mmaction", "ssv2", "ssv1")
KINETICS_HEADER = ("label", "youtube_id", "time_start", "time_end")


@dataclass
class VideoIndex:
    """Videos and their class indices; `skipped` maps entries left out to the reason.

    `labels[i]` holds every label of video i where a list gives several (MMAction2 multi-label);
    `videos[i][1]` is the first of them.
    """

    root: Path
    videos: list[tuple[str, int]]  # (path relative to root, class index)
    classes: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    format: str = "folder"
    labels: list[tuple[int, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.videos)

    def path(self, i: int) -> Path:
        return self.root / self.videos[i][0]

    def add(self, rel: str, labels: tuple[int, ...]) -> None:
        self.videos.append((rel, labels[0]))
        self.labels.append(labels)


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
        "folder": _read_folder,
        "csv": _read_csv,
        "kinetics": _read_kinetics,
        "mmaction": _read_mmaction,
        "ssv2": _read_ssv2,
        "ssv1": _read_ssv1,
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
        if _ssv2_file(source, "labels"):
            return "ssv2"
        if (source / SSV1_LABELS).is_file():
            return "ssv1"
        return "folder"
    if source.suffix.lower() == ".json":
        return "ssv2"
    first = next(iter(_lines(source)), (0, ""))[1]
    if "youtube_id" in first.replace(" ", "").lower().split(","):
        return "kinetics"
    if first.partition(";")[0].isdigit():
        return "ssv1"
    if "," in first:
        return "csv"
    return "mmaction"


def _lines(path: Path):
    """(line number, stripped text) of the non-blank, non-comment lines; a BOM is dropped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise CsnError(f"cannot read the list: {err}", filename=str(path)) from None
    for n, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield n, line


def _fixed(classes, found) -> list[str]:
    return list(classes) if classes is not None else list(found)


def _label_index(label: str, lookup: dict[str, int], count: int) -> int | None:
    """A label by name, or by index when it is a number in range."""
    if label in lookup:
        return lookup[label]
    if label.isdigit() and int(label) < count:
        return int(label)
    return None


# ---------------------------------------------------------------- class folders


def _read_folder(source: Path, root, split, classes) -> VideoIndex:
    if split and (source / split).is_dir():
        source = source / split
    found = sorted(d.name for d in source.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise CsnError(
            "no class folders (expected FOLDER/<class>/<video>)",
            filename=str(source),
            hint="a list file or a dataset folder of another format needs --format",
        )
    classes = _fixed(classes, found)
    lookup = {c: i for i, c in enumerate(classes)}
    index = VideoIndex(source, [], classes)
    for name in found:
        for f in sorted((source / name).iterdir()):
            if f.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            rel = f"{name}/{f.name}"
            if name in lookup:
                index.add(rel, (lookup[name],))
            else:
                index.skipped[rel] = f"unknown label '{name}'"
    return index


# ---------------------------------------------------------------- path,label lists


def _read_csv(source: Path, root, split, classes) -> VideoIndex:
    rows, bad = [], {}
    for n, line in _lines(source):
        if line.replace(" ", "").lower() == "path,label":
            continue
        name, sep, label = line.rpartition(",")
        name, label = name.strip(), label.strip()
        if not sep:
            bad[f"{source.name}:{n}"] = f"expected `path,label`, got '{_short(line)}'"
        elif not name:
            bad[f"{source.name}:{n}"] = "empty path"
        elif not label:
            bad[f"{source.name}:{n}"] = f"no label for '{_short(name)}'"
        else:
            rows.append((name, label))
    if classes is None:
        beside = source.parent / "classes.json"
        if beside.is_file():
            classes = _json(beside)
        elif rows and all(label.isdigit() for _, label in rows):
            classes = [str(i) for i in range(max(int(label) for _, label in rows) + 1)]
        else:
            classes = sorted({label for _, label in rows if not label.isdigit()})
    return _listed(root or source.parent, rows, list(classes), bad)


def _listed(root: Path, rows, classes: list[str], bad: dict[str, str], frames=False) -> VideoIndex:
    """An index of (path, label or labels) rows whose files (`frames`: folders of frames)
    should exist under `root`."""
    lookup = {c: i for i, c in enumerate(classes)}
    index = VideoIndex(root, [], classes, dict(bad))
    for name, labels in rows:
        labels = (labels,) if isinstance(labels, str) else labels
        ks = [_label_index(label, lookup, len(classes)) for label in labels]
        unknown = [label for label, k in zip(labels, ks) if k is None]
        if unknown:
            index.skipped[name] = f"unknown label '{unknown[0]}'"
        elif not ((root / name).is_dir() if frames else (root / name).is_file()):
            index.skipped[name] = "missing frame folder" if frames else "missing file"
        else:
            index.add(name, tuple(ks))
    return index


def _short(text: str, limit: int = 80) -> str:
    """Text for a message: control characters escaped, long text cut."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CsnError(f"cannot read it as JSON: {err}", filename=str(path)) from None


# ---------------------------------------------------------------- MMAction2 video lists


def _read_mmaction(source: Path, root, split, classes) -> VideoIndex:
    rows, bad = [], {}
    for n, line in _lines(source):
        name, *labels = line.split()
        if not labels:
            bad[f"{source.name}:{n}"] = f"no label for '{_short(name)}'"
        elif not all(label.isdigit() for label in labels):
            bad[f"{source.name}:{n}"] = f"expected `path label [label ...]`, got '{_short(line)}'"
        else:
            rows.append((name, tuple(labels)))
    if classes is None:
        beside = source.parent / "classes.json"
        if beside.is_file():
            classes = _json(beside)
        else:
            top = max((int(label) for _, labels in rows for label in labels), default=-1)
            classes = [str(i) for i in range(top + 1)]
    return _listed(root or source.parent, rows, list(classes), bad)


# ---------------------------------------------------------------- Kinetics


def _read_kinetics(source: Path, root, split, classes) -> VideoIndex:
    root = root or source.parent
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise CsnError(f"cannot read the list: {err}", filename=str(source)) from None
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    if not set(KINETICS_HEADER[1:]) <= set(header):
        raise CsnError(
            f"not a Kinetics CSV: the header has no {', '.join(KINETICS_HEADER[1:])}",
            filename=str(source),
        )
    col = {h: i for i, h in enumerate(header)}
    rows, bad = [], {}
    for n, row in enumerate(reader, 2):
        if not row or not "".join(row).strip():
            continue
        try:
            cells = {h: row[i].strip() for h, i in col.items()}
            stem = "{}_{:06d}_{:06d}".format(
                cells["youtube_id"], int(float(cells["time_start"])), int(float(cells["time_end"]))
            )
        except (IndexError, ValueError):
            bad[f"{source.name}:{n}"] = (
                f"expected {','.join(header)}, got '{_short(','.join(row))}'"
            )
            continue
        if split and "split" in cells and cells["split"] != split:
            continue
        label = cells.get("label", "")
        if not label:
            bad[f"{source.name}:{n}"] = f"no label for '{stem}'"
            continue
        rows.append((stem, cells["youtube_id"], label))
    classes = _fixed(classes, sorted({label for *_, label in rows}))
    lookup = {c: i for i, c in enumerate(classes)}
    files = _videos_under(root)
    index = VideoIndex(root, [], classes, bad)
    for stem, youtube_id, label in rows:
        k = lookup.get(label)
        if k is None:
            index.skipped[stem] = f"unknown label '{label}'"
            continue
        found = files.get(stem) or files.get(youtube_id)
        if not found:
            index.skipped[stem] = "missing file"
            continue
        # the same clip in several folders: the one in its class folder
        in_class = [f for f in found if Path(f).parent.name in (label, label.replace(" ", "_"))]
        index.add((in_class or found)[0], (k,))
    return index


def _videos_under(root: Path) -> dict[str, list[str]]:
    """Video files under `root` (any depth) by file stem, as paths relative to root."""
    if not root.is_dir():
        raise CsnError("the videos folder does not exist", filename=str(root))
    out: dict[str, list[str]] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root)
        for name in sorted(names):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in VIDEO_SUFFIXES:
                out.setdefault(stem, []).append((rel / name).as_posix())
    return out


# ---------------------------------------------------------------- Something-Something v2

SSV2_SPLITS = {"train": "train", "val": "validation", "validation": "validation"}


def _ssv2_file(folder: Path, name: str) -> Path | None:
    for candidate in (f"{name}.json", f"something-something-v2-{name}.json"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def _read_ssv2(source: Path, root, split, classes) -> VideoIndex:
    if source.is_dir():
        part = SSV2_SPLITS.get(split or "train")
        listing = _ssv2_file(source, part) if part else None
        if listing is None:
            raise CsnError(
                f"no {split or 'train'} split (train.json or validation.json)",
                filename=str(source),
                hint="--split train or --split val",
            )
        folder = source
    else:
        listing, folder = source, source.parent
    labels_file = _ssv2_file(folder, "labels")
    if labels_file is None:
        raise CsnError("no labels.json beside the Something-Something list", filename=str(listing))
    label_map = _json(labels_file)
    entries = _json(listing)
    if not isinstance(label_map, dict) or not isinstance(entries, list):
        raise CsnError("not a Something-Something v2 file", filename=str(listing))
    by_index = sorted(label_map.items(), key=lambda kv: int(kv[1]))
    if classes is None:
        classes = [name for name, _ in by_index]
    if root is None:
        videos = folder / "20bn-something-something-v2"
        root = videos if videos.is_dir() else folder
    rows, bad = [], {}
    for n, entry in enumerate(entries):
        vid = str(entry.get("id", "")).strip() if isinstance(entry, dict) else ""
        template = entry.get("template") if isinstance(entry, dict) else None
        if not vid or not isinstance(template, str):
            bad[f"{listing.name}[{n}]"] = "expected an entry with `id` and `template`"
            continue
        rows.append((f"{vid}.webm", template.replace("[", "").replace("]", "")))
    return _listed(root, rows, list(classes), bad)


# ---------------------------------------------------------------- Something-Something v1

SSV1_LABELS = "something-something-v1-labels.csv"
SSV1_SPLITS = {"train": "train", "val": "validation", "validation": "validation"}


def _read_ssv1(source: Path, root, split, classes) -> VideoIndex:
    if source.is_dir():
        part = SSV1_SPLITS.get(split or "train")
        listing = source / f"something-something-v1-{part}.csv"
        if part is None or not listing.is_file():
            raise CsnError(
                f"no {split or 'train'} split (something-something-v1-train.csv or "
                "-validation.csv)",
                filename=str(source),
                hint="--split train or --split val",
            )
        folder = source
    else:
        listing, folder = source, source.parent
    if classes is None:
        labels = folder / SSV1_LABELS
        if not labels.is_file():
            raise CsnError(f"no {SSV1_LABELS} beside the list", filename=str(listing))
        classes = [label for _, label in _lines(labels)]
    if root is None:
        frames = folder / "20bn-something-something-v1"
        root = frames if frames.is_dir() else folder
    rows, bad = [], {}
    for n, line in _lines(listing):
        vid, sep, label = (part.strip() for part in line.partition(";"))
        if not sep or not vid or not label:
            bad[f"{listing.name}:{n}"] = f"expected `id;label`, got '{_short(line)}'"
        else:
            rows.append((vid, label))
    return _listed(root, rows, list(classes), bad, frames=True)
