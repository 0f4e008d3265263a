"""Shared by the data/train/eval tests: one synthetic motion dataset per session, the tiny spec,
the small clip options matching it, and a short CLI training run."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

SPEC = Path(__file__).parent / "data" / "tiny-ircsn.csn"  # input 3x8x32x32, 6 classes

# Clip options the tiny spec takes: 8 frames every other frame, 32 px crops of 36-44 px frames.
CLIP = {"frames": 8, "rate": 2, "crop": 32, "scale_min": 36, "scale_max": 44}
EVAL_CLIP = {"frames": 8, "rate": 2, "crop": 32, "test_scale": 40}  # mid train scale
CLIP_ARGS = ["--frames", "8", "--rate", "2", "--crop", "32"]


def synth_data(tmp_path_factory, classes: int = 6) -> Path:
    """`classes` motion classes x 40 videos (30 train, 10 test each), 24 frames of 40 px; made
    once per session."""
    from csnspec.data.synth import synthesize

    root = tmp_path_factory.getbasetemp() / f"synth-motion-{classes}"
    if not (root / "test.csv").exists():
        synthesize(root, classes=classes, videos=40, frames=24, size=40, seed=0)
    return root


def short_run(data: Path, out: Path, *extra: str, steps: int = 4) -> list[str]:
    """`csnspec train` arguments for a few steps of the tiny spec on `data`'s training list."""
    return ["train", str(SPEC), "--train", str(data / "train.csv"), "--out", str(out),
            "--steps", str(steps), "--batch", "4", "--workers", "0", "--no-progress",
            "--seed", "1", *extra]  # fmt: skip


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextlib.contextmanager
def jax_compile_cache(folder: Path):
    """JAX's persistent compilation cache in `folder` (every compilation kept): runs that compile
    the same functions read the first's from disk; the previous settings come back after."""
    import jax
    from jax._src import compilation_cache

    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    old = [getattr(jax.config, k) for k in keys]
    compilation_cache.reset_cache()
    jax.config.update(keys[0], str(folder))
    jax.config.update(keys[1], 0)
    try:
        yield
    finally:
        compilation_cache.reset_cache()
        for k, v in zip(keys, old, strict=True):
            jax.config.update(k, v)
