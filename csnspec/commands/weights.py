"""`csnspec weights ...`: weights in and out of generated models.

`csnspec weights import --from SOURCE CHECKPOINT --spec SPEC -o OUT.safetensors` maps a public
CSN checkpoint onto the spec's generated model. Further actions are subcommands of `weights`:
each is a `_register_<action>(actions)` below, listed in ACTIONS.
"""

from __future__ import annotations

import sys

from ..weights.layouts import SOURCES
from .convert import register_convert


def register(sub) -> None:
    p = sub.add_parser(
        "weights", help="import public CSN checkpoints; convert PyTorch <-> Flax weights"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in ACTIONS:
        add(actions)


def _register_import(actions) -> None:
    p = actions.add_parser(
        "import",
        help="map a PyTorchVideo, VMZ or MMAction2 checkpoint onto a spec's generated model",
        description="Map the checkpoint's names and layouts onto the generated model's, check "
        "every shape against the spec, and write a .safetensors file the generated model loads "
        "with strict=True. Nothing is written if any tensor is missing, extra or mis-shaped.",
    )
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        choices=SOURCES,
        help="the implementation that wrote the checkpoint (vmz: PyTorch .pth or Caffe2 .pkl)",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help=".pth/.pyth/.pt, .safetensors or .pkl")
    p.add_argument("--spec", required=True, metavar="SPEC", help="the .csn spec of the model")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the .safetensors to write")
    p.add_argument(
        "--class-names",
        metavar="JSON",
        help="a JSON list of the classifier's class names, in label order, to record in OUT",
    )
    p.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="import tensors holding NaN or inf (refused by default, naming them)",
    )
    p.set_defaults(run=run_import)


ACTIONS = [_register_import, register_convert]


def run_import(args) -> int:
    from ..parse import load
    from ..weights import import_checkpoint

    net = load(args.spec)
    names = _class_names(args.class_names) if args.class_names else None
    imported = import_checkpoint(
        args.checkpoint,
        net,
        args.source,
        out=args.output,
        class_names=names,
        allow_nonfinite=args.allow_nonfinite,
        inputs=[args.spec, args.class_names],
    )
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    filled = f", {len(imported.filled)} BN step counters set to 0" if imported.filled else ""
    print(
        f"{args.output}: {len(imported.tensors)} tensors, {imported.parameters / 1e6:.2f} M "
        f"parameters from the {imported.layout.title} checkpoint for {net.name}{filled}"
    )
    cfg = imported.cfg
    print(
        f"  preprocessing recorded: {cfg['frames']}x{cfg['sampling_rate']} frames, crop "
        f"{cfg['crop']}, mean {cfg['mean']} std {cfg['std']} ({cfg['value_range']})"
    )
    return 0


def _class_names(path: str) -> list[str]:
    import json

    from ..errors import CsnError

    try:
        with open(path, encoding="utf-8") as f:
            names = json.load(f)
    except (OSError, ValueError) as err:
        raise CsnError(f"cannot read the class names: {err}", filename=path) from None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CsnError("expected a JSON list of class names (strings)", filename=path)
    return names
