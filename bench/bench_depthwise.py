"""Depthwise conv3d implementations against the native call and a copy of the same tensor.

    python bench/bench_depthwise.py [--backend torch jax] [--device cpu cuda] [--dtype float32 bfloat16]
                                    [--layout contiguous channels_last] [--repeats 5] [--threads 1] [--quick]

Per op shape: forward, and forward+backward (torch) or the gradient of both operands (jax), of every
implementation in `csnspec.kernels` (as a generated module carries them: the inlined text), the
native call, and a device copy of the input timed in the same run. Each figure is the fastest of
`--repeats` calls after a warm-up; the variants of one shape run in turns (round robin) so that load
from other processes hits them alike. On CPU the times are the process's CPU time (one thread by
default, the process pinned to one core: a shared machine's wall clock mostly measures the other
processes); on CUDA, wall clock after a synchronize. Host memory is set up as `csnspec train`
sets it for Flax (`cpu_setup`).

Effective bandwidth counts the least traffic the op needs: forward reads the input and writes the
output; forward+backward also reads the output gradient and the input again and writes the input
gradient. "% copy" divides it by the copy's bandwidth (read + write of the input) in the same run.
CUDA runs whatever of torch (native, triton) and jax (native, shift) finds a GPU.

torch rows come in two memory layouts (`--layout`): contiguous (N, C, T, H, W) tensors, and
channels-last ones (`torch.channels_last_3d`), the layout generated networks run in on the CPU. Each
row's "vs native" divides by the native call on the same tensors; "vs native contiguous" (CPU
channels-last rows) by the native call on contiguous tensors, what a model written the plain way runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# (N, C, T, H, W), kernel, stride, padding: the depthwise convs of ir-CSN-50 at 8x112x112 (batch 2)
SHAPES = [
    ((2, 64, 8, 56, 56), (3, 3, 3), (1, 1, 1), (1, 1, 1)),
    ((2, 128, 4, 28, 28), (3, 3, 3), (1, 1, 1), (1, 1, 1)),
    ((2, 256, 2, 14, 14), (3, 3, 3), (1, 1, 1), (1, 1, 1)),
    ((2, 128, 8, 56, 56), (3, 3, 3), (2, 2, 2), (1, 1, 1)),
    ((2, 64, 8, 56, 56), (1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ((2, 64, 8, 56, 56), (3, 1, 1), (1, 1, 1), (1, 0, 0)),
]
QUICK = [((1, 16, 4, 16, 16), (3, 3, 3), (1, 1, 1), (1, 1, 1))]


def race(variants: dict, repeats: int, clock) -> dict[str, float]:
    """The fastest of `repeats` timed calls of each variant, after one warm-up, in rotating turns."""
    for fn in variants.values():
        fn()
    best = dict.fromkeys(variants, float("inf"))
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            best[name] = min(best[name], clock(variants[name]))
    return best


def cpu_setup(threads: int, pin: bool = True, host_memory: str = "reuse") -> str:
    """Set this process up for CPU timing before torch or jax start threads; say how, for the
    table's header.

    XLA reads its thread flags when it starts (XLA_FLAGS, unless set). With one thread and `pin`
    (CPU-only runs) the process is pinned to one core: XLA:CPU runs some work on a pool of its
    own whatever its flags say. Host memory is set up as `csnspec train --backend flax` sets it (freed memory
    reused: csnspec/train/host_memory.py) unless `host_memory` is "default".
    """
    from csnspec.train.host_memory import reuse_freed_memory

    os.environ.setdefault(
        "XLA_FLAGS",
        f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'} "
        f"intra_op_parallelism_threads={threads}",
    )
    reused = host_memory == "reuse" and reuse_freed_memory()
    pinned = pin and threads == 1 and hasattr(os, "sched_setaffinity")
    if pinned:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    return (
        f"{threads} thread(s){', one core' if pinned else ''}, "
        f"host memory {'reused' if reused else 'glibc defaults'}"
    )


def cpu_clock(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def torch_rows(device: str, dtype_name: str, shapes, repeats: int, layouts=("contiguous",)):
    import torch

    from csnspec.kernels import inline_module

    kernels = inline_module("torch_depthwise", "triton_depthwise", module_name="bench_kernels")
    if device == "cuda":

        def clock(fn):
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            return time.perf_counter() - start

        impls = ["native"] + (["triton"] if kernels._triton_entry() is not None else [])
    else:
        clock, impls = cpu_clock, ["native", "cpu"]
    for shape, kernel, stride, padding in shapes:
        times, traffic, copy_bytes = torch_case(
            kernels,
            impls,
            clock,
            device,
            getattr(torch, dtype_name),
            shape,
            kernel,
            stride,
            padding,
            repeats,
            layouts,
        )
        yield "torch", device, dtype_name, shape, kernel, stride, times, traffic, copy_bytes


def torch_case(
    kernels, impls, clock, device, dtype, shape, kernel, stride, padding, repeats, layouts
):
    """Times of every implementation in every layout (variants named "IMPL PASS", IMPL ending in
    "/cl" for channels-last tensors), the least traffic per pass, and the copy's bytes."""
    import torch

    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape, generator=gen, device=device, dtype=dtype)
    w = torch.randn((shape[1], 1, *kernel), generator=gen, device=device, dtype=dtype)
    w.requires_grad_()
    y = torch.nn.functional.conv3d(x, w, None, stride, padding, 1, shape[1])
    grad = torch.randn(y.shape, generator=gen, device=device, dtype=dtype)

    def fwd(x, impl):
        with torch.no_grad():
            kernels.depthwise_conv3d(x, w, stride, padding, impl)

    def fwd_bwd(x, grad, impl):
        out = kernels.depthwise_conv3d(x, w, stride, padding, impl)
        torch.autograd.grad(out, (x, w), grad)

    formats = {
        "contiguous": ("", torch.contiguous_format),
        "channels_last": ("/cl", torch.channels_last_3d),
    }
    variants = {"copy": lambda: x.clone()}
    for layout in layouts:
        suffix, fmt = formats[layout]
        xl = x.contiguous(memory_format=fmt).requires_grad_()
        gl = grad.contiguous(memory_format=fmt)
        for impl in impls:
            variants[f"{impl}{suffix} fwd"] = lambda xl=xl, impl=impl: fwd(xl, impl)
            variants[f"{impl}{suffix} fwd+bwd"] = lambda xl=xl, gl=gl, impl=impl: fwd_bwd(
                xl, gl, impl
            )
    size = x.element_size()
    traffic = {
        "fwd": (x.numel() + y.numel()) * size,
        "fwd+bwd": (3 * x.numel() + 2 * y.numel()) * size,
    }
    return race(variants, repeats, clock), traffic, 2 * x.numel() * size


def jax_rows(device: str, dtype_name: str, shapes, repeats: int):
    import jax

    from csnspec.kernels import inline_module

    kernels = inline_module("jax_depthwise", module_name="bench_jax_kernels")
    target = jax.devices("gpu" if device == "cuda" else "cpu")[0]
    now = time.perf_counter if device == "cuda" else time.process_time

    def clock(fn):
        start = now()
        jax.block_until_ready(fn())
        return now() - start

    for shape, kernel, stride, padding in shapes:
        times, traffic, copy_bytes = jax_case(
            kernels, clock, target, dtype_name, shape, kernel, stride, padding, repeats
        )
        yield "jax", device, dtype_name, shape, kernel, stride, times, traffic, copy_bytes


def jax_case(kernels, clock, target, dtype_name, shape, kernel, stride, padding, repeats):
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    dtype = getattr(jnp, dtype_name)
    n, c, t, h, w = shape
    x = jax.device_put(jnp.asarray(rng.standard_normal((n, t, h, w, c)), dtype), target)
    k = jax.device_put(jnp.asarray(rng.standard_normal((*kernel, 1, c)), dtype), target)
    pads = tuple((p, p) for p in padding)

    def conv(x, k, impl):
        return kernels.depthwise_conv3d(x, k, stride, pads, impl)

    def loss(x, k, impl):
        return jnp.sum(conv(x, k, impl).astype(jnp.float32) ** 2)

    copy = jax.jit(lambda x: x + 0)  # one fused elementwise pass: reads and writes every element
    variants = {"copy": lambda: copy(x)}
    for impl in ("native", "shift"):
        fwd = jax.jit(conv, static_argnums=2)
        grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
        variants[f"{impl} fwd"] = lambda fwd=fwd, impl=impl: fwd(x, k, impl)
        variants[f"{impl} fwd+bwd"] = lambda grad=grad, impl=impl: grad(x, k, impl)
    out = int(np.prod(jax.eval_shape(lambda x, k: conv(x, k, "native"), x, k).shape))
    size = jnp.dtype(dtype).itemsize
    traffic = {"fwd": (x.size + out) * size, "fwd+bwd": (3 * x.size + 2 * out) * size}
    return race(variants, repeats, clock), traffic, 2 * x.size * size


def table(rows) -> str:
    header = (
        "backend",
        "device",
        "dtype",
        "shape",
        "kernel",
        "stride",
        "impl",
        "pass",
        "ms",
        "vs native",
        "vs native contiguous",
        "GB/s",
        "% copy",
    )
    lines = [header]
    for backend, device, dtype, shape, kernel, stride, times, traffic, copy_bytes in rows:
        copy_bw = copy_bytes / times["copy"]
        lines.append((backend, device, dtype, "x".join(map(str, shape)), "x".join(map(str, kernel)),
                      "x".join(map(str, stride)), "copy", "", f"{times['copy'] * 1e3:.2f}", "", "", f"{copy_bw / 1e9:.1f}", "100"))  # fmt: skip
        for name, seconds in times.items():
            if name == "copy":
                continue
            impl, what = name.split(" ")
            bandwidth = traffic[what] / seconds
            native = "native/cl" if impl.endswith("/cl") else "native"
            plain = times.get(f"native {what}")  # the native call on contiguous tensors
            lines.append(("", "", "", "", "", "", impl, what, f"{seconds * 1e3:.2f}",
                          f"{times[f'{native} {what}'] / seconds:.2f}x",
                          f"{plain / seconds:.2f}x" if plain and native != "native" else "",
                          f"{bandwidth / 1e9:.1f}", f"{100 * bandwidth / copy_bw:.0f}"))  # fmt: skip
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(v).ljust(wd) for v, wd in zip(line, widths)).rstrip() for line in lines
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", nargs="+", default=["torch", "jax"], choices=["torch", "jax"])
    parser.add_argument(
        "--device", nargs="+", default=None, help="cpu, cuda (default: cpu, and cuda if present)"
    )
    parser.add_argument(
        "--dtype", nargs="+", default=None, help="default: float32 on cpu; float32 bfloat16 on cuda"
    )
    parser.add_argument(
        "--layout",
        nargs="+",
        default=["contiguous", "channels_last"],
        choices=["contiguous", "channels_last"],
        help="torch tensors' memory layouts (default: both)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch and XLA)")
    parser.add_argument("--quick", action="store_true", help="one tiny shape (a smoke test)")
    args = parser.parse_args()
    import torch

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    setup = cpu_setup(args.threads, pin=devices == ["cpu"])
    torch.set_num_threads(args.threads)
    shapes = QUICK if args.quick else SHAPES
    rows = []
    for device in devices:
        dtypes = args.dtype or (["float32", "bfloat16"] if device == "cuda" else ["float32"])
        for dtype in dtypes:
            for backend in args.backend:
                if backend == "torch":
                    source = torch_rows(device, dtype, shapes, args.repeats, args.layout)
                else:
                    if device == "cuda":
                        import jax

                        if not any(d.platform == "gpu" for d in jax.devices()):
                            continue
                    source = jax_rows(device, dtype, shapes, args.repeats)
                for row in source:
                    rows.append(row)
                    print(
                        f"# {row[0]} {row[1]} {row[2]} {'x'.join(map(str, row[3]))} done",
                        file=sys.stderr,
                        flush=True,
                    )
    print(f"CPU: {setup}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
