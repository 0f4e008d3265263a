"""The official Kinetics-400/600/700 CSVs, with the videos wherever the download put them."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ...errors import CsnError
from .index import VIDEO_SUFFIXES, VideoIndex, fixed, short

KINETICS_HEADER = ("label", "youtube_id", "time_start", "time_end")


def read_kinetics(source: Path, root, split, classes) -> VideoIndex:
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
            bad[f"{source.name}:{n}"] = f"expected {','.join(header)}, got '{short(','.join(row))}'"
            continue
        if split and "split" in cells and cells["split"] != split:
            continue
        label = cells.get("label", "")
        if not label:
            bad[f"{source.name}:{n}"] = f"no label for '{stem}'"
            continue
        rows.append((stem, cells["youtube_id"], label))
    classes = fixed(classes, sorted({label for *_, label in rows}))
    lookup = {c: i for i, c in enumerate(classes)}
    files = videos_under(root)
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


def videos_under(root: Path) -> dict[str, list[str]]:
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
