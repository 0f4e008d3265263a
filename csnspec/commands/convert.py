"""`csnspec weights convert --spec SPEC IN OUT`: PyTorch <-> Flax weights of a spec's models.

Registered under `csnspec weights` by `csnspec/commands/weights.py` (`register_convert` is
one of its ACTIONS); also runnable alone: `python -m csnspec.commands.convert --spec ...`.
"""

from __future__ import annotations

import sys


def register_convert(actions) -> None:
    p = actions.add_parser(
        "convert",
        help="convert a spec's weights between its generated PyTorch and Flax models",
        description="Read a .safetensors file of the generated PyTorch model's state_dict (or of "
        "the generated Flax model's state), check every name and shape against the spec, and "
        "write the other framework's file atomically. The direction follows from the names in "
        "IN unless --to says it.",
    )
    p.add_argument("--spec", required=True, metavar="SPEC", help="the .csn spec of the model")
    p.add_argument("input", metavar="IN", help="the .safetensors file to read")
    p.add_argument("output", metavar="OUT", help="the .safetensors file to write")
    p.add_argument(
        "--to", choices=("torch", "flax"), help="the framework to write (default: the other one)"
    )
    p.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="convert tensors holding NaN or inf (refused by default, naming them)",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    from ..lowering import lower
    from ..parse import load
    from ..weights.convert import convert_file

    low = lower(load(args.spec))
    written = convert_file(
        low,
        args.input,
        args.output,
        to=args.to,
        allow_nonfinite=args.allow_nonfinite,
        inputs=[args.spec],
    )
    print(f"{args.input} -> {args.output}: {low.name} weights for the generated {written} model")
    return 0


def main(argv=None) -> int:
    import argparse

    from ..cli import EXIT_BAD_INPUT
    from ..errors import CsnError

    parser = argparse.ArgumentParser(prog="csnspec weights")
    register_convert(parser.add_subparsers(dest="action", required=True))
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except CsnError as err:
        print(str(err), file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
