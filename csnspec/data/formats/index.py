"""The index every dataset reader returns, and what the readers share: reading list lines,
naming a bad entry, looking labels up, checking that listed files exist."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import CsnError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")


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


def lines(path: Path):
    """(line number, stripped text) of the non-blank, non-comment lines; a BOM is dropped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise CsnError(f"cannot read the list: {err}", filename=str(path)) from None
    for n, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield n, line


def fixed(classes, found) -> list[str]:
    return list(classes) if classes is not None else list(found)


def label_index(label: str, lookup: dict[str, int], count: int) -> int | None:
    """A label by name, or by index when it is a number in range."""
    if label in lookup:
        return lookup[label]
    if label.isdigit() and int(label) < count:
        return int(label)
    return None


def listed(root: Path, rows, classes: list[str], bad: dict[str, str], frames=False) -> VideoIndex:
    """An index of (path, label or labels) rows whose files (`frames`: folders of frames)
    should exist under `root`."""
    lookup = {c: i for i, c in enumerate(classes)}
    index = VideoIndex(root, [], classes, dict(bad))
    for name, labels in rows:
        labels = (labels,) if isinstance(labels, str) else labels
        ks = [label_index(label, lookup, len(classes)) for label in labels]
        unknown = [label for label, k in zip(labels, ks) if k is None]
        if unknown:
            index.skipped[name] = f"unknown label '{unknown[0]}'"
        elif not ((root / name).is_dir() if frames else (root / name).is_file()):
            index.skipped[name] = "missing frame folder" if frames else "missing file"
        else:
            index.add(name, tuple(ks))
    return index


def short(text: str, limit: int = 80) -> str:
    """Text for a message: control characters escaped, long text cut."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CsnError(f"cannot read it as JSON: {err}", filename=str(path)) from None
