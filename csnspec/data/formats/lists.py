"""Class folders, `path,label` CSV lists and MMAction2 video lists."""

from __future__ import annotations

from pathlib import Path

from ...errors import CsnError
from .index import VIDEO_SUFFIXES, VideoIndex, fixed, lines, listed, read_json, short


def read_folder(source: Path, root, split, classes) -> VideoIndex:
    if split and (source / split).is_dir():
        source = source / split
    found = sorted(d.name for d in source.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise CsnError(
            "no class folders (expected FOLDER/<class>/<video>)",
            filename=str(source),
            hint="a list file or a dataset folder of another format needs --format",
        )
    classes = fixed(classes, found)
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


def read_csv(source: Path, root, split, classes) -> VideoIndex:
    rows, bad = [], {}
    for n, line in lines(source):
        if line.replace(" ", "").lower() == "path,label":
            continue
        name, sep, label = line.rpartition(",")
        name, label = name.strip(), label.strip()
        if not sep:
            bad[f"{source.name}:{n}"] = f"expected `path,label`, got '{short(line)}'"
        elif not name:
            bad[f"{source.name}:{n}"] = "empty path"
        elif not label:
            bad[f"{source.name}:{n}"] = f"no label for '{short(name)}'"
        else:
            rows.append((name, label))
    if classes is None:
        beside = source.parent / "classes.json"
        if beside.is_file():
            classes = read_json(beside)
        elif rows and all(label.isdigit() for _, label in rows):
            classes = [str(i) for i in range(max(int(label) for _, label in rows) + 1)]
        else:
            classes = sorted({label for _, label in rows if not label.isdigit()})
    return listed(root or source.parent, rows, list(classes), bad)


def read_mmaction(source: Path, root, split, classes) -> VideoIndex:
    rows, bad = [], {}
    for n, line in lines(source):
        name, *labels = line.split()
        if not labels:
            bad[f"{source.name}:{n}"] = f"no label for '{short(name)}'"
        elif not all(label.isdigit() for label in labels):
            bad[f"{source.name}:{n}"] = f"expected `path label [label ...]`, got '{short(line)}'"
        else:
            rows.append((name, tuple(labels)))
    if classes is None:
        beside = source.parent / "classes.json"
        if beside.is_file():
            classes = read_json(beside)
        else:
            top = max((int(label) for _, labels in rows for label in labels), default=-1)
            classes = [str(i) for i in range(top + 1)]
    return listed(root or source.parent, rows, list(classes), bad)
