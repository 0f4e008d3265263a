"""Shared by the data/train/eval tests: one synthetic motion dataset per session, the tiny spec,
and the small clip options matching it."""

from __future__ import annotations

from pathlib import Path

SPEC = Path(__file__).parent / "data" / "tiny-ircsn.csn"  # input 3x8x32x32, 6 classes

# Clip options the tiny spec takes: 8 frames every other frame, 32 px crops of 36-44 px frames.
CLIP = {"frames": 8, "rate": 2, "crop": 32, "scale_min": 36, "scale_max": 44}
EVAL_CLIP = {"frames": 8, "rate": 2, "crop": 32, "test_scale": 40}  # mid train scale
CLIP_ARGS = ["--frames", "8", "--rate", "2", "--crop", "32"]


def synth_data(tmp_path_factory) -> Path:
    """6 motion classes x 40 videos (30 train, 10 test each), 24 frames of 40 px; made once."""
    from csnspec.data.synth import synthesize

    root = tmp_path_factory.getbasetemp() / "synth-motion"
    if not (root / "test.csv").exists():
        synthesize(root, classes=6, videos=40, frames=24, size=40, seed=0)
    return root
