"""A training run's folder and setup, shared by both backends (the loops import this module;
it imports neither loop).

RUN_DIR/
  config.json         every setting of the run, flat (`--config RUN/config.json` reproduces it)
  classes.json        class names in index order (sorted names unless a class list was given)
  model_<backend>.py  the module generated from the spec, imported from here
  metrics.jsonl       one line per logged step, one per validation
  init.json           fine-tuning: what --init loaded, re-initialised and skipped
  checkpoints/last.safetensors   model, optimiser, RNG and data-order state (atomic)
  checkpoints/best.safetensors   the weights of the best validation so far
  model.safetensors   final weights, keyed like the generated model's state
  model_ema.safetensors  final EMA weights (with --ema)
  summary.json        steps, losses, validation, checkpoints, skipped videos, throughput
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_text
from ..data.dataset import TrainClips, VideoIndex, open_index
from ..errors import CsnError
from . import checkpoint
from . import config as settings_mod
from .checkpoint import BEST, LAST
from .config import TrainConfig
from .schedule import default_warmup

log = logging.getLogger("csnspec.train")

# Settings a resume may change: how long, and how the run is watched and fed.
RESUMABLE = {"steps", "epochs", "progress", "workers", "threads", "device", "log_every"}


@dataclass
class Run:
    cfg: TrainConfig
    dir: Path
    index: VideoIndex
    val_index: VideoIndex | None
    net: object  # spec.Network, with the data's class count
    low: object  # its lowered IR
    model_path: Path
    total_steps: int
    warmup: int

    @property
    def checkpoint(self) -> Path:
        return self.dir / LAST

    @property
    def best(self) -> Path:
        return self.dir / BEST

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.index) // self.cfg.batch)

    def module(self):
        """Import the generated model module from the run folder."""
        name = f"csnspec_run_{self.cfg.backend}_{abs(hash(str(self.model_path.resolve())))}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, self.model_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
        return module


def open_dataset(path, cfg: TrainConfig, classes: list[str] | None = None) -> VideoIndex:
    """The one place `--train` / `--val` (with `--format`, `--root`) become a video index.

    `path` is a folder, a list file or a dataset folder in any of `csnspec.data.formats.FORMATS`.
    """
    return open_index(path, cfg.root, classes, format=cfg.format)


def check_clip(net, frames: int, crop: int, where: str = "data", path=None) -> None:
    """A clear error when the spec's input clip is not what the data options produce."""
    want = (3, frames, crop, crop)
    if tuple(net.input) != want:
        got = "x".join(map(str, net.input))
        raise CsnError(
            f"spec '{net.name}' takes {got} clips (CxTxHxW) but the {where} options give "
            f"{'x'.join(map(str, want))} (--frames {frames}, --crop {crop})",
            hint=f"pass --frames {net.input[1]} --crop {net.input[2]} (or leave both out: "
            "they default to the spec's input)"
            if net.input[0] == 3 and net.input[2] == net.input[3]
            else "the spec's input must be 3xTxSxS",
            filename=str(path) if path else None,
        )


def spec_clip(net) -> tuple[int, int] | None:
    """(frames, crop) the spec's input clip implies, when it is a square RGB clip."""
    c, t, h, w = net.input
    return (t, h) if c == 3 and h == w else None


def read_json(path: Path, what: str):
    """A JSON file of the run; a corrupt one is reported by name."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CsnError(f"{path}: cannot read the run's {what} ({err})") from None


def configure(settings: dict, resume: str | None = None) -> TrainConfig:
    """The run's TrainConfig: from flat settings, or from RUN/config.json on resume (with the
    few settings a resume may change)."""
    from ..parse import load

    if resume is not None:
        stored = Path(resume) / "config.json"
        if not stored.is_file():
            raise CsnError(f"{resume}: nothing to resume (no config.json)")
        saved = read_json(stored, "config")
        if not isinstance(saved, dict):
            raise CsnError(f"{stored}: cannot read the run's config (not a JSON object)")
        saved = settings_mod.check_keys(saved, stored)
        changed = sorted(k for k, v in settings.items() if k not in RESUMABLE and v != saved.get(k))
        if changed:
            raise CsnError(
                f"{resume}: a resumed run keeps its settings; cannot change "
                + ", ".join("--" + k.replace("_", "-") for k in changed),
                hint="start a new run with --config RUN/config.json and the changes",
            )
        if settings.get("steps") is not None:
            saved.pop("epochs", None)
        cfg = settings_mod.build({**saved, **settings, "out": str(resume)})
    else:
        if not settings.get("spec"):
            raise CsnError("train needs a SPEC (or --resume RUN)")
        if not settings.get("train"):
            raise CsnError("train needs --train DATA (a folder of class folders or a list)")
        net = load(settings["spec"])
        init = settings.get("init")
        if init and not Path(init).is_file():
            raise CsnError(f"{init}: no such weights file (--init)")
        pretrained = pretrained_cfg(init) if init else None
        cfg = settings_mod.build(settings, spec_clip(net), pretrained)
    settings_mod.check(cfg)
    return cfg


def pretrained_cfg(path) -> dict | None:
    """The preprocessing stored with weights: a csnspec run's own record, else what `weights
    import` wrote (read by `csnspec.weights.metadata` where this build has it), else None."""
    if not Path(path).is_file():
        return None  # reported where the weights are loaded, after the spec and device checks
    try:
        meta = checkpoint.read_meta(path)
    except CsnError:
        meta = None  # not a csnspec training file: imported weights, perhaps
    if meta and meta.get("preprocessing"):
        return meta["preprocessing"]
    try:
        from ..weights.metadata import read_pretrained_cfg
    except ImportError:
        return None
    return read_pretrained_cfg(path)


def prepare(cfg: TrainConfig, resume: bool = False) -> Run:
    """Check everything, write config/classes/model into the run folder; nothing trains yet."""
    from ..backends import render
    from ..lowering import lower
    from ..parse import load
    from ..sizing import TRAIN, check_fits

    out = Path(cfg.out)
    if not resume and ((out / LAST).exists() or (out / "summary.json").exists()):
        raise CsnError(
            f"{out}: already holds a run", hint=f"pass --resume {out}, or choose another --out"
        )
    net = load(cfg.spec)
    check_clip(net, cfg.clip.frames, cfg.clip.crop, path=cfg.spec)
    classes = None
    if resume and (out / "classes.json").is_file():
        classes = read_json(out / "classes.json", "class list")
    index = open_dataset(cfg.train, cfg, classes)
    if len(index) < cfg.batch:
        raise CsnError(
            f"{cfg.train}: {len(index)} usable videos cannot fill a batch of {cfg.batch}"
        )
    first_readable(index, cfg)
    val_index = open_dataset(cfg.val, cfg, index.classes) if cfg.val else None
    net = net.with_input(classes=len(index.classes))
    per_epoch = max(1, len(index) // cfg.batch)
    total = cfg.steps if cfg.steps is not None else max(1, round((cfg.epochs or 1) * per_epoch))
    meta = checkpoint.read_meta(out / LAST) if resume else None
    if meta and meta["step"] > total:
        raise CsnError(
            f"{out}: already trained {meta['step']} steps; --steps must be at least that"
        )
    if cfg.warmup is not None:
        warmup = cfg.warmup
    elif cfg.warmup_epochs is not None:
        warmup = max(1, round(cfg.warmup_epochs * per_epoch))
    else:  # of the run as first planned: extending a run keeps its warm-up
        warmup = default_warmup(meta.get("total_steps", total) if meta else total)
    low = lower(net)
    check_fits(
        low, usage=TRAIN, batch=cfg.batch, what="train", filename=cfg.spec, device=cfg.device
    )
    model_path = out / f"model_{cfg.backend}.py"
    if not (resume and model_path.is_file()):
        write_text(model_path, render(low, cfg.backend))
    if resume:
        cfg.warmup = warmup  # fixed from now on; the cosine stretches to a new length
    write_text(out / "config.json", json.dumps(settings_mod.to_settings(cfg), indent=1) + "\n")
    if not resume:
        write_text(out / "classes.json", json.dumps(index.classes, indent=1) + "\n")
    return Run(cfg, out, index, val_index, net, low, model_path, total, warmup)


def first_readable(index: VideoIndex, cfg: TrainConfig) -> None:
    """Refuse to start when no listed video can be decoded (reading stops at the first good one)."""
    clips = TrainClips(index, cfg.clip, cfg.seed)
    reasons = {}
    for i in range(len(index)):
        item = clips[0, i]
        if not hasattr(item, "reason"):
            return
        reasons[item.name] = item.reason
    shown = "; ".join(f"{n}: {r}" for n, r in list(reasons.items())[:5])
    raise CsnError(
        f"{cfg.train}: none of the {len(index)} videos can be decoded ({shown}"
        + (" ..." if len(reasons) > 5 else "")
        + ")"
    )


def finite(value):
    """JSON has no NaN: a non-finite float becomes null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


class MetricsLog:
    """metrics.jsonl, appended line by line; a resume first drops lines past its checkpoint and a
    last line torn by a kill."""

    def __init__(self, path: Path, start_step: int):
        self.path = path
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            keep = []
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    if n == len(lines):
                        break  # the write a kill interrupted
                    raise CsnError(f"{path}:{n}: not a JSON line") from None
                if row.get("step", 0) <= start_step:
                    keep.append(line)
            write_text(path, "".join(line + "\n" for line in keep))
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the whole run)

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(finite(row), allow_nan=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class StepLog:
    """The line the training loop logs every few steps: a metrics.jsonl row, TensorBoard scalars
    where installed, and the progress bar's text, with clips/s since the previous line."""

    def __init__(self, metrics: MetricsLog | None, bar, t0: float, board=None):
        self.metrics, self.bar, self.t0, self.board = metrics, bar, t0, board
        self.window_clips, self.window_t = 0, t0

    def count(self, clips: int) -> None:
        self.window_clips += clips

    def write(self, step: int, epoch: int, loss: float | None, lr: float) -> None:
        now = time.perf_counter()
        rate = self.window_clips / max(now - self.window_t, 1e-9)
        self.window_clips, self.window_t = 0, now
        row = {
            "step": step,
            "epoch": epoch,
            "loss": loss,
            "lr": lr,
            "clips_per_s": round(rate, 2),
            "time": round(now - self.t0, 3),
        }
        if self.metrics is not None:
            self.metrics.write(row)
        if self.board is not None:
            self.board.scalars(
                step, {"train/loss": loss, "train/lr": lr, "train/clips_per_s": rate}
            )
        shown = "-" if loss is None else f"{loss:.4f}"
        self.bar.set_postfix(loss=shown, lr=f"{lr:.4g}", clips_s=f"{rate:.1f}")


def note_skipped(seen: dict, skipped) -> None:
    """Record unreadable videos by name, logging each once."""
    for s in skipped:
        if s.name not in seen:
            seen[s.name] = s.reason
            log.warning("skipping %s: %s", s.name, s.reason)


def write_summary(run: Run, summary: dict) -> None:
    write_text(
        run.dir / "summary.json", json.dumps(finite(summary), indent=1, allow_nan=False) + "\n"
    )
