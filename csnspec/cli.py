"""The `csnspec` command line. Bad input prints one error and exits 2, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .commands import COMMANDS
from .errors import CsnError

EXIT_BAD_INPUT = 2


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; given the chosen `command`, with that command's options only.

    Command modules import what their options need (`weights` reads its checkpoint sources):
    loading only the chosen one keeps a cold `csnspec stats` fast. Without a known command
    (no arguments, `--help`, a typo) every command is loaded, so help and errors list them all.
    """
    p = argparse.ArgumentParser(
        prog="csnspec",
        description="Compile .csn specs of video networks: check, analyse, generate code.",
    )
    p.add_argument("--version", action="version", version=f"csnspec {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in (command,) if command else COMMANDS:
        # a missing command module is a broken install, not bad input: let it raise
        importlib.import_module(f"csnspec.commands.{name}").register(sub)
    return p


def chosen_command(argv: list[str]) -> str | None:
    """The command a command line names first, or None (`--help`, `--version`, a typo)."""
    # (the top-level options, --help and --version, exit at once: any command after them is moot)
    return argv[0] if argv and argv[0] in COMMANDS else None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser(chosen_command(argv)).parse_args(argv)
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
