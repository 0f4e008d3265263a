"""Generated Flax model under jax.jit vs the generated PyTorch model, same spec, same weights.

    python bench/bench_flax.py [SPEC] [--input 3x8x112x112] [--batch 2] [--repeats 3] [--threads 1]

Times, on the CPU in one process, three passes of both models: the eval forward, a train-mode
forward + backward (gradients of the summed logits wrt every parameter), and the training step
`csnspec train` takes (cross-entropy, backward, SGD with momentum 0.9 and weight decay 1e-4 on
every parameter: `torch.optim.SGD` against the Flax trainer's optax chain in one `nnx.jit`,
bound to the model and optimiser by `nnx.cached_partial` as the trainer binds it). Each figure
is the fastest of `--repeats` calls after a warm-up, the passes taking turns; the time is the
process's CPU time, one thread each by default, the process pinned to one core (bench_depthwise's
`cpu_setup`). Host memory is set up as `csnspec train --backend flax` sets it
(csnspec/train/host_memory.py: freed memory reused, not returned to the kernel);
`--host-memory default` keeps glibc's defaults, for the difference it makes. The table gives
Flax ÷ PyTorch time, the training step's throughput (clips/s) of both and Flax ÷ PyTorch
throughput, and the jit compile time (first call minus the fastest).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench_depthwise import cpu_setup, race  # bench/ is the script's folder, on sys.path

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 1e-4


def torch_passes(tm, xt, yt) -> dict:
    import torch
    import torch.nn.functional as F

    opt = torch.optim.SGD(tm.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def forward():
        tm.eval()
        with torch.no_grad():
            tm(xt)

    def grad():
        tm.train()
        tm.zero_grad(set_to_none=True)
        tm(xt).sum().backward()

    def step():
        tm.train()
        loss = F.cross_entropy(tm(xt), yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return {"forward (eval)": forward, "forward+backward (train)": grad, "training step": step}


def flax_passes(fm, xf, yf) -> dict:
    import jax
    import optax
    from flax import nnx

    evaluating = nnx.clone(fm)
    evaluating.eval()
    fm.train()
    chain = optax.chain(
        optax.add_decayed_weights(WEIGHT_DECAY), optax.trace(decay=MOMENTUM), optax.scale(-LR)
    )  # the Flax trainer's update (csnspec/train/flax_loop.py), at a fixed learning rate
    optimizer = nnx.Optimizer(fm, chain, wrt=nnx.Param)
    forward = nnx.jit(lambda m, x: m(x))
    grad = nnx.jit(nnx.grad(lambda m, x: m(x).sum()))

    def loss_fn(model, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    @nnx.jit
    def step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss

    step = nnx.cached_partial(step, fm, optimizer)  # as the trainer binds its step

    return {
        "forward (eval)": lambda: jax.block_until_ready(forward(evaluating, xf)),
        "forward+backward (train)": lambda: jax.block_until_ready(grad(fm, xf)),
        "training step": lambda: jax.block_until_ready(step(xf, yf)),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(ROOT / "specs" / "ircsn50.csn"))
    p.add_argument("--input", default="3x8x112x112", metavar="CxTxHxW")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", "--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--host-memory", choices=("reuse", "default"), default="reuse")
    args = p.parse_args(argv)
    setup = cpu_setup(args.threads, host_memory=args.host_memory)  # before jax starts threads

    import jax
    import numpy as np
    import torch

    import csnspec
    from csnspec.backends import load_module
    from csnspec.commands.verify import parse_dims
    from csnspec.weights.convert import flax_model, torch_to_flax

    torch.set_num_threads(args.threads)
    net = csnspec.load(args.spec).with_input(parse_dims(args.input))
    low = csnspec.lower(net)
    tmod = load_module(low, "torch")
    fmod = load_module(low, "flax")
    torch.manual_seed(0)
    tm = tmod.build()
    sd = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    fm = flax_model(fmod.build, torch_to_flax(sd, low))

    x = np.random.default_rng(0).standard_normal((args.batch, *low.input_shape)).astype(np.float32)
    y = np.arange(args.batch) % low.output_shape[0]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    xf = jax.numpy.asarray(fmod.from_torch_layout(x))
    yf = jax.numpy.asarray(y.astype(np.int32))

    def clock(fn):
        start = time.process_time()
        fn()
        return time.process_time() - start

    variants = {("torch", k): fn for k, fn in torch_passes(tm, xt, yt).items()}
    flax = flax_passes(fm, xf, yf)
    first = {k: clock(fn) for k, fn in flax.items()}  # compiles
    variants.update({("flax", k): fn for k, fn in flax.items()})
    best = race(variants, args.repeats, clock)

    dims = "x".join(map(str, low.input_shape))
    print(
        f"{low.name}, batch {args.batch} x {dims}, float32 on the CPU, {setup} "
        f"(torch {torch.__version__}, jax {jax.__version__}), fastest of {args.repeats}, CPU time"
    )
    head = ("pass", "torch ms", "flax ms", "flax / torch time", "torch clips/s", "flax clips/s",
            "flax / torch throughput", "jit compile s")  # fmt: skip
    rows = [head]
    for name in flax:
        t, f = best[("torch", name)], best[("flax", name)]
        clips = name == "training step"
        rows.append(
            (
                name,
                f"{t * 1e3:.1f}",
                f"{f * 1e3:.1f}",
                f"{f / t:.2f}",
                f"{args.batch / t:.2f}" if clips else "",
                f"{args.batch / f:.2f}" if clips else "",
                f"{t / f:.2f}" if clips else "",
                f"{max(0.0, first[name] - f):.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        print("  ".join(cells).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
