"""`csnspec compile FILE... --backend torch|flax`: write one standalone model module per spec."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import CsnError


def register(sub) -> None:
    p = sub.add_parser("compile", help="generate PyTorch or Flax model code from specs")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--backend", choices=("torch", "flax"), default="torch")
    where = p.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="PATH", help="output file (one spec only)")
    where.add_argument(
        "--out-dir", metavar="DIR", help="output folder (default: generated/<backend>)"
    )
    p.add_argument(
        "--depthwise",
        metavar="IMPL",
        help="how depthwise convs run by default: auto (the fastest for the device, the "
        "default), native, or a fast path (torch: cpu, triton; flax: see its kernels)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if a file on disk differs from what would be written",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    from ..atomic import check_target, write_text
    from ..backends import module_name, render
    from ..backends.emit import check_depthwise
    from ..lowering import lower
    from ..parse import load, located_in

    try:
        check_depthwise(args.backend, args.depthwise)
    except CsnError as err:
        raise err.located(None, "--depthwise") from None
    if args.output is not None and len(args.files) != 1:
        raise CsnError("-o takes one spec; use --out-dir for several")
    if args.output == "" or args.out_dir == "":
        raise CsnError(
            f"{'-o' if args.output == '' else '--out-dir'} is empty",
            hint="give a path, or leave the option out for generated/<backend>/",
        )
    out_dir = Path(args.out_dir if args.out_dir is not None else f"generated/{args.backend}")
    if out_dir.exists() and not out_dir.is_dir():
        raise CsnError("--out-dir is a file, not a folder", filename=str(out_dir))
    # Render everything first: a failing spec leaves no file written or half-written.
    outputs: dict[Path, tuple[str, str]] = {}
    for path in args.files:
        net = load(path)
        try:
            name = module_name(net)
        except CsnError as err:
            raise located_in(err, path) from None
        target = Path(args.output) if args.output is not None else out_dir / name
        if target in outputs:
            raise CsnError(
                f"{path} and {outputs[target][0]} both name network '{net.name}'",
                filename=str(target),
                hint="give each spec its own network name, or compile them one at a time with -o",
            )
        check_target(target, inputs=args.files)  # --check reads it: the same rules hold
        outputs[target] = (path, render(lower(net), args.backend, depthwise=args.depthwise))
    if args.check:
        stale = [
            t
            for t, (_, text) in outputs.items()
            if not t.exists() or t.read_text(encoding="utf-8") != text
        ]
        for t in stale:
            what = "differs from what `csnspec compile` writes now" if t.exists() else "missing"
            print(f"{t}: {what}", file=sys.stderr)
        if stale:
            print("hint: run the same command without --check to rewrite them", file=sys.stderr)
        else:
            print(f"{len(outputs)} file(s) up to date")
        return 1 if stale else 0
    for target, (path, text) in outputs.items():
        write_text(target, text, inputs=args.files)
        print(f"{path} -> {target}")
    return 0
