"""`csnspec eval SPEC --weights W --data DATA`: clip and video top-1/top-5 over test views."""

from __future__ import annotations

import json

from ..errors import CsnError
from ._data_args import add_eval_data_args
from .train import add_clip_options


def register(sub) -> None:
    p = sub.add_parser("eval", help="clip and video accuracy of trained or imported weights")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--weights", required=True, help="safetensors keyed by the spec's op names")
    add_eval_data_args(p)
    p.add_argument("--classes", help="classes.json (default: the one beside --weights)")
    p.add_argument("--backend", choices=("torch", "flax"), default="torch")
    p.add_argument("--clips", type=int, default=10, help="clips per video (default 10)")
    p.add_argument("--crops", type=int, choices=(1, 3), default=1, help="crops per clip")
    add_clip_options(p, train=False)
    p.add_argument("--batch", type=int, default=4, help="videos per batch (default 4)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--allow-nonfinite", action="store_true", help="accept NaN or inf weights")
    p.set_defaults(run=run)


def run(args) -> int:
    import logging
    from dataclasses import replace

    from ..parse import load
    from ..train.config import resolve_clip
    from ..train.eval_run import EvalConfig, evaluate
    from ..train.run import pretrained_cfg, spec_clip

    logging.basicConfig(format="csnspec: %(message)s", level=logging.WARNING)
    given = {
        k: getattr(args, k)
        for k in ("frames", "rate", "crop", "test_scale", "mean", "std")
        if getattr(args, k) is not None
    }
    if min([args.clips, args.batch, *(v for v in given.values() if isinstance(v, int))]) < 1:
        raise CsnError(
            "--clips, --frames, --rate, --crop, --test-scale and --batch must be positive"
        )
    opts = resolve_clip(given, spec_clip(load(args.spec)), pretrained_cfg(args.weights))
    opts = replace(opts, clips=args.clips, crops=args.crops)
    cfg = EvalConfig(
        spec=args.spec,
        weights=args.weights,
        data=args.data,
        format=args.format,
        backend=args.backend,
        root=args.root,
        classes=args.classes,
        opts=opts,
        batch=args.batch,
        workers=args.workers,
        device=args.device,
        progress=not args.no_progress,
        allow_nonfinite=args.allow_nonfinite,
    )
    result = evaluate(cfg)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"{args.spec} ({cfg.backend} on {result['device']}, {result['views']} views): "
        f"{result['videos']} videos, {result['clips']} clips"
    )
    print(f"  clip  top-1 {result['clip_top1']:.2%}  top-5 {result['clip_top5']:.2%}")
    print(f"  video top-1 {result['video_top1']:.2%}  top-5 {result['video_top5']:.2%}")
    for name, why in result["skipped"].items():
        print(f"  skipped {name}: {why}")
    return 0
