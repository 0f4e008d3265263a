"""Forward and forward+backward time of the generated ir-CSN-50/101 against PyTorchVideo's CSN.

    python bench/bench_torch_forward.py [--batch 2] [--frames 8] [--size 112] [--repeats 5]
                                        [--threads 1] [--depths 50 101] [--compile]
                                        [--channels-last-backward]

Both models take the same input in the same process; variants are timed in turns (round
robin) so that load from other processes hits them alike, and each figure is the fastest of
`--repeats` timed calls after one warm-up call. Each call is timed twice: wall clock, and the
process's CPU time. On a shared machine the wall clock mostly measures the other processes
(and torch's worker threads spin waiting for each other when cores are oversubscribed), so the
ratios use CPU time and the default is one thread; `--threads N` for a machine of one's own. The generated modules are the ones in
generated/torch/ (what `csnspec compile` writes), loaded from their files.

`--compile` adds torch.compile (inductor) of the generated ir-CSN-50, forward in eval mode:
the first call's compile time with an empty inductor cache, then the time per call. It takes
minutes on a small CPU, so it is off by default; so is channels_last's forward+backward, which
is slow on CPU (its depthwise 3D conv backward has no fast channels_last kernel there).

PyTorchVideo is `create_csn(model_depth=D, stem_pool=nn.MaxPool3d, head_pool_kernel_size=
(1, s/32, s/32))`: the same network (BN eps aside, which does not change the time) whose head
window covers the whole final map, i.e. a global average like the generated head.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
GENERATED = {50: ROOT / "generated/torch/ir_csn_50.py", 101: ROOT / "generated/torch/ir_csn_101.py"}


def load_generated(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # torch.compile looks modules up by name
    spec.loader.exec_module(module)
    return module


def pytorchvideo_csn(depth: int, size: int) -> nn.Module:
    # pytorchvideo.models imports torchvision.ops.RoIAlign (for heads we do not use); torchvision
    # is not installed here, so a stand-in module satisfies the import.
    if "torchvision" not in sys.modules:
        tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.RoIAlign = type("RoIAlign", (nn.Module,), {})
        tv.ops = ops
        sys.modules.update({"torchvision": tv, "torchvision.ops": ops})
    from pytorchvideo.models.csn import create_csn

    final = size // 32
    return create_csn(
        model_depth=depth,
        stem_pool=nn.MaxPool3d,
        head_pool_kernel_size=(1, final, final),
    )


def forward(model, x):
    def run():
        with torch.no_grad():
            model(x)

    return run


def forward_backward(model, x):
    y = torch.zeros(x.shape[0], dtype=torch.long)

    def run():
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()

    return run


def timed(fn) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def race(variants: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """The fastest (wall, CPU) seconds per call of each variant, timed in turns after a warm-up.

    The fastest call is the one the rest of the machine disturbed least; the order of the
    variants rotates every round so that none always runs after the same one.
    """
    for fn in variants.values():
        fn()
    names = list(variants)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(variants[name]))
    return {name: (min(w for w, _ in t), min(c for _, c in t)) for name, t in times.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--depths", type=int, nargs="+", default=[50, 101], choices=[50, 101])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (minutes)")
    p.add_argument("--channels-last-backward", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.batch, 3, args.frames, args.size, args.size)
    x = torch.randn(shape)
    x_cl = x.to(memory_format=torch.channels_last_3d)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, input {list(shape)}")
    print(f"fastest of {args.repeats} calls after a warm-up, seconds per call; ratios to PTV\n")
    rows = []
    for depth in args.depths:
        gen = load_generated(GENERATED[depth])
        models = {
            "generated": gen.build(),
            "generated channels_last": gen.build(channels_last=True),
            "pytorchvideo": pytorchvideo_csn(depth, args.size),
        }
        inputs = {"generated channels_last": x_cl}
        for mode, make in (("forward", forward), ("forward+backward", forward_backward)):
            chosen = {
                n: m
                for n, m in models.items()
                if mode == "forward" or "channels_last" not in n or args.channels_last_backward
            }
            for m in chosen.values():
                m.train(mode != "forward")
            got = race({n: make(m, inputs.get(n, x)) for n, m in chosen.items()}, args.repeats)
            ptv = got["pytorchvideo"]
            for name, (wall, cpu) in got.items():
                rows.append((f"ir-CSN-{depth}", mode, name, wall, cpu, cpu / ptv[1], wall / ptv[0]))
    if args.compile:
        rows += compiled(args, x)
    width = max(len(r[2]) for r in rows)
    head = f"{'model':<11} {'pass':<18} {'variant':<{width}}"
    print(f"{head} {'wall s':>8} {'CPU s':>8} {'CPU/PTV':>8} {'wall/PTV':>8}")
    for model, mode, name, wall, cpu, cpu_ratio, wall_ratio in rows:
        ratios = "".join(
            f" {r:8.2f}" if r is not None else " " * 9 for r in (cpu_ratio, wall_ratio)
        )
        print(f"{model:<11} {mode:<18} {name:<{width}} {wall:8.3f} {cpu:8.3f}{ratios}")
    return 0


def compiled(args, x) -> list[tuple]:
    """torch.compile of the generated ir-CSN-50 (forward, eval): compile time, then per call."""
    depth = args.depths[0]
    gen = load_generated(GENERATED[depth])
    eager = gen.build().eval()
    ptv = pytorchvideo_csn(depth, args.size).eval()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")  # a cold cache
    try:
        model = gen.build(compile=True).eval()
        with torch.no_grad():
            compile_s = timed(lambda: model(x))  # the first call compiles
    except Exception as err:  # noqa: BLE001 - inductor needs a C++ toolchain; report, go on
        print(f"torch.compile failed on this machine: {type(err).__name__}: {err}".splitlines()[0])
        return []
    got = race(
        {
            "generated": forward(eager, x),
            "generated compiled": forward(model, x),
            "ptv": forward(ptv, x),
        },
        args.repeats,
    )
    name, ptv = f"ir-CSN-{depth}", got["ptv"]
    return [
        (name, "compile, 1st call", "generated compiled", *compile_s, None, None),
        *(
            (name, "forward", variant, w, c, c / ptv[1], w / ptv[0])
            for variant, (w, c) in got.items()
            if variant != "ptv"
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
