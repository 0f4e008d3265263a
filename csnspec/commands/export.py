"""`csnspec export SPEC --weights W --format F -o OUT`: a deployable file, numerically checked."""

from __future__ import annotations

import sys

from ..errors import CsnError

FORMATS = ("torchscript", "exported-program", "onnx")  # csnspec.export.FORMATS, kept light here


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a TorchScript, torch.export or ONNX file of a spec's PyTorch model",
        description="Build the spec's generated PyTorch model with the weights, export it, load "
        "the file back and compare it with eager PyTorch on a random clip. The file is written "
        "(atomically) only if the largest difference is within --tol; exit 1 otherwise.",
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--weights", metavar="W", help=".safetensors of the model (default: random)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("--input", metavar="CxTxHxW", help="clip size (default: the spec's)")
    p.add_argument("--batch", type=int, default=1, help="clips per call, fixed (default 1)")
    p.add_argument("--tol", type=float, default=1e-4, help="largest difference (default 1e-4)")
    p.add_argument("--allow-nonfinite", action="store_true", help="accept NaN or inf weights")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..atomic import check_target, write_bytes
    from ..export import build_torch_model, export_model
    from ..lowering import lower
    from ..parse import load
    from ..sizing import INFER, check_fits
    from .verify import parse_dims

    if args.batch < 1:
        raise CsnError("--batch must be at least 1")
    inputs = [args.spec, args.weights]
    check_target(args.output, inputs)
    net = load(args.spec)
    if args.input:
        try:
            net = net.with_input(parse_dims(args.input))
        except ValueError as err:
            raise CsnError(f"--input {args.input!r}: {err}") from None
    low = lower(net)
    check_fits(low, usage=INFER, batch=args.batch, what="export", filename=args.spec)
    model = build_torch_model(low, args.weights, allow_nonfinite=args.allow_nonfinite)
    result = export_model(model, args.format, low.input_shape, batch=args.batch)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    shape = "x".join(map(str, result.input_shape))
    if result.max_diff is None:
        check = "not checked"
    else:
        check = (
            f"max |difference| from eager PyTorch {result.max_diff:.3g} (tolerance {args.tol:g})"
        )
    if result.max_diff is not None and not result.max_diff <= args.tol:
        print(f"{args.output}: not written: {check}", file=sys.stderr)
        return 1
    write_bytes(args.output, result.data, inputs=inputs)
    print(f"{args.output}: {args.format} of {low.name}, input {shape}; {check}")
    return 0
