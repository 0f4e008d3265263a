"""`csnspec stats FILE`: FLOPs, parameters, channel interactions and activations."""

from __future__ import annotations

import re
import sys

from ..errors import CsnError


def clip(text: str) -> tuple[int, int, int, int]:
    """Parse a CxTxHxW clip given on the command line."""
    # (at most 30 digits each: int() itself fails past 4,300, and no size has more than 5)
    if not re.fullmatch(r"[0-9]{1,30}x[0-9]{1,30}x[0-9]{1,30}x[0-9]{1,30}", text):
        raise CsnError(
            f"--input takes channels x frames x height x width, e.g. 3x32x256x256, got '{text}'"
        )
    return tuple(int(v) for v in text.split("x"))


def register(sub) -> None:
    p = sub.add_parser("stats", help="report FLOPs, params, channel interactions and activations")
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--input", metavar="CxTxHxW", help="report for another input clip, e.g. 3x32x256x256"
    )
    p.add_argument("--classes", type=int, metavar="N", help="report for another class count")
    p.add_argument(
        "--convention",
        metavar="NAME",
        default="csnspec",
        help="count FLOPs and params as a publisher does, at the clip it counts: "
        "csnspec (default), torchvision, fvcore-train, fvcore-eval, pytorchvideo, mmaction2, vmz",
    )
    p.add_argument("--by", choices=("op", "block", "stage"), default="stage")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..conventions import analyse_as, convention_named, counted_input
    from ..lowering import lower
    from ..parse import load
    from ..report import FORMATS

    try:
        convention = convention_named(args.convention)
    except CsnError as err:
        raise CsnError(f"--convention: {err.message}", hint=err.hint) from None
    net = load(args.file)
    if args.input is None and counted_input(net.input, convention) != net.input:
        # the publisher's test crop, unless --input says which clip
        args.input = "x".join(map(str, counted_input(net.input, convention)))
    if args.input is not None or args.classes is not None:
        try:
            net = _override(net, args)
        except CsnError as err:
            raise err.located(None, args.file) from None
    sys.stdout.write(FORMATS[args.format](analyse_as(lower(net), convention), args.by))
    return 0


def _override(net, args):
    from pydantic import ValidationError

    from ..build import explain
    from ..lowering import lower

    flags = " ".join(
        f"--{k} {v}" for k, v in (("input", args.input), ("classes", args.classes)) if v is not None
    )
    try:
        new = net.with_input(clip(args.input) if args.input else None, args.classes)
    except ValidationError as err:
        raise CsnError(f"with {flags}: {explain(err, {}).message}") from None
    # (lowered without source positions: they describe the spec's input, not the new one)
    try:
        lower(new)
    except CsnError as err:
        raise CsnError(f"with {flags}: {err.message}", hint=err.hint) from None
    return new
