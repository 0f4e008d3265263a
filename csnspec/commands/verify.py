"""`csnspec verify SPEC`: run a spec's generated PyTorch and Flax models side by side.

Prints, per block, how far apart they are in eval and train forward, running statistics and
gradients (see `csnspec.verify`); exits 1 when any part is past tolerance, 2 on bad input.
"""

from __future__ import annotations

import re

from ..errors import CsnError

_DIMS = re.compile(r"(\d+)x(\d+)x(\d+)x(\d+)\Z")


def register(sub) -> None:
    p = sub.add_parser(
        "verify",
        help="check that the generated PyTorch and Flax models agree, block by block",
        description="Compile SPEC with both backends, convert a random PyTorch initialisation to "
        "Flax, and compare eval and train forward passes, running statistics after one train "
        "step, and gradients, on one random float32 batch on the CPU.",
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--input", metavar="CxTxHxW", help="input clip to test at (default: the spec's)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the weights and the batch (default 0)"
    )
    p.add_argument("--batch", type=int, default=2, help="batch size, at least 2 (default 2)")
    p.set_defaults(run=run)


def parse_dims(text: str) -> tuple[int, int, int, int]:
    m = _DIMS.match(text.strip())
    if not m or min(int(g) for g in m.groups()) < 1:
        raise CsnError(f"--input {text!r}: expected CxTxHxW with positive sizes, e.g. 3x8x112x112")
    return tuple(int(g) for g in m.groups())


def run(args) -> int:
    from ..lowering import lower
    from ..parse import load
    from ..sizing import VERIFY, check_fits
    from ..verify import compare

    if args.batch < 2:
        raise CsnError("--batch must be at least 2 (train-mode BatchNorm needs a variance)")
    net = load(args.spec)
    if args.input:
        try:
            net = net.with_input(parse_dims(args.input))
        except ValueError as err:  # pydantic's, for sizes the spec IR refuses
            raise CsnError(f"--input {args.input!r}: {err}") from None
    low = lower(net)  # a clip too small for the network is bad input, reported before any work
    check_fits(low, usage=VERIFY, batch=args.batch, what="verify", filename=args.spec)
    result = compare(net, seed=args.seed, batch=args.batch)
    print(result.table())
    return 0 if result.ok else 1
