"""Generated Flax model under jax.jit vs the generated PyTorch model, same spec, same weights.

    python bench/bench_flax.py [SPEC] [--input 3x8x112x112] [--batch 2] [--repeat 3]

Times the eval forward and a train-mode forward + backward (gradients of the summed logits
wrt every parameter) of both models on the CPU, in one process, and prints a table with the
Flax/PyTorch ratio and the jit compile time (first call minus a steady call).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, repeat: int) -> tuple[float, float]:
    """(first call, median of `repeat` further calls), in seconds; fn blocks until done."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return first, statistics.median(runs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(ROOT / "specs" / "ircsn50.csn"))
    p.add_argument("--input", default="3x8x112x112", metavar="CxTxHxW")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    import jax
    import numpy as np
    import torch
    from flax import nnx

    import csnspec
    from csnspec.backends import load_module
    from csnspec.commands.verify import parse_dims
    from csnspec.weights.convert import flax_model, torch_to_flax

    net = csnspec.load(args.spec).with_input(parse_dims(args.input))
    low = csnspec.lower(net)
    tmod = load_module(low, "torch")
    fmod = load_module(low, "flax")
    torch.manual_seed(0)
    tm = tmod.build()
    sd = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    fm = flax_model(fmod.build, torch_to_flax(sd, low))

    x = np.random.default_rng(0).standard_normal((args.batch, *low.input_shape)).astype(np.float32)
    xt, xf = torch.from_numpy(x), jax.numpy.asarray(fmod.from_torch_layout(x))

    def torch_forward():
        with torch.no_grad():
            tm(xt)

    def torch_step():
        tm.zero_grad(set_to_none=True)
        tm(xt).sum().backward()

    forward = nnx.jit(lambda m, x: m(x))
    step = nnx.jit(nnx.grad(lambda m, x: m(x).sum()))

    tm.eval()
    fm.eval()
    t_fwd = timed(torch_forward, args.repeat)
    f_fwd = timed(lambda: jax.block_until_ready(forward(fm, xf)), args.repeat)
    tm.train()
    fm.train()
    t_step = timed(torch_step, args.repeat)
    f_step = timed(lambda: jax.block_until_ready(step(fm, xf)), args.repeat)

    dims = "x".join(map(str, low.input_shape))
    print(
        f"{low.name}, batch {args.batch} x {dims}, float32 on the CPU ({os.cpu_count()} cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, jax {jax.__version__})"
    )
    head = ("pass", "torch (ms)", "flax jit (ms)", "flax / torch", "jit compile (s)")
    rows = [head]
    for name, t, f in (
        ("forward (eval)", t_fwd, f_fwd),
        ("forward+backward (train)", t_step, f_step),
    ):
        rows.append(
            (
                name,
                f"{t[1] * 1e3:.1f}",
                f"{f[1] * 1e3:.1f}",
                f"{f[1] / t[1]:.2f}",
                f"{max(0.0, f[0] - f[1]):.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
            )
        )
    print(f"median of {args.repeat} runs after a first (compiling) call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
