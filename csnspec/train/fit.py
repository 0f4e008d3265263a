"""The training skeleton both backends share: schedule, logging, validation, checkpoints, the
summary. A backend supplies a stepper (`torch_loop.TorchStepper`, `flax_loop.FlaxStepper`) that
owns the model and optimiser and knows how to take one step, save and restore them, and predict.
"""

from __future__ import annotations

import json
import sys
import time

from ..atomic import write_text
from ..data.dataset import TrainClips
from ..data.loader import BatchPlan
from ..errors import CsnError
from . import checkpoint
from .board import Board
from .evaluate import score_views
from .run import MetricsLog, Run, StepLog, note_skipped, write_summary
from .schedule import lr_at

VAL_KEYS = ("clip_top1", "clip_top5", "video_top1", "video_top5")


def fit(run: Run, stepper, resume: bool = False) -> dict:
    """Train `run` to its last step with `stepper`; return the summary (empty on ranks > 0)."""
    from tqdm import tqdm

    cfg = run.cfg
    main = stepper.main
    if main:
        print(
            f"csnspec: training on {stepper.device_name} ({cfg.backend}, {stepper.precision})",
            file=sys.stderr,
        )
    start, seen, best = 0, dict(run.index.skipped), None
    if resume and run.checkpoint.exists():
        arrays, meta = checkpoint.load(run.checkpoint)
        if meta.get("backend") != cfg.backend:
            raise CsnError(
                f"{run.checkpoint}: a {meta.get('backend')} checkpoint, not {cfg.backend}"
            )
        stepper.restore(arrays, meta)
        checkpoint.set_host_rng_state(meta["host_rng"])
        start, best = meta["step"], meta.get("best")
        seen.update(meta.get("skipped", {}))
    elif cfg.init:
        note = stepper.init_from(cfg.init)
        if main:
            print(f"csnspec: {note.text()}", file=sys.stderr)
            write_text(run.dir / "init.json", json.dumps(note.as_dict(), indent=1) + "\n")
    stepper.begin()
    plan = BatchPlan(
        len(run.index), cfg.batch, cfg.seed, start, run.total_steps, stepper.rank, stepper.world
    )
    data = TrainClips(run.index, cfg.clip, cfg.seed)
    metrics = MetricsLog(run.dir / "metrics.jsonl", start) if main else None
    board = Board.open(run.dir / "tensorboard") if main else None
    bar = tqdm(
        total=run.total_steps,
        initial=start,
        disable=not (main and cfg.progress),
        dynamic_ncols=True,
        desc=f"train {run.net.name}",
    )
    val_every = cfg.val_every or run.steps_per_epoch
    last_loss, last_val, clips, t0 = None, None, 0, time.perf_counter()
    log = StepLog(metrics, bar, t0, board)
    for step, (x, y, skipped) in enumerate(stepper.batches(plan, data), start):
        note_skipped(seen, skipped)
        lr = lr_at(step, cfg.lr, run.total_steps, run.warmup)
        used, loss = stepper.step(x, y, lr)
        clips += used
        log.count(used)
        done = step + 1
        final = done == run.total_steps
        if main and (done % cfg.log_every == 0 or final):
            value = None if loss is None else float(loss)
            last_loss = value if value is not None else last_loss
            log.write(done, step // plan.steps_per_epoch, value, lr)
        bar.update(1)
        if main and run.val_index is not None and (done % val_every == 0 or final):
            last_val = validate(run, stepper, seen)
            last_val["step"] = done
            if metrics is not None:
                metrics.write({"step": done, "val": last_val})
            if board is not None:
                board.scalars(done, {f"val/{k}": last_val[k] for k in VAL_KEYS})
            if best is None or last_val["video_top1"] > best["video_top1"]:
                best = {k: last_val[k] for k in ("step", *VAL_KEYS)}
                checkpoint.save(run.best, stepper.weights(), _weights_meta(run, best))
        if main and (done % cfg.ckpt_every == 0 or final):
            save_checkpoint(run, stepper, done, seen, best)
    bar.close()
    wall = time.perf_counter() - t0
    summary = {}
    if main:
        metrics.close()
        if board is not None:
            board.close()
        checkpoint.save(run.dir / "model.safetensors", stepper.weights(), _weights_meta(run))
        if cfg.ema is not None:
            checkpoint.save(
                run.dir / "model_ema.safetensors", stepper.weights(ema=True), _weights_meta(run)
            )
        summary = {
            "run": str(run.dir),
            "backend": cfg.backend,
            "device": stepper.device_name,
            "precision": stepper.precision,
            "world_size": stepper.world,
            "steps": run.total_steps,
            "resumed_from": start,
            "final_loss": last_loss,
            "clips": clips,
            "wall_s": round(wall, 3),
            "clips_per_s": round(clips / max(wall, 1e-9), 2),
            "weights": "model.safetensors",
            "ema_weights": "model_ema.safetensors" if cfg.ema is not None else None,
            "checkpoints": {
                "last": str(run.checkpoint.relative_to(run.dir)),
                "best": str(run.best.relative_to(run.dir)) if best is not None else None,
            },
            "val": last_val,
            "best_val": best,
            "skipped": dict(sorted(seen.items())),
        }
        write_summary(run, summary)
    stepper.finish()
    return summary


def validate(run: Run, stepper, seen: dict) -> dict:
    """Clip and video top-1/top-5 on the validation set (and of the EMA weights, with --ema)."""
    cfg = run.cfg
    kw = {
        "batch": max(1, cfg.batch // max(1, cfg.clip.views)),
        "workers": cfg.workers,
        "seen": seen,
    }
    result = score_views(run.val_index, cfg.clip, stepper.predictor(), **kw)
    if cfg.ema is not None:
        ema = score_views(run.val_index, cfg.clip, stepper.predictor(ema=True), **kw)
        result["ema"] = {k: ema[k] for k in VAL_KEYS}
    stepper.train_mode()
    return result


def save_checkpoint(run: Run, stepper, step: int, seen: dict, best: dict | None) -> None:
    arrays, extra = stepper.state()
    meta = {
        "backend": run.cfg.backend,
        "step": step,
        "total_steps": run.total_steps,
        "seed": run.cfg.seed,
        "epoch": step // run.steps_per_epoch,
        "host_rng": checkpoint.host_rng_state(),
        "skipped": seen,
        "best": best,
        "preprocessing": _weights_meta(run)["preprocessing"],
        **extra,
    }
    checkpoint.save(run.checkpoint, arrays, meta)


def _weights_meta(run: Run, best: dict | None = None) -> dict:
    c = run.cfg.clip
    meta = {
        "backend": run.cfg.backend,
        "classes": run.index.classes,
        "spec": run.net.name,
        # what a run or `eval` starting from these weights takes as its defaults
        "preprocessing": {
            "frames": c.frames,
            "rate": c.rate,
            "crop": c.crop,
            "scale": [c.scale_min, c.scale_max],
            "mean": list(c.mean),
            "std": list(c.std),
        },
    }
    if best is not None:
        meta["val"] = best
    return meta


def report(summary: dict) -> str:
    """The human-readable end of a run, for stderr."""
    lines = [f"csnspec: run {summary['run']} ({summary['backend']} on {summary['device']})"]
    loss = summary.get("final_loss")
    lines.append(
        f"  steps {summary['steps']}"
        + (f" (resumed from {summary['resumed_from']})" if summary.get("resumed_from") else "")
        + f", final loss {'-' if loss is None else f'{loss:.4f}'}"
    )
    best = summary.get("best_val")
    if best:
        lines.append(
            f"  best validation: video top-1 {best['video_top1']:.1%}, top-5 "
            f"{best['video_top5']:.1%} at step {best['step']} ({summary['checkpoints']['best']})"
        )
    lines.append(
        f"  wall {summary['wall_s']:.1f} s, {summary['clips_per_s']:.1f} clips/s; weights in "
        f"{summary['weights']}"
        + (f" and {summary['ema_weights']}" if summary.get("ema_weights") else "")
    )
    if summary.get("skipped"):
        lines.append(f"  {len(summary['skipped'])} videos skipped (listed in summary.json)")
    return "\n".join(lines)
