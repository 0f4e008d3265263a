"""Generated ir-CSN-50 and ip-CSN-50 against ResNet3D-50: time ratio beside FLOPs ratio, both backends.

    python bench/bench_models.py [--input 3x8x112x112] [--batch 2] [--repeats 3] [--threads 1]
                                 [--backend torch flax] [--depthwise native auto] [--device cpu]

Each model is rendered from its spec in `specs/` and exec'd in memory (as `csnspec compile` would
write it), built with `build(depthwise=IMPL)` for every `--depthwise` choice, and timed on one clip
batch: forward (eval, no gradients) and forward+backward (train mode, gradients of the summed logits
wrt every parameter). Each figure is the fastest of `--repeats` calls after a warm-up; the models of
one backend and pass run in turns so that load from other processes hits them alike. On CPU the
times are the process's CPU time (one thread and one core by default, host memory as `csnspec
train` sets it: bench_depthwise's `cpu_setup`); on CUDA, wall clock after a synchronize.

The table gives each network's time ÷ ResNet3D-50's (same backend, pass and depthwise choice) beside
its FLOPs ÷ ResNet3D-50's (csnspec's own count), and then the training-step throughput (clips/s) of
Flax ÷ PyTorch for each network with the default ("auto") depthwise implementation.
"""

from __future__ import annotations

import argparse
import inspect
import linecache
import sys
import time
import types
from itertools import count
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench_depthwise import cpu_clock, cpu_setup, race  # bench/ is the script's folder, on sys.path

SPECS = {"ResNet3D-50": "resnet3d50.csn", "ir-CSN-50": "ircsn50.csn", "ip-CSN-50": "ipcsn50.csn"}
BASELINE = "ResNet3D-50"
_names = count()


def generated_module(low, backend: str):
    """The generated module of `low` for `backend`, exec'd in memory."""
    from csnspec.backends import render

    source = render(low, backend)
    name = f"_bench_{backend}_{next(_names)}"
    filename = f"<generated {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own output
    return module


def build(module, impl: str, **options):
    """`module.build(depthwise=impl)`, and the label of its depthwise implementation.

    A module whose build has no depthwise choice (one generated before the kernels were emitted) gets
    its depthwise convolutions swapped for the kernels' modules here, same weights, labelled "swapped".
    A network without depthwise convs (ResNet3D-50) has nothing to choose: it is labelled `impl`.
    """
    if "depthwise" in inspect.signature(module.build).parameters:
        return module.build(depthwise=impl, **options), impl
    model = module.build(**options)
    if impl == "native":
        return model, "native"
    swap = swap_torch_depthwise if hasattr(model, "state_dict") else swap_flax_depthwise
    swapped = swap(model, impl)
    return model, f"{impl} (swapped)" if swapped else impl


def swap_torch_depthwise(model, impl: str) -> int:
    from torch import nn

    from csnspec.kernels import inline_module

    kernels = inline_module(
        "torch_depthwise", "triton_depthwise", module_name="bench_torch_kernels"
    )
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (
                isinstance(child, nn.Conv3d)
                and child.groups == child.in_channels == child.out_channels > 1
            ):
                fast = kernels.DepthwiseConv3d(
                    child.in_channels, child.kernel_size, child.stride, child.padding, impl
                )
                fast.load_state_dict(child.state_dict())
                setattr(parent, name, fast)
                swapped += 1
    return swapped


def swap_flax_depthwise(model, impl: str) -> int:
    from flax import nnx

    from csnspec.kernels import inline_module

    kernels = inline_module("jax_depthwise", module_name="bench_jax_kernels")
    swapped = 0
    for path, child in list(nnx.iter_graph(model)):
        groups = getattr(child, "feature_group_count", 1)
        if (
            isinstance(child, nnx.Conv)
            and groups > 1
            and groups == child.in_features == child.out_features
        ):
            fast = kernels.DepthwiseConv(
                groups, child.kernel_size, child.strides, child.padding, impl=impl, rngs=nnx.Rngs(0)
            )
            fast.kernel[...] = child.kernel[...]
            parent = model
            for part in path[:-1]:
                parent = parent[part] if isinstance(part, int) else getattr(parent, part)
            if isinstance(path[-1], int):
                parent[path[-1]] = fast
            else:
                setattr(parent, path[-1], fast)
            swapped += 1
    return swapped


def torch_variants(modules: dict, impls, batch, shape, device: str, channels_last: bool):
    import torch

    x = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    variants = {}
    for net, module in modules.items():
        for impl in impls:
            torch.manual_seed(0)
            model, label = build(module, impl, channels_last=channels_last)
            model = model.to(device)

            def forward(model=model):
                model.eval()
                with torch.no_grad():
                    model(x)

            def step(model=model):
                model.train()
                model.zero_grad(set_to_none=True)
                model(x).sum().backward()

            variants[(net, label, "forward")] = forward
            variants[(net, label, "forward+backward")] = step
    if device == "cuda":

        def clock(fn):
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            return time.perf_counter() - start

    else:
        clock = cpu_clock
    return variants, clock


def flax_variants(modules: dict, impls, batch, shape, device: str, channels_last: bool):
    import jax
    import numpy as np
    from flax import nnx

    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    variants = {}
    forward = nnx.jit(lambda m, x: m(x))
    step = nnx.jit(nnx.grad(lambda m, x: m(x).sum()))
    for net, module in modules.items():
        xf = jax.numpy.asarray(module.from_torch_layout(x))
        for impl in impls:
            model, label = build(module, impl)
            model.eval()
            evaluating = nnx.clone(model)
            model.train()
            variants[(net, label, "forward")] = lambda m=evaluating, xf=xf: forward(m, xf)
            variants[(net, label, "forward+backward")] = lambda m=model, xf=xf: step(m, xf)
    now = time.perf_counter if device == "cuda" else time.process_time

    def clock(fn):
        start = now()
        jax.block_until_ready(fn())
        return now() - start

    return variants, clock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default="3x8x112x112", metavar="CxTxHxW")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--backend", nargs="+", default=["torch", "flax"], choices=["torch", "flax"]
    )
    parser.add_argument("--depthwise", nargs="+", default=["native", "auto"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="torch: build(channels_last=True) and channels_last_3d input",
    )
    args = parser.parse_args()
    setup = cpu_setup(args.threads, pin=args.device == "cpu")  # before jax starts threads
    import torch

    import csnspec
    from csnspec.commands.verify import parse_dims

    torch.set_num_threads(args.threads)
    shape = parse_dims(args.input)
    lows = {
        net: csnspec.lower(csnspec.load(ROOT / "specs" / f).with_input(shape))
        for net, f in SPECS.items()
    }
    flops = {net: csnspec.analyse(low).total.flops for net, low in lows.items()}
    times = {}
    for backend in args.backend:
        modules = {net: generated_module(low, backend) for net, low in lows.items()}
        make = torch_variants if backend == "torch" else flax_variants
        variants, clock = make(
            modules, args.depthwise, args.batch, shape, args.device, args.channels_last
        )
        for key, seconds in race(variants, args.repeats, clock).items():
            times[(backend, *key)] = seconds
        print(f"# {backend} done", file=sys.stderr, flush=True)

    rows = [
        (
            "backend",
            "network",
            "depthwise",
            "pass",
            "ms",
            f"time / {BASELINE}",
            f"FLOPs / {BASELINE}",
        )
    ]
    for (backend, net, impl, what), seconds in times.items():
        base = times[(backend, BASELINE, impl, what)]
        rows.append((backend, net, impl, what, f"{seconds * 1e3:.1f}", f"{seconds / base:.2f}",
                     f"{flops[net] / flops[BASELINE]:.2f}"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    layout = ", torch channels_last_3d" if args.channels_last else ""
    where = setup if args.device == "cpu" else "cuda"
    print(f"batch {args.batch} x {args.input}, {where}{layout}")
    print("\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows))
    if {"torch", "flax"} <= set(args.backend):
        print("\ntraining step throughput (clips/s), depthwise 'auto' where the build offers it")
        for net in SPECS:
            keys = [
                k for k in times if k[1] == net and k[3] == "forward+backward" and k[2] != "native"
            ]
            torch_key = next((k for k in keys if k[0] == "torch"), None)
            flax_key = next((k for k in keys if k[0] == "flax"), None)
            if torch_key and flax_key:
                t, f = args.batch / times[torch_key], args.batch / times[flax_key]
                print(f"  {net}: torch {t:.2f}, flax {f:.2f}, flax / torch {f / t:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
