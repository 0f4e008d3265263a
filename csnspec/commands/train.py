"""`csnspec train SPEC --train DATA [--val DATA] --out RUN`: compile and train; `--resume RUN`."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import CsnError
from ._data_args import add_split_args, reject_data


def add_clip_options(p, train: bool) -> None:
    """Clip and crop options shared by `train` and `eval`; unset ones follow the spec's input."""
    g = p.add_argument_group("clips (default: what the spec's input clip implies)")
    g.add_argument("--frames", type=int, help="frames per clip, T (default: the spec's)")
    g.add_argument("--rate", type=int, help="take every RATE-th frame (default 2)")
    g.add_argument("--crop", type=int, help="crop size (default: the spec's input size)")
    if train:
        g.add_argument(
            "--scale",
            type=int,
            nargs=2,
            metavar=("MIN", "MAX"),
            help="random shorter-edge size range (default: the paper's 256 320 scaled to --crop)",
        )
        g.add_argument("--no-flip", dest="flip", action="store_false", default=None)
    g.add_argument(
        "--test-scale",
        type=int,
        help="shorter-edge size of test views (default: crop x 256/224)",
    )
    g.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"))
    g.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"))


def register(sub) -> None:
    from ..train.config import AMP_MODES

    p = sub.add_parser(
        "train",
        help="train a spec's generated model on videos",
        description="Settings come from (lowest first) built-in defaults, --recipe, --config, "
        "the command line; frames, crop and scales default to the spec's input clip.",
    )
    p.add_argument("spec", metavar="SPEC", nargs="?", help="the spec (not needed with --resume)")
    add_split_args(p)
    p.add_argument("--config", help="a TOML, YAML or JSON file of settings (flag names as keys)")
    p.add_argument("--recipe", help="a preset: csn-kinetics (section 4.1), csn-kinetics-32")
    p.add_argument("--backend", choices=("torch", "flax"))
    p.add_argument("--out", help="run folder (default runs/train)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN (its settings)")
    p.add_argument("--seed", type=int)
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--batch", type=int, help="global batch size (default 8)")
    length = opt.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimiser steps")
    length.add_argument("--epochs", type=float, help="passes over the data (default 1)")
    opt.add_argument("--lr", type=float, help="peak learning rate (default 0.1)")
    opt.add_argument("--momentum", type=float, help="(default 0.9)")
    opt.add_argument("--weight-decay", type=float, help="(default 1e-4)")
    warm = opt.add_mutually_exclusive_group()
    warm.add_argument("--warmup", type=int, help="warm-up steps (default: 10/45 of the steps)")
    warm.add_argument("--warmup-epochs", type=float, help="warm-up in epochs")
    opt.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the gradient norm")
    opt.add_argument("--accum", type=int, help="split each batch into N micro-batches")
    opt.add_argument("--ema", type=float, metavar="DECAY", help="keep an EMA of the weights")
    opt.add_argument(
        "--amp",
        choices=AMP_MODES,
        help="compute precision over float32 weights: bf16, fp16 (with a dynamic loss scale), "
        "off; default auto: bf16 on a GPU, float32 on the CPU (either backend)",
    )
    opt.add_argument(
        "--no-amp", dest="amp", action="store_const", const="off", help=argparse.SUPPRESS
    )
    opt.add_argument("--sync-bn", action="store_true", default=None, help="SyncBatchNorm under DDP")
    tune = p.add_argument_group("fine-tuning")
    tune.add_argument("--init", metavar="WEIGHTS", help="start from these weights")
    tune.add_argument(
        "--freeze-bn", action="store_true", default=None, help="BN stats and affine fixed"
    )
    tune.add_argument("--freeze-stages", type=int, metavar="N", help="fix the stem and N stages")
    tune.add_argument("--head-lr-mult", type=float, metavar="X", help="the classifier's lr factor")
    add_clip_options(p, train=True)
    val = p.add_argument_group("validation")
    val.add_argument("--val-every", type=int, metavar="N", help="steps (default: each epoch)")
    val.add_argument("--val-clips", type=int, help="clips per validation video (default 10)")
    val.add_argument("--val-crops", type=int, choices=(1, 3), help="crops per clip (default 1)")
    run_group = p.add_argument_group("running")
    run_group.add_argument("--workers", type=int, help="data-loading workers (default 2)")
    run_group.add_argument("--threads", type=int, help="CPU threads (default: cores - workers)")
    run_group.add_argument("--ckpt-every", type=int, help="checkpoint every N steps (default 500)")
    run_group.add_argument("--log-every", type=int, help="metrics line every N steps (default 10)")
    run_group.add_argument("--device", choices=("auto", "cpu", "cuda"))
    run_group.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.set_defaults(run=run)


# argparse names that are not settings of the run
NOT_SETTINGS = {"config", "resume", "data", "run", "command", "func"}


def settings_of(args) -> dict:
    """The settings named on the command line (unset ones are None and left out)."""
    from ..train.config import KEYS

    out = {}
    for key, value in vars(args).items():
        if key in NOT_SETTINGS or value is None or key not in KEYS:
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def run(args) -> int:
    import logging

    from ..train import config
    from ..train.fit import report
    from ..train.run import configure
    from ..train.trainer import train

    logging.basicConfig(format="csnspec: %(message)s", level=logging.WARNING)
    reject_data(args, "train")
    cli = settings_of(args)
    if args.resume is not None:
        if args.config or args.spec:
            raise CsnError("--resume RUN takes the run's own spec and settings (no SPEC, --config)")
        cfg = configure(cli, resume=args.resume)
    else:
        from_file = config.read_config_file(args.config) if args.config else {}
        recipe = config.recipe_settings(cli.get("recipe") or from_file.get("recipe"))
        if args.spec:
            cli["spec"] = args.spec
        cfg = configure(config.merge(recipe, from_file, cli))
    summary = train(cfg, resume=args.resume is not None)
    if summary:
        if "run" in summary and "wall_s" in summary:
            print(report(summary), file=sys.stderr)
        print(json.dumps(summary, indent=1))
    return 0
