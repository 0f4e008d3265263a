"""A training run's folder and setup, shared by both backends.

RUN_DIR/
  config.json         every option of the run (a resume reads it back)
  classes.json        class names in index order (sorted names unless a class list was given)
  model_<backend>.py  the module generated from the spec, imported from here
  metrics.jsonl       one line per logged step
  checkpoints/last.safetensors   model, optimiser, RNG and data-order state (atomic)
  model.safetensors   final weights, keyed like the generated model's state
  summary.json        steps, final loss, skipped videos by name, throughput
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_text
from ..data.dataset import VideoIndex, open_index
from ..data.transforms import VMZ_MEAN, VMZ_STD, ClipOptions
from ..errors import CsnError
from .checkpoint import LAST
from .schedule import default_warmup

log = logging.getLogger("csnspec.train")


@dataclass
class TrainConfig:
    spec: str
    data: str
    out: str
    backend: str = "torch"
    root: str | None = None  # annotation paths are relative to this (default: the list's folder)
    seed: int = 0
    batch: int = 8  # global batch (split over ranks / devices)
    steps: int | None = None
    epochs: float | None = None
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup: int | None = None  # steps; default 10/45 of the run as in the paper
    frames: int = 8
    rate: int = 2
    crop: int = 224
    scale_min: int = 256
    scale_max: int = 320
    flip: bool = True
    mean: tuple = VMZ_MEAN
    std: tuple = VMZ_STD
    workers: int = 2
    threads: int | None = None  # CPU compute threads (default: the cores the workers leave)
    ckpt_every: int = 500
    log_every: int = 10
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast where a GPU runs it
    progress: bool = True

    def clip_options(self) -> ClipOptions:
        return ClipOptions(
            frames=self.frames,
            rate=self.rate,
            crop=self.crop,
            scale_min=self.scale_min,
            scale_max=self.scale_max,
            flip=self.flip,
            mean=tuple(self.mean),
            std=tuple(self.std),
        )


@dataclass
class Run:
    cfg: TrainConfig
    dir: Path
    index: VideoIndex
    net: object  # spec.Network, with the data's class count
    model_path: Path
    total_steps: int
    warmup: int

    @property
    def checkpoint(self) -> Path:
        return self.dir / LAST

    def module(self):
        """Import the generated model module from the run folder."""
        name = f"csnspec_run_{self.cfg.backend}_{abs(hash(str(self.model_path)))}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, self.model_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
        return module


def check_clip(net, frames: int, crop: int, where: str = "data", path=None) -> None:
    """A clear error when the spec's input clip is not what the data options produce."""
    want = (3, frames, crop, crop)
    if tuple(net.input) != want:
        got = "x".join(map(str, net.input))
        raise CsnError(
            f"spec '{net.name}' takes {got} clips (CxTxHxW) but the {where} options give "
            f"{'x'.join(map(str, want))} (--frames {frames}, --crop {crop})",
            hint=f"pass --frames {net.input[1]} --crop {net.input[2]}"
            if net.input[0] == 3 and net.input[2] == net.input[3]
            else "the spec's input must be 3xTxSxS",
            filename=str(path) if path else None,
        )


def prepare(cfg: TrainConfig, resume: bool = False) -> Run:
    """Check everything, write config/classes/model into the run folder; nothing trains yet."""
    from ..backends import render
    from ..lowering import lower
    from ..parse import load

    out = Path(cfg.out)
    if resume:
        stored = out / "config.json"
        if not stored.is_file():
            raise CsnError(f"{out}: nothing to resume (no config.json)")
        cfg = TrainConfig(**json.loads(stored.read_text(encoding="utf-8")))
        cfg.out = str(out)
    elif (out / LAST).exists() or (out / "summary.json").exists():
        raise CsnError(f"{out}: already holds a run; pass --resume, or choose another --out")
    opts = cfg.clip_options()
    net = load(cfg.spec)
    check_clip(net, opts.frames, opts.crop, path=cfg.spec)
    if opts.scale_min < opts.crop or opts.scale_max < opts.scale_min:
        raise CsnError(
            f"the scale range {opts.scale_min}-{opts.scale_max} must start at or above "
            f"the crop size {opts.crop}"
        )
    classes = None
    if resume and (out / "classes.json").is_file():
        classes = json.loads((out / "classes.json").read_text(encoding="utf-8"))
    index = open_index(cfg.data, cfg.root, classes)
    if len(index) < cfg.batch:
        raise CsnError(f"{cfg.data}: {len(index)} usable videos cannot fill a batch of {cfg.batch}")
    net = net.with_input(classes=len(index.classes))
    per_epoch = len(index) // cfg.batch
    if cfg.steps is None:
        total = max(1, round((cfg.epochs or 1) * per_epoch))
    else:
        total = cfg.steps
    warmup = cfg.warmup if cfg.warmup is not None else default_warmup(total)
    model_path = out / f"model_{cfg.backend}.py"
    if not (resume and model_path.is_file()):
        write_text(model_path, render(lower(net), cfg.backend))
    if not resume:
        write_text(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
        write_text(out / "classes.json", json.dumps(index.classes, indent=1) + "\n")
    return Run(cfg, out, index, net, model_path, total, warmup)


class MetricsLog:
    """metrics.jsonl, appended line by line; a resume first drops lines past its checkpoint."""

    def __init__(self, path: Path, start_step: int):
        self.path = path
        if path.exists():
            keep = [
                line
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= start_step
            ]
            write_text(path, "".join(line + "\n" for line in keep))
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the whole run)

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class StepLog:
    """The line both training loops log every few steps: a metrics.jsonl row and the progress
    bar's text, with clips/s over the steps since the previous line."""

    def __init__(self, metrics: MetricsLog | None, bar, t0: float):
        self.metrics, self.bar, self.t0 = metrics, bar, t0
        self.window_clips, self.window_t = 0, t0

    def count(self, clips: int) -> None:
        self.window_clips += clips

    def write(self, step: int, epoch: int, loss: float, lr: float) -> None:
        now = time.perf_counter()
        rate = self.window_clips / max(now - self.window_t, 1e-9)
        self.window_clips, self.window_t = 0, now
        if self.metrics is not None:
            self.metrics.write(
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": loss,
                    "lr": lr,
                    "clips_per_s": round(rate, 2),
                    "time": round(now - self.t0, 3),
                }
            )
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.4g}", clips_s=f"{rate:.1f}")


def note_skipped(seen: dict, skipped) -> None:
    """Record unreadable videos by name, logging each once."""
    for s in skipped:
        if s.name not in seen:
            seen[s.name] = s.reason
            log.warning("skipping %s: %s", s.name, s.reason)


def write_summary(run: Run, summary: dict) -> None:
    write_text(run.dir / "summary.json", json.dumps(summary, indent=1) + "\n")


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Prepare the run folder and train with the configured backend; return the summary."""
    run = prepare(cfg, resume)
    if run.cfg.backend == "torch":
        from .torch_loop import train as loop
    elif run.cfg.backend == "flax":
        from .flax_loop import train as loop
    else:
        raise CsnError(f"unknown backend '{run.cfg.backend}' (torch or flax)")
    return loop(run, resume=resume)
