"""`csnspec train SPEC --data DATA --backend torch|flax --out RUN_DIR`: compile and train."""

from __future__ import annotations

import json

from ..errors import CsnError


def add_clip_options(p, train: bool) -> None:
    """Clip and crop options shared by `train` and `eval`."""
    g = p.add_argument_group("clips")
    g.add_argument("--frames", type=int, default=8, help="frames per clip, T (default 8)")
    g.add_argument("--rate", type=int, default=2, help="take every RATE-th frame (default 2)")
    g.add_argument("--crop", type=int, default=224, help="crop size (default 224)")
    if train:
        g.add_argument(
            "--scale",
            type=int,
            nargs=2,
            default=(256, 320),
            metavar=("MIN", "MAX"),
            help="random shorter-edge size range (default 256 320)",
        )
        g.add_argument("--no-flip", action="store_true", help="no horizontal flips")
    else:
        g.add_argument(
            "--test-scale",
            type=int,
            default=None,
            help="shorter-edge size before cropping (default: crop * 8/7)",
        )
    g.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"))
    g.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"))


def register(sub) -> None:
    p = sub.add_parser("train", help="train a spec's generated model on videos")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--data", required=True, help="a folder of class folders or a `path,label` list")
    p.add_argument("--root", help="folder the list's paths are relative to (default: its folder)")
    p.add_argument("--backend", choices=("torch", "flax"), default="torch")
    p.add_argument("--out", default="runs/train", help="run folder (default runs/train)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=8, help="global batch size (default 8)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimiser steps")
    length.add_argument("--epochs", type=float, help="passes over the data (default 1)")
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate (default 0.1)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, help="warm-up steps (default: 10/45 of the steps)")
    add_clip_options(p, train=True)
    p.add_argument("--workers", type=int, default=2, help="data-loading workers (default 2)")
    p.add_argument("--threads", type=int, help="CPU compute threads (default: cores - workers)")
    p.add_argument("--ckpt-every", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--log-every", type=int, default=10, help="metrics line every N steps")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on GPU")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    import logging

    from ..data.transforms import VMZ_MEAN, VMZ_STD
    from ..train.run import TrainConfig, train

    logging.basicConfig(format="csnspec: %(message)s", level=logging.WARNING)
    for name in ("batch", "frames", "rate", "crop", "workers", "ckpt_every", "log_every"):
        value = getattr(args, name)
        if value < (0 if name == "workers" else 1):
            raise CsnError(f"--{name.replace('_', '-')} must be positive (got {value})")
    if args.steps is not None and args.steps < 1:
        raise CsnError(f"--steps must be positive (got {args.steps})")
    cfg = TrainConfig(
        spec=args.spec,
        data=args.data,
        out=args.out,
        backend=args.backend,
        root=args.root,
        seed=args.seed,
        batch=args.batch,
        steps=args.steps,
        epochs=args.epochs,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        frames=args.frames,
        rate=args.rate,
        crop=args.crop,
        scale_min=args.scale[0],
        scale_max=args.scale[1],
        flip=not args.no_flip,
        mean=tuple(args.mean or VMZ_MEAN),
        std=tuple(args.std or VMZ_STD),
        workers=args.workers,
        threads=args.threads,
        ckpt_every=args.ckpt_every,
        log_every=args.log_every,
        device=args.device,
        amp=not args.no_amp,
        progress=not args.no_progress,
    )
    summary = train(cfg, resume=args.resume)
    if summary:
        print(json.dumps(summary, indent=1))
    return 0
