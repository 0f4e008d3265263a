"""The `csnspec` command line. Bad input prints one error and exits 2, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .commands import COMMANDS
from .errors import CsnError

EXIT_BAD_INPUT = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="csnspec",
        description="Compile .csn specs of video networks: check, analyse, generate code.",
    )
    p.add_argument("--version", action="version", version=f"csnspec {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        # a missing command module is a broken install, not bad input: let it raise
        importlib.import_module(f"csnspec.commands.{name}").register(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except CsnError as err:
        print(str(err), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
