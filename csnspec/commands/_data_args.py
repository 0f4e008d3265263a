"""The dataset flags, defined once: `--train`/`--val` (train, search), `--data` (eval, extract)
and SOURCE (data index), each with `--format` and `--root`, all read by `open_index`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.formats import FORMATS
from ..errors import CsnError

FORMS = (
    "a folder of class folders, a list file (path,label CSV, MMAction2 list, Kinetics CSV, "
    "Something-Something JSON/CSV) or a dataset folder"
)


def add_format_root(group) -> None:
    """`--format` and `--root`, as every command that reads a dataset takes them."""
    group.add_argument(
        "--format", choices=FORMATS, help="the dataset format (default: detected from the file)"
    )
    group.add_argument(
        "--root",
        help="folder the videos are in (default: beside the list, or the layout's usual folder)",
    )


def add_split_args(
    parser, what: str = "data", val_help: str = "validation videos, in the same forms"
):
    """`--train`, `--val`, `--format`, `--root`; a hidden `--data` that `reject_data` refuses."""
    group = parser.add_argument_group(what)
    group.add_argument("--train", help=f"training videos: {FORMS}")
    group.add_argument("--val", help=val_help)
    add_format_root(group)
    group.add_argument("--data", help=argparse.SUPPRESS)
    return group


def add_eval_data_args(parser) -> None:
    """`--data` (the videos to evaluate), `--format`, `--root`."""
    parser.add_argument("--data", required=True, help=f"the videos: {FORMS}")
    add_format_root(parser)


def reject_data(args, command: str) -> None:
    """`--data` meant a folder of train.csv and test.csv in `search` once; it names no split."""
    if args.data is not None:
        hint = f"use --train {args.data} (and --val DATA to validate)"
        if command == "search":  # what `search --data DIR` read
            data = Path(args.data)
            hint = f"use --train {data / 'train.csv'} --val {data / 'test.csv'}"
        raise CsnError(
            f"--data: {command} takes --train DATA (and --val DATA for validation)", hint=hint
        )
