"""The preprocessing a set of weights expects, kept in its safetensors header (one writer, one reader).

`weights import` writes, under the header key `csnspec.pretrained_cfg`, a JSON object:

    source            the implementation the weights come from (pytorchvideo, vmz, ...)
    mean, std         per RGB channel, in `value_range`
    value_range       "0-1" (pixels divided by 255 first) or "0-255"
    frames            frames per clip
    sampling_rate     take every n-th frame
    crop              side of the square crop at test time
    short_side_scale  the short side frames are resized to before cropping (null: not published)
    bn_eps            the BatchNorm eps the implementation builds with
    num_classes       the classifier's class count
    class_names       the class names in label order, or null
    reference         where the values come from (see docs/weights.md)

`read_pretrained_cfg(path)` gives that dict back (or None); `clip_defaults(cfg)` turns it into the
keyword arguments of csnspec's ClipOptions; `resolve(flag, cfg_value, name)` picks an explicit flag
over the metadata, with a warning naming both values when they differ.
"""

from __future__ import annotations

import json
import math
import sys

from ..errors import CsnError

KEY = "csnspec.pretrained_cfg"
RANGES = ("0-1", "0-255")

# What each public implementation feeds its CSN checkpoints at test time (docs/weights.md cites
# the files). VMZ's Caffe2 pipeline is taken to match its PyTorch port, whose weights it made.
_VMZ = {
    "mean": [0.43216, 0.394666, 0.37645],
    "std": [0.22803, 0.22145, 0.216989],
    "value_range": "0-1",
    "frames": 32,
    "sampling_rate": 1,
    "crop": 224,
    "short_side_scale": None,
    "reference": "VMZ pt/vmz/func/test.py (NormalizeVideo mean/std; compute_clips(num_frames, 1,"
    " frame_rate=15)); 32 frames: the *_32frms model names in pt/vmz/models/utils.py",
}
# PyTorchVideo's Kinetics normalisation, shared by its CSN and X3D hub models
_PTV_NORM = {"mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225], "value_range": "0-1"}
PRESETS = {
    "pytorchvideo": {
        **_PTV_NORM,
        "frames": 32,
        "sampling_rate": 2,
        "crop": 256,
        "short_side_scale": 256,
        "reference": "PyTorchVideo pytorchvideo/models/hub/csn.py (CSN_32x2_R101.pyth: 32 frames,"
        " rate 2; other clip lengths take rate 64 / frames, as docs/source/model_zoo.md's 8x8, 4x16"
        " and 16x4 models) and its Kinetics transforms (mean 0.45, std 0.225, short side 256, crop"
        " 256)",
    },
    "pytorchvideo-x3d": {
        **_PTV_NORM,
        "frames": 16,
        "sampling_rate": 5,
        "crop": 256,
        "short_side_scale": 256,
        "reference": "PyTorchVideo's X3D on PyTorch Hub (pytorch.org/hub/"
        "facebookresearch_pytorchvideo_x3d): x3d_m's model_transform_params (16 frames, rate 5,"
        " short side 256, crop 256); x3d_xs 4x12 and x3d_s 13x6 use 182",
    },
    "vmz": _VMZ,
    "vmz-caffe2": _VMZ,
    "torchvision": {
        "mean": [0.43216, 0.394666, 0.37645],
        "std": [0.22803, 0.22145, 0.216989],
        "value_range": "0-1",
        "frames": 16,
        "sampling_rate": 1,
        "crop": 112,
        "short_side_scale": 128,
        "reference": "torchvision torchvision/models/video/resnet.py (R3D_18_Weights: "
        "VideoClassification(crop_size=(112, 112), resize_size=(128, 171)), clip_len=16 at "
        "frame_rate=15) and torchvision/transforms/_presets.py (mean/std)",
    },
    "mmaction2": {
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
        "value_range": "0-255",
        "frames": 32,
        "sampling_rate": 2,
        "crop": 256,
        "short_side_scale": 256,
        "reference": "MMAction2 configs/recognition/csn/ircsn_ig65m-pretrained-r152-bnfrozen_8xb12-"
        "32x2x1-58e_kinetics400-rgb.py (SampleFrames clip_len=32 frame_interval=2, "
        "Resize(-1, 256), ThreeCrop 256) with ImageNet mean/std from "
        "configs/_base_/models/ircsn_r152.py; VMZ-ported checkpoints use VMZ's x255",
    },
}


# Every Kinetics-400 checkpoint of PyTorchVideo's ResNet family samples a 64-frame window: C2D,
# I3D and Slow R50 8x8 (Slow also 4x16), R(2+1)D R50 16x4, CSN R101 32x2 ("frame length x sample
# rate" in PyTorchVideo's docs/source/model_zoo.md). The spec's clip length gives the rate.
PYTORCHVIDEO_WINDOW = 64


def clip_of(source: str, frames: int) -> dict:
    """What a source's record takes from the network's input clip of `frames` frames."""
    if source == "pytorchvideo" and frames > 0 and PYTORCHVIDEO_WINDOW % frames == 0:
        return {"frames": frames, "sampling_rate": PYTORCHVIDEO_WINDOW // frames}
    return {}


def pretrained_cfg(
    source: str, *, bn_eps: float, num_classes: int, class_names=None, **overrides
) -> dict:
    """The record for weights imported from `source`, checked."""
    if source not in PRESETS:
        raise CsnError(f"no preprocessing known for source '{source}'")
    cfg = {
        "source": source,
        **PRESETS[source],
        "bn_eps": bn_eps,
        "num_classes": num_classes,
        "class_names": class_names,
    }
    cfg.update(overrides)
    return check(cfg, "<pretrained_cfg>")


def header(cfg: dict) -> dict[str, str]:
    """The safetensors header entries that carry `cfg` (the one writer)."""
    return {KEY: json.dumps(check(cfg, "<pretrained_cfg>"), sort_keys=True)}


def read_pretrained_cfg(path) -> dict | None:
    """The preprocessing recorded in a .safetensors file, or None if it records none.

    Only the header is read. A file whose record is malformed is an error naming the file."""
    from pathlib import Path

    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise CsnError("no such weights file", filename=str(path))
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CsnError(f"not a readable safetensors file: {err}", filename=str(path)) from None
    text = meta.get(KEY)
    if text is None:
        return None
    try:
        cfg = json.loads(text)
    except ValueError as err:
        raise CsnError(f"unreadable {KEY} in the header: {err}", filename=str(path)) from None
    return check(cfg, str(path))


def check(cfg, filename: str) -> dict:
    """`cfg` if every field has the right type and a sane value; else a CsnError naming it."""

    def bad(name: str, what: str):
        raise CsnError(f"{KEY}: '{name}' must be {what}", filename=filename)

    if not isinstance(cfg, dict):
        bad("the record", "a JSON object")
    for name in ("mean", "std"):
        v = cfg.get(name)
        if not (
            isinstance(v, list)
            and len(v) == 3
            and all(_finite(x) for x in v)
            and (name == "mean" or all(x > 0 for x in v))
        ):
            bad(name, "three finite numbers" + (" above 0" if name == "std" else ""))
    if cfg.get("value_range") not in RANGES:
        bad("value_range", " or ".join(f'"{r}"' for r in RANGES))
    for name in ("frames", "sampling_rate", "crop", "num_classes"):
        if not _count(cfg.get(name)):
            bad(name, "a positive integer")
    if cfg.get("short_side_scale") is not None and not _count(cfg["short_side_scale"]):
        bad("short_side_scale", "a positive integer or null")
    if not (_finite(cfg.get("bn_eps")) and cfg["bn_eps"] > 0):
        bad("bn_eps", "a positive number")
    names = cfg.get("class_names")
    if names is not None and not (
        isinstance(names, list)
        and len(names) == cfg["num_classes"]
        and all(isinstance(n, str) for n in names)
    ):
        bad("class_names", f"null or a list of {cfg['num_classes']} strings")
    if not isinstance(cfg.get("source"), str):
        bad("source", "a string")
    return cfg


def clip_defaults(cfg: dict) -> dict:
    """The ClipOptions fields (csnspec.data.transforms) the record sets, mean/std in 0-1."""
    scale = 255.0 if cfg["value_range"] == "0-255" else 1.0
    out = {
        "frames": cfg["frames"],
        "rate": cfg["sampling_rate"],
        "crop": cfg["crop"],
        "mean": tuple(x / scale for x in cfg["mean"]),
        "std": tuple(x / scale for x in cfg["std"]),
    }
    if cfg.get("short_side_scale") is not None:
        out["test_scale"] = cfg["short_side_scale"]
    return out


def resolve(flag_value, cfg_value, name: str, *, stream=None):
    """The value to use: an explicit flag wins over the weights' metadata, with a warning on
    stderr naming both values when they differ; the metadata's when no flag was given."""
    if flag_value is None:
        return cfg_value
    if cfg_value is not None and not _same(flag_value, cfg_value):
        print(
            f"warning: {name} {_show(flag_value)} differs from {_show(cfg_value)} in the weights' "
            "metadata; using the flag's",
            file=stream or sys.stderr,
        )
    return flag_value


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if _finite(a) and _finite(b):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def _show(v) -> str:
    if isinstance(v, list | tuple):
        return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0
