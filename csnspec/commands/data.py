"""`csnspec data synth OUT ...`: write synthetic motion videos; `csnspec data index SOURCE`: list
what a dataset holds and every entry a run would skip."""

from __future__ import annotations

import json
import sys
from collections import Counter


def register(sub) -> None:
    from ..data.layouts import LAYOUTS
    from ._data_args import FORMS, add_format_root

    p = sub.add_parser("data", help="synthetic videos and dataset checks")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    s = actions.add_parser("synth", help="write synthetic motion-classification videos (.mp4)")
    s.add_argument("out", metavar="OUT", help="output folder")
    s.add_argument("--classes", type=int, default=6, help="motion classes (default 6)")
    s.add_argument("--videos", type=int, default=20, help="videos per class (default 20)")
    s.add_argument("--frames", type=int, default=24, help="frames per video (default 24)")
    s.add_argument("--size", type=int, default=40, help="frame width and height (default 40)")
    s.add_argument("--fps", type=int, default=15)
    s.add_argument("--test-fraction", type=float, default=0.25, help="share of videos in test.csv")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="folders",
        help="lay the videos and lists out as a real dataset is downloaded: class folders with "
        "train.csv/test.csv (default), the Kinetics CSVs, MMAction2 video lists or "
        "Something-Something v2 (webm)",
    )
    s.set_defaults(run=run_synth)

    i = actions.add_parser(
        "index",
        help="count a dataset's videos and classes, list every entry skipped and why",
        description="Read a dataset as training and evaluation would, decode every video "
        "(unless --no-probe) and list each entry skipped, by name, with the reason.",
    )
    i.add_argument("source", metavar="SOURCE", help=FORMS)
    add_format_root(i)
    i.add_argument("--split", help="the split to read (train, val) where SOURCE holds several")
    i.add_argument("--json", action="store_true", help="print the result as JSON")
    i.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="do not open the videos (faster; corrupt files are then not found)",
    )
    i.add_argument("--workers", type=int, default=2, help="threads probing videos (default 2)")
    i.set_defaults(run=run_index)


def run_synth(args) -> int:
    from ..data.synth import synthesize

    summary = synthesize(
        args.out,
        classes=args.classes,
        videos=args.videos,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        test_fraction=args.test_fraction,
        fps=args.fps,
        layout=args.layout,
    )
    print(json.dumps(summary, indent=1))
    return 0


def run_index(args) -> int:
    from ..data.formats import open_dataset
    from ..data.probe import probe, without

    index = open_dataset(
        args.source, root=args.root, format=args.format, split=args.split, allow_empty=True
    )
    listed = len(index)
    if args.probe:
        from tqdm import tqdm

        # a bar only for people watching: a log or a pipe gets the result alone
        with tqdm(
            total=listed, desc="probing", unit="video", disable=not sys.stderr.isatty()
        ) as bar:
            index = without(index, probe(index, args.workers, lambda: bar.update(1)))
    per_class = Counter(index.classes[k] for _, k in index.videos)
    if args.json:
        print(
            json.dumps(
                {
                    "source": str(args.source),
                    "format": index.format,
                    "root": str(index.root),
                    "probed": args.probe,
                    "videos": len(index),
                    "classes": [{"name": c, "videos": per_class[c]} for c in index.classes],
                    "skipped": [{"name": n, "reason": r} for n, r in sorted(index.skipped.items())],
                },
                indent=1,
            )
        )
    else:
        print(
            f"{args.source} ({index.format}, videos in {index.root}): {len(index)} videos, "
            f"{len(index.classes)} classes, {len(index.skipped)} skipped"
        )
        empty = [c for c in index.classes if not per_class[c]]
        if empty:
            print(
                f"  classes without a video: {', '.join(empty[:20])}" + (" ..." * (len(empty) > 20))
            )
        for name, why in sorted(index.skipped.items()):
            print(f"  skipped {name}: {why}")
        if args.probe:
            print(
                f"  probed: the {listed} videos found were opened and decoded (first, last frame)"
            )
        else:
            print(f"  the {listed} videos were not opened (--no-probe): corrupt ones are not found")
    if not len(index):
        print(f"{args.source}: error: no usable video", file=sys.stderr)
        return 2
    return 0
