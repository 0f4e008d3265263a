"""A training run's options: one flat set of named settings (the `train` flags, a `--config` file,
a `--recipe`, the run folder's config.json all use the same names), resolved once into a
`TrainConfig`.

Precedence, lowest first: built-in defaults, the recipe, the config file, the command line; then
what the spec's input clip (or the initial weights' metadata) implies for anything still unset.
"""

from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..data.transforms import VMZ_MEAN, VMZ_STD, ClipOptions
from ..errors import CsnError

log = logging.getLogger("csnspec.train")

CONFIG_FORMAT = "csnspec-train-config/2"
AMP_MODES = ("auto", "bf16", "fp16", "off")

# The paper's short-side scale range for its 224-pixel crop (section 4.1), scaled for other crops.
PAPER_CROP, PAPER_SCALE = 224, (256, 320)


@dataclass
class TrainConfig:
    spec: str
    train: str
    out: str = "runs/train"
    val: str | None = None
    format: str | None = None  # dataset format (detected when None)
    root: str | None = None  # where a list's videos are (default: the list's folder)
    backend: str = "torch"
    seed: int = 0
    batch: int = 8  # global batch (split over ranks / devices)
    steps: int | None = None
    epochs: float | None = None
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup: int | None = None  # steps; default 10/45 of the run as in the paper
    warmup_epochs: float | None = None
    clip: ClipOptions = field(default_factory=ClipOptions)  # training clips and validation views
    workers: int = 2
    threads: int | None = None  # CPU compute threads (default: the cores the workers leave)
    ckpt_every: int = 500
    log_every: int = 10
    val_every: int | None = None  # steps between validations (default: once per epoch)
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16 on an accelerator, off on CPU) | bf16 | fp16 (scaled) | off
    progress: bool = True
    clip_grad: float | None = None  # max global gradient norm
    accum: int = 1  # micro-batches per optimiser step (the batch is split, not multiplied)
    ema: float | None = None  # decay of an exponential moving average of the weights
    sync_bn: bool = False  # SyncBatchNorm under torch DDP
    init: str | None = None  # weights to start from (fine-tuning)
    freeze_bn: bool = False
    freeze_stages: int | None = None  # the stem and the first N stages (MMAction2's frozen_stages)
    head_lr_mult: float = 1.0
    recipe: str | None = None


# Flat setting names that live in `TrainConfig.clip`, mapped to ClipOptions fields.
CLIP_KEYS = {
    "frames": "frames",
    "rate": "rate",
    "crop": "crop",
    "flip": "flip",
    "mean": "mean",
    "std": "std",
    "test_scale": "test_scale",
    "val_clips": "clips",
    "val_crops": "crops",
}
TOP_KEYS = {f.name for f in fields(TrainConfig)} - {"clip"}
KEYS = TOP_KEYS | set(CLIP_KEYS) | {"scale"}

RECIPES: dict[str, dict] = {
    # Section 4.1 of Tran et al. 2019: SGD momentum 0.9, weight decay 1e-4, 45 epochs with 10 of
    # warm-up then half a cosine, 0.01 per 8-clip GPU batch (scaled with the global batch),
    # scale jitter 256-320, 224 crops, 8 frames every other frame; tested on 10 center crops.
    "csn-kinetics": {
        "lr_per_8_clips": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "epochs": 45,
        "warmup_epochs": 10,
        "batch": 8,
        "frames": 8,
        "rate": 2,
        "crop": 224,
        "scale": [256, 320],
        "test_scale": 256,
        "val_clips": 10,
        "val_crops": 1,
    },
}
# Section 5's models: the same recipe on 32-frame clips (MMAction2's ircsn 32x2x1 configs).
RECIPES["csn-kinetics-32"] = {**RECIPES["csn-kinetics"], "frames": 32}


def default_scale(crop: int) -> tuple[int, int]:
    """The paper's 256-320 short side for a 224 crop, in proportion for other crops."""
    return tuple(round(s * crop / PAPER_CROP) for s in PAPER_SCALE)


def default_test_scale(crop: int) -> int:
    return round(crop * PAPER_SCALE[0] / PAPER_CROP)


def read_config_file(path) -> dict:
    """The settings of a TOML, YAML or JSON file (keys are flag names, `-` or `_`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise CsnError(f"{path}: cannot read the config file ({err.strerror or err})") from None
    suffix = path.suffix.lower()
    import yaml

    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise CsnError(f"{path}: a config file is .toml, .yaml, .yml or .json")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, ValueError) as err:
        raise CsnError(f"{path}: not a valid {suffix[1:].upper()} file ({err})") from None
    if not isinstance(data, dict):
        raise CsnError(f"{path}: a config file holds `name = value` settings")
    return check_keys(data, path)


def check_keys(data: dict, path) -> dict:
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name == "csnspec":
            continue  # the format tag of a saved config.json
        if name not in KEYS:
            from difflib import get_close_matches

            near = get_close_matches(name, sorted(KEYS), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise CsnError(f"{path}: unknown setting '{key}'{hint}")
        out[name] = value
    return out


def merge(*layers: dict) -> dict:
    """Later layers win; None means unset."""
    out: dict = {}
    for layer in layers:
        out.update({k: v for k, v in layer.items() if v is not None})
    return out


def recipe_settings(name: str | None) -> dict:
    if name is None:
        return {}
    if name not in RECIPES:
        raise CsnError(f"unknown recipe '{name}' (known: {', '.join(sorted(RECIPES))})")
    return dict(RECIPES[name])


# Names the weights' preprocessing record may use for each clip setting (the first wins).
PRETRAINED_NAMES = {
    "frames": ("frames", "num_frames", "clip_len"),
    "rate": ("rate", "sampling_rate", "frame_interval"),
    "crop": ("crop", "crop_size", "input_size"),
    "scale": ("scale", "short_side", "short_side_scale", "scale_range"),
    "mean": ("mean",),
    "std": ("std",),
}


def from_pretrained(record: dict | None) -> dict:
    """Clip settings from the preprocessing stored with weights; mean and std given on the
    0-255 scale are brought to the 0-1 scale this pipeline normalises on."""
    out: dict = {}
    for key, names in PRETRAINED_NAMES.items():
        value = next((record[n] for n in names if (record or {}).get(n) is not None), None)
        if value is not None:
            out[key] = value
    for key in ("mean", "std"):
        if key in out and max(out[key]) > 1:
            out[key] = [v / 255 for v in out[key]]
    return out


def build(settings: dict, spec_clip: tuple[int, int] | None = None, pretrained=None) -> TrainConfig:
    """A TrainConfig from flat settings; clip settings still unset come from the weights'
    metadata (`pretrained`, a dict) or else the spec's input (`spec_clip`: frames, crop)."""
    s = dict(settings)
    if "lr_per_8_clips" in s:
        per8 = s.pop("lr_per_8_clips")
        s.setdefault("lr", per8 * s.get("batch", 8) / 8)
    opts = resolve_clip(s, spec_clip, pretrained)
    try:
        return TrainConfig(clip=opts, **s)
    except TypeError as err:
        raise CsnError(f"incomplete training settings ({err})") from None


def resolve_clip(s: dict, spec_clip=None, pretrained=None) -> ClipOptions:
    """Pop the clip settings out of `s` into ClipOptions: what is set wins, then the weights'
    metadata, then the spec's input clip; the scales follow the crop as in the paper."""
    pre = from_pretrained(pretrained)
    for key in ("frames", "rate", "crop", "mean", "std"):
        if pre.get(key) is None:
            continue
        if key not in s:
            s[key] = pre[key]
        elif _differs(s[key], pre[key]):
            log.warning(
                "--%s %s differs from the initial weights' %s", key, _show(s[key]), _show(pre[key])
            )
    if "scale" not in s and pre.get("scale") is not None:
        scale = pre["scale"]
        s["scale"] = list(scale) if isinstance(scale, list | tuple) else [scale, scale]
    if spec_clip is not None:
        s.setdefault("frames", spec_clip[0])
        s.setdefault("crop", spec_clip[1])
    crop = int(s.get("crop", ClipOptions.crop))
    scale = s.pop("scale", None) or default_scale(crop)
    if len(scale) != 2:
        raise CsnError(f"scale takes two sizes, MIN MAX (got {scale})")
    s.setdefault("test_scale", default_test_scale(crop))
    clip = {CLIP_KEYS[k]: s.pop(k) for k in list(s) if k in CLIP_KEYS}
    for key in ("mean", "std"):
        clip[key] = tuple(float(v) for v in clip.get(key, VMZ_MEAN if key == "mean" else VMZ_STD))
    return ClipOptions(scale_min=int(scale[0]), scale_max=int(scale[1]), **clip)


def _differs(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) != len(b) or any(abs(float(x) - float(y)) > 1e-6 for x, y in zip(a, b))
    return a != b


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def to_settings(cfg: TrainConfig) -> dict:
    """The flat settings that `build` turns back into `cfg` (what config.json holds)."""
    out = {"csnspec": CONFIG_FORMAT}
    out.update({k: v for k, v in asdict(replace(cfg, clip=None)).items() if k != "clip"})
    for key, name in CLIP_KEYS.items():
        value = getattr(cfg.clip, name)
        out[key] = list(value) if isinstance(value, tuple) else value
    out["scale"] = [cfg.clip.scale_min, cfg.clip.scale_max]
    return out


def check(cfg: TrainConfig) -> None:
    """Every setting in range, with the flag's name in the message."""
    positive = ("batch", "ckpt_every", "log_every", "accum")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise CsnError(
                f"--{name.replace('_', '-')} must be positive (got {getattr(cfg, name)})"
            )
    for name in ("steps", "val_every"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise CsnError(f"--{name.replace('_', '-')} must be positive (got {value})")
    if cfg.workers < 0:
        raise CsnError(f"--workers must be 0 or more (got {cfg.workers})")
    c = cfg.clip
    for flag, value in (("frames", c.frames), ("rate", c.rate), ("crop", c.crop)):
        if value < 1:
            raise CsnError(f"--{flag} must be positive (got {value})")
    if c.scale_min < c.crop or c.scale_max < c.scale_min:
        raise CsnError(
            f"--scale {c.scale_min} {c.scale_max}: the range must start at or above the crop "
            f"size {c.crop} and not run backwards",
        )
    if c.test_scale < c.crop:
        raise CsnError(f"--test-scale {c.test_scale} is smaller than --crop {c.crop}")
    if cfg.batch % cfg.accum:
        raise CsnError(f"--accum {cfg.accum} does not split --batch {cfg.batch}")
    if cfg.amp not in AMP_MODES:
        raise CsnError(f"--amp must be one of {', '.join(AMP_MODES)} (got {cfg.amp})")
    if cfg.ema is not None and not 0 < cfg.ema < 1:
        raise CsnError(f"--ema is a decay between 0 and 1 (got {cfg.ema})")
    if cfg.clip_grad is not None and cfg.clip_grad <= 0:
        raise CsnError(f"--clip-grad must be positive (got {cfg.clip_grad})")
    if cfg.head_lr_mult < 0:
        raise CsnError(f"--head-lr-mult must be 0 or more (got {cfg.head_lr_mult})")
    if cfg.freeze_stages is not None and cfg.freeze_stages < 0:
        raise CsnError(f"--freeze-stages must be 0 or more (got {cfg.freeze_stages})")
