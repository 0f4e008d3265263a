"""Trained objectives: a function of a candidate's canonical spec text that returns its metrics.

`train_and_evaluate` is the real one: a short training run (`csnspec.train.trainer.train`) on
`--train` and video top-1 on `--val` (`csnspec.train.eval_run.evaluate`), in the trial's own
folder. A trial killed half-way continues from its checkpoint when run again.
`standin` is a cheap deterministic stand-in for tests of the search machinery.

An objective is any importable `module:function` taking (spec_text, trial_dir, **options) and
returning a dict with `accuracy` (or a number, taken as the accuracy).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import time
from pathlib import Path

from ..errors import CsnError

DEFAULT = "csnspec.search.trained:train_and_evaluate"
STANDIN = "csnspec.search.trained:standin"


def resolve(path: str):
    """The function named `module:function`."""
    module, sep, name = path.partition(":")
    if not sep:
        raise CsnError(f"--objective-fn takes module:function, got '{path}'")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise CsnError(f"cannot load objective function '{path}': {err}") from None
    if not callable(fn):
        raise CsnError(f"'{path}' is not a function")
    return fn


def as_metrics(result) -> dict:
    if isinstance(result, dict):
        if "accuracy" not in result:
            raise ValueError(f"the objective returned no 'accuracy': {sorted(result)}")
        return result
    return {"accuracy": float(result)}


def train_and_evaluate(
    spec_text: str,
    trial_dir,
    *,
    train: str,
    val: str,
    format: str | None = None,
    root: str | None = None,
    steps: int = 20,
    batch: int = 8,
    lr: float = 0.05,
    seed: int = 0,
    workers: int = 0,
    device: str = "auto",
    backend: str = "torch",
    clips: int = 2,
) -> dict:
    """Train a candidate for `steps` steps on `train` and return its video top-1 on `val`.

    `train` and `val` are what `csnspec train --train/--val` take (with `format` and `root`).
    """
    from ..data.transforms import ClipOptions
    from ..parse import parse
    from ..train.config import TrainConfig
    from ..train.eval_run import EvalConfig, evaluate
    from ..train.trainer import train as run_training

    net = parse(spec_text)
    _, frames, crop, width = net.input
    if width != crop:
        raise CsnError(
            f"a trained search needs square clips, got input {'x'.join(map(str, net.input))}"
        )
    trial = Path(trial_dir)
    run = trial / "run"
    resume = (run / "config.json").is_file() and (run / "checkpoints").is_dir()
    if run.exists() and not resume:
        shutil.rmtree(run)  # a run killed before its first checkpoint: start it again
    trial.mkdir(parents=True, exist_ok=True)
    spec_path = trial / "spec.csn"
    spec_path.write_text(spec_text, encoding="utf-8")
    scale = crop + max(2, crop // 8)
    started = time.perf_counter()
    opts = ClipOptions(
        frames=frames,
        rate=1,
        crop=crop,
        scale_min=crop,
        scale_max=scale,
        test_scale=crop,
        clips=clips,
        crops=1,
    )
    summary = run_training(
        TrainConfig(
            spec=str(spec_path),
            train=train,
            format=format,
            root=root,
            out=str(run),
            backend=backend,
            seed=seed,
            batch=batch,
            steps=steps,
            lr=lr,
            clip=opts,
            workers=workers,
            ckpt_every=max(1, steps // 2),
            device=device,
            progress=False,
        ),
        resume=resume,
    )
    train_seconds = time.perf_counter() - started
    result = evaluate(
        EvalConfig(
            spec=str(spec_path),
            weights=str(run / "model.safetensors"),
            data=val,
            format=format,
            root=root,
            backend=backend,
            opts=opts,
            workers=workers,
            device=device,
            progress=False,
        )
    )
    return {
        "accuracy": result["video_top1"],
        "clip_top1": result["clip_top1"],
        "train_loss": (summary or {}).get("final_loss"),
        "train_seconds": round(train_seconds, 3),
    }


def standin(spec_text: str, trial_dir, *, seconds: float = 0.0, **_) -> dict:
    """A deterministic stand-in: a pseudo-accuracy from the spec's hash, after `seconds` of sleep.

    For tests of the search machinery (resume, Ray) where real training would be too slow.
    """
    time.sleep(seconds)
    digest = hashlib.sha256(spec_text.encode("utf-8")).digest()
    Path(trial_dir).mkdir(parents=True, exist_ok=True)
    (Path(trial_dir) / "standin.json").write_text(
        json.dumps({"ran": time.time()}), encoding="utf-8"
    )
    return {"accuracy": digest[0] / 255}
