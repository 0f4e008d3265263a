"""`csnspec fmt FILE`: print (or check, or rewrite) a spec's canonical text."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("fmt", help="print a spec in canonical form")
    p.add_argument("file", metavar="FILE")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="exit 1 if the file is not in canonical form"
    )
    mode.add_argument(
        "-w", "--write", action="store_true", help="rewrite the file in canonical form"
    )
    p.set_defaults(run=run)


def run(args) -> int:
    from ..parse import parse, read_spec
    from ..printer import format_spec

    source = read_spec(args.file)
    text = format_spec(parse(source, args.file))
    if args.check:
        same = source == text
        print(f"{args.file}: {'canonical' if same else 'would be reformatted'}")
        return 0 if same else 1
    if args.write:
        if source != text:  # leave a canonical file (and its mtime) alone
            from ..atomic import write_text

            write_text(args.file, text)
        return 0
    sys.stdout.write(text)
    return 0
