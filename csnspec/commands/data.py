"""`csnspec data synth OUT ...`: write synthetic motion videos; `csnspec data index DATA`: list
what a dataset holds and what would be skipped."""

from __future__ import annotations

import json


def register(sub) -> None:
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
    s.set_defaults(run=run_synth)

    i = actions.add_parser("index", help="count a dataset's videos and classes, list skipped ones")
    i.add_argument("data", metavar="DATA", help="a folder of class folders or a `path,label` list")
    i.add_argument("--root", help="folder the list's paths are relative to")
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
    )
    print(json.dumps(summary, indent=1))
    return 0


def run_index(args) -> int:
    from ..data.dataset import open_index

    index = open_index(args.data, args.root)
    print(f"{args.data}: {len(index)} videos, {len(index.classes)} classes")
    for name, why in sorted(index.skipped.items()):
        print(f"  skipped {name}: {why}")
    return 0
