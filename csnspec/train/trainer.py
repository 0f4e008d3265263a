"""`train(cfg)`: prepare the run folder, pick the backend's stepper, run the shared `fit`."""

from __future__ import annotations

import sys

from ..errors import CsnError
from . import checkpoint
from .config import TrainConfig
from .host_memory import reuse_freed_memory
from .run import prepare, read_json


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train (or continue) the run `cfg.out`; return the summary. A finished run is left as it
    is and its summary returned."""
    if cfg.backend == "flax":
        reuse_freed_memory()  # before jax starts its threads
    if cfg.backend == "torch":
        from .torch_loop import check_device

        check_device(cfg)
    run = prepare(cfg, resume)
    if resume:
        meta = checkpoint.read_meta(run.checkpoint)
        done = meta["step"] if meta else 0
        summary_path = run.dir / "summary.json"
        if done == run.total_steps and summary_path.is_file():
            print(
                f"csnspec: {run.dir} is finished ({done} steps); pass --steps N > {done} "
                "to train it further",
                file=sys.stderr,
            )
            return read_json(summary_path, "summary")
    if run.cfg.backend == "torch":
        from .torch_loop import TorchStepper as Stepper
    elif run.cfg.backend == "flax":
        from .flax_loop import FlaxStepper as Stepper
    else:
        raise CsnError(f"unknown backend '{run.cfg.backend}' (torch or flax)")
    from .fit import fit

    return fit(run, Stepper(run), resume=resume)
