"""Something-Something v2 (JSON lists, webm videos) and v1 (semicolon CSVs, JPEG frame folders)."""

from __future__ import annotations

from pathlib import Path

from ...errors import CsnError
from .index import VideoIndex, lines, listed, read_json, short

SSV2_SPLITS = {"train": "train", "val": "validation", "validation": "validation"}


def ssv2_file(folder: Path, name: str) -> Path | None:
    for candidate in (f"{name}.json", f"something-something-v2-{name}.json"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def read_ssv2(source: Path, root, split, classes) -> VideoIndex:
    if source.is_dir():
        part = SSV2_SPLITS.get(split or "train")
        listing = ssv2_file(source, part) if part else None
        if listing is None:
            raise CsnError(
                f"no {split or 'train'} split (train.json or validation.json)",
                filename=str(source),
                hint="--split train or --split val",
            )
        folder = source
    else:
        listing, folder = source, source.parent
    labels_file = ssv2_file(folder, "labels")
    if labels_file is None:
        raise CsnError("no labels.json beside the Something-Something list", filename=str(listing))
    label_map = read_json(labels_file)
    entries = read_json(listing)
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
    return listed(root, rows, list(classes), bad)


SSV1_LABELS = "something-something-v1-labels.csv"
SSV1_SPLITS = {"train": "train", "val": "validation", "validation": "validation"}


def read_ssv1(source: Path, root, split, classes) -> VideoIndex:
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
        classes = [label for _, label in lines(labels)]
    if root is None:
        frames = folder / "20bn-something-something-v1"
        root = frames if frames.is_dir() else folder
    rows, bad = [], {}
    for n, line in lines(listing):
        vid, sep, label = (part.strip() for part in line.partition(";"))
        if not sep or not vid or not label:
            bad[f"{listing.name}:{n}"] = f"expected `id;label`, got '{short(line)}'"
        else:
            rows.append((vid, label))
    return listed(root, rows, list(classes), bad, frames=True)
