"""`csnspec search SPACE --out DIR`: expand a design space and search it, analytically or by
training each candidate (in this process or through Ray Tune); resumable with `--resume`."""

from __future__ import annotations

from pathlib import Path

from ..errors import CsnError
from ._data_args import add_split_args, reject_data


def register(sub) -> None:
    p = sub.add_parser(
        "search",
        help="search a design space of specs (analytic or trained objectives)",
        description="Expand a .space file (the .csn language with choose(...) and require lines) "
        "and search it. See docs/search.md.",
    )
    p.add_argument("space", metavar="SPACE", help="a space file")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder")
    p.add_argument(
        "--objective",
        default="max:interactions",
        help="max:METRIC / min:METRIC, comma-separated for a Pareto front, or `trained` "
        "(video top-1); metrics: flops, params, bn_params, interactions, activations, "
        "memory (default max:interactions)",
    )
    p.add_argument(
        "--strategy",
        choices=("exhaustive", "random", "optuna"),
        default="exhaustive",
        help="exhaustive (default), random sampling, or Optuna (TPE; NSGA-II for several objectives)",
    )
    p.add_argument(
        "--trials", type=int, metavar="N", help="candidates to evaluate (required by random/optuna)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the search in --out; finished trials never run again",
    )
    p.add_argument(
        "--top",
        type=int,
        default=10,
        metavar="K",
        help="best candidates written to DIR/top (default 10)",
    )
    p.add_argument(
        "--max-exhaustive",
        type=int,
        default=1_000_000,
        metavar="N",
        help="largest number of combinations --strategy exhaustive expands (default 1,000,000)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="expand the space and print its summary; run nothing"
    )
    p.add_argument("--no-plots", action="store_true")
    add_split_args(
        p,
        "trained objective: data (read as `csnspec train` reads them)",
        val_help="the videos each candidate is scored on (video top-1), in the same forms",
    )
    t = p.add_argument_group("trained objective")
    t.add_argument(
        "--steps", type=int, default=20, help="training steps per candidate (default 20)"
    )
    t.add_argument("--batch", type=int, default=8, help="training batch (default 8)")
    t.add_argument("--lr", type=float, default=0.05, help="peak learning rate (default 0.05)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument(
        "--objective-fn",
        metavar="MODULE:FUNCTION",
        help="another trained objective: f(spec_text, trial_dir, **options) -> {'accuracy': ...}",
    )
    t.add_argument(
        "--fn-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra keyword for the objective function (repeatable; numbers are parsed)",
    )
    r = p.add_argument_group("where trials run")
    r.add_argument(
        "--executor",
        choices=("auto", "local", "ray"),
        default="auto",
        help="ray (Ray Tune; the default where Ray is installed) or local (this process)",
    )
    r.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="a Ray cluster to join (e.g. ray://head:10001 or auto); OUT and the data must "
        "be on storage every node sees",
    )
    r.add_argument(
        "--ray-cpus", type=int, metavar="N", help="CPUs of the local Ray instance (default: all)"
    )
    r.add_argument("--cpus-per-trial", type=float, default=1.0)
    r.add_argument(
        "--gpus-per-trial", type=float, help="default: 1 where the cluster has GPUs, else 0"
    )
    p.set_defaults(run=run)


def _options(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CsnError(f"--fn-option takes KEY=VALUE, got '{item}'")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        out[key.replace("-", "_")] = value
    return out


def _data_options(args) -> dict:
    """The trained objective's `train`, `val`, `format`, `root` options (those given), paths made
    absolute for trials that run in other folders or on other nodes."""
    out = {}
    for name in ("train", "val", "root"):
        if getattr(args, name) is not None:
            out[name] = str(Path(getattr(args, name)).resolve())
    if args.format is not None:
        out["format"] = args.format
    return out


def _check_data(data: dict) -> None:
    """Open each dataset now, so that a bad one stops the search before any trial starts."""
    from ..data.dataset import open_index

    for name in ("train", "val"):
        if name in data:
            open_index(data[name], data.get("root"), format=data.get("format"))


def run(args) -> int:
    from ..search.expand import expand
    from ..search.objectives import parse_objectives
    from ..search.runner import Settings, run_search
    from ..search.space import load_space
    from ..search.trained import DEFAULT

    reject_data(args, "search")
    objectives = parse_objectives(args.objective)
    space = load_space(args.space)
    for name in ("trials", "top", "steps", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CsnError(f"--{name} must be positive (got {value})")
    trained = any(o.trained for o in objectives)
    fn_options = _options(args.fn_option)
    data = _data_options(args)
    if trained:
        if args.objective_fn is None:
            if "train" not in data or "val" not in data:
                raise CsnError(
                    "--objective trained needs --train DATA and --val DATA",
                    hint="make a small dataset with `csnspec data synth DIR`, then pass "
                    "--train DIR/train.csv --val DIR/test.csv",
                )
            _check_data(data)
            fn_options = {
                **data,
                "steps": args.steps,
                "batch": args.batch,
                "lr": args.lr,
                "seed": args.seed,
                "device": args.device,
                **fn_options,
            }
        else:
            _check_data(data)
            fn_options = {**data, **fn_options}
    elif args.objective_fn or data or args.ray_address or args.executor != "auto":
        raise CsnError(
            "--train, --val, --format, --root, --objective-fn, --executor and --ray-address go "
            "with --objective trained",
            hint="analytic objectives are computed in this process, in microseconds per candidate",
        )
    if args.dry_run:
        print(f"space {space.name}: {len(space.choices)} choices, {space.raw_size:,} combinations")
        if space.raw_size > args.max_exhaustive:
            raise CsnError(
                f"{space.raw_size:,} combinations are more than --max-exhaustive {args.max_exhaustive:,}"
            )
        ex = expand(space)
        print(ex.tally.summary())
        return 0
    settings = Settings(
        out=Path(args.out),
        objectives=objectives,
        strategy=args.strategy,
        trials=args.trials,
        seed=args.seed,
        resume=args.resume,
        top=args.top,
        max_exhaustive=args.max_exhaustive,
        executor=args.executor,
        fn_path=(args.objective_fn or DEFAULT) if trained else None,
        fn_options=fn_options,
        ray_address=args.ray_address,
        ray_cpus=args.ray_cpus,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        plots=not args.no_plots,
    )
    run_search(space, settings, log=lambda msg: print(msg, flush=True))
    return 0
