"""`csnspec check FILE...`: validate specs, one line per file."""

from __future__ import annotations

import sys

from ..errors import CsnError


def register(sub) -> None:
    p = sub.add_parser("check", help="validate spec files, one line per file")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..parse import load

    failed = 0
    for path in args.files:
        try:
            net = load(path)
        except CsnError as err:
            failed += 1
            print(str(err), file=sys.stderr)
            continue
        print(f"{path}: ok ({net.name}, {sum(st.blocks for st in net.stages)} blocks)")
    return 2 if failed else 0
