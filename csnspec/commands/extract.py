"""`csnspec extract SPEC --weights W --data D -o features.safetensors`: a feature vector per video."""

from __future__ import annotations

import sys

from ..errors import CsnError
from ._data_args import add_eval_data_args


def register(sub) -> None:
    p = sub.add_parser(
        "extract",
        help="pooled feature vectors of videos, averaged over the eval clips and crops",
        description="Run the spec's generated PyTorch model with the weights over every video's "
        "test views (as `csnspec eval` samples them) and write one pooled feature vector per "
        "video, with the videos' paths and labels, to a .safetensors file (atomically). Clip "
        "options left out come from the preprocessing recorded in the weights, if any.",
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--weights", required=True, help="safetensors keyed by the spec's op names")
    add_eval_data_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the .safetensors to write")
    p.add_argument("--clips", type=int, default=10, help="clips per video (default 10)")
    p.add_argument("--crops", type=int, choices=(1, 3), default=1, help="crops per clip")
    g = p.add_argument_group("clips (default: the weights' metadata, else eval's defaults)")
    g.add_argument("--frames", type=int, help="frames per clip, T")
    g.add_argument("--rate", type=int, help="take every RATE-th frame")
    g.add_argument("--crop", type=int, help="crop size")
    g.add_argument("--test-scale", type=int, help="shorter-edge size before cropping")
    g.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"), help="0-1 range")
    g.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), help="0-1 range")
    p.add_argument("--batch", type=int, default=2, help="videos per batch (default 2)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--allow-nonfinite", action="store_true", help="accept NaN or inf weights")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run)


def clip_options(args):
    """ClipOptions from the flags, the weights' recorded preprocessing, then eval's defaults;
    a flag that disagrees with the record is used, with a warning naming both."""
    from ..data.transforms import ClipOptions
    from ..weights.metadata import clip_defaults, read_pretrained_cfg, resolve

    cfg = read_pretrained_cfg(args.weights)
    recorded = clip_defaults(cfg) if cfg else {}
    base = ClipOptions()
    chosen = {}
    for name in ("frames", "rate", "crop", "test_scale", "mean", "std"):
        flag = getattr(args, name)
        flag = tuple(flag) if isinstance(flag, list) else flag
        value = resolve(flag, recorded.get(name), "--" + name.replace("_", "-"))
        if value is not None:
            chosen[name] = value
    if "test_scale" not in chosen:
        crop = chosen.get("crop", base.crop)
        chosen["test_scale"] = round(crop * 8 / 7)  # eval's default
    opts = ClipOptions(clips=args.clips, crops=args.crops, **chosen)
    if min(opts.clips, opts.frames, opts.rate, opts.crop, args.batch) < 1:
        raise CsnError("--clips, --frames, --rate, --crop and --batch must be positive")
    if opts.test_scale < opts.crop:
        raise CsnError(f"--test-scale {opts.test_scale} is smaller than --crop {opts.crop}")
    return opts


def run(args) -> int:
    import logging

    from ..extract import ExtractConfig, extract

    logging.basicConfig(format="csnspec: %(message)s", level=logging.WARNING)
    cfg = ExtractConfig(
        spec=args.spec,
        weights=args.weights,
        data=args.data,
        format=args.format,
        out=args.output,
        root=args.root,
        opts=clip_options(args),
        batch=args.batch,
        workers=args.workers,
        progress=not args.no_progress,
        allow_nonfinite=args.allow_nonfinite,
    )
    result = extract(cfg)
    print(
        f"{args.output}: {result['videos']} videos x {result['features']} features "
        f"({cfg.opts.clips}x{cfg.opts.crops} views each)"
    )
    for name, why in sorted(result["skipped"].items()):
        print(f"  skipped {name}: {why}", file=sys.stderr)
    return 0
