"""`csnspec stats FILE`: FLOPs, parameters, channel interactions and activations."""

from __future__ import annotations

import re
import sys

from ..errors import CsnError


def clip(text: str) -> tuple[int, int, int, int]:
    """Parse a CxTxHxW clip given on the command line."""
    if not re.fullmatch(r"[0-9]+x[0-9]+x[0-9]+x[0-9]+", text):
        raise CsnError(f"--input takes channels x frames x height x width, e.g. 3x32x256x256, got '{text}'")
    return tuple(int(v) for v in text.split("x"))


def register(sub) -> None:
    p = sub.add_parser("stats", help="report FLOPs, params, channel interactions and activations")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--input", metavar="CxTxHxW", help="report for another input clip, e.g. 3x32x256x256")
    p.add_argument("--classes", type=int, metavar="N", help="report for another class count")
    p.add_argument("--by", choices=("op", "block", "stage"), default="stage")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import stats
    from ..parse import load
    from ..report import FORMATS

    net = load(args.file)
    if args.input or args.classes is not None:
        if args.classes is not None and args.classes < 1:
            raise CsnError(f"--classes must be positive, got {args.classes}")
        try:
            net = _override(net, args)
        except CsnError as err:
            raise err.located(None, args.file) from None
    sys.stdout.write(FORMATS[args.format](stats(net), args.by))
    return 0


def _override(net, args):
    from ..lowering import lower

    new = net.with_input(clip(args.input) if args.input else None, args.classes)
    new._spans = {}  # the source positions no longer describe the new input
    try:
        lower(new)
    except CsnError as err:
        raise CsnError(f"with --input {args.input}: {err.message}", hint=err.hint) from None
    return new
