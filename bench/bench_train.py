"""Training throughput (clips/s) and peak memory of the generated PyTorch ir-CSN against
PyTorchVideo's `create_csn`: same spec depth, same decoded batches, same process settings.
Each model runs in its own subprocess so that peak RSS (CPU) is its own.

    python bench/bench_train.py                          # ir-CSN-50, 8x112x112, batch 4, CPU
    python bench/bench_train.py --crop 224 --batch 8     # on a GPU: bf16 autocast, cudnn.benchmark

Peak memory: torch.cuda.max_memory_allocated over the timed steps on GPU; on CPU the growth of
the process's peak RSS (resource.getrusage) from before the model is built to the end: model,
optimiser state, activations and allocator caching.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generated_model(spec: str, frames: int, crop: int, classes: int, tmp: Path):
    import csnspec
    from csnspec.backends import load_module

    net = csnspec.load(spec).with_input(input=(3, frames, crop, crop), classes=classes)
    return load_module(csnspec.lower(net), "torch").build(num_classes=classes)


def pytorchvideo_model(depth: int, frames: int, crop: int, classes: int):
    import types

    from torch import nn

    # pytorchvideo.models imports torchvision.ops.RoIAlign (detection heads only); stub it.
    if "torchvision" not in sys.modules:
        tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.RoIAlign = type("RoIAlign", (nn.Module,), {})
        tv.ops = ops
        sys.modules.update({"torchvision": tv, "torchvision.ops": ops})
    from pytorchvideo.models.csn import create_csn

    return create_csn(
        model_depth=depth,
        model_num_class=classes,
        stem_pool=nn.MaxPool3d,
        head_pool_kernel_size=(max(1, frames // 8), crop // 32, crop // 32),
    )


def batches(args, tmp: Path):
    """Decoded training batches from the real loader, made once and reused by both models."""
    import torch

    from csnspec.data.dataset import TrainClips, open_index
    from csnspec.data.loader import BatchPlan
    from csnspec.data.synth import synthesize
    from csnspec.data.transforms import ClipOptions
    from csnspec.train.torch_loop import torch_collate

    data, fmt, root = args.train, args.format, args.root
    if data is None:
        synthesize(
            tmp / "data",
            classes=6,
            videos=4,
            frames=2 * args.frames + 4,
            size=round(args.crop * 8 / 7 / 2) * 2,
            seed=0,
            test_fraction=0.25,
        )
        data, fmt, root = str(tmp / "data" / "train.csv"), None, None
    index = open_index(data, root=root, format=fmt)
    opts = ClipOptions(
        frames=args.frames,
        rate=2,
        crop=args.crop,
        scale_min=args.crop,
        scale_max=round(args.crop * 8 / 7),
    )
    loader = torch.utils.data.DataLoader(
        TrainClips(index, opts, 0),
        batch_sampler=BatchPlan(len(index), args.batch, 0, 0, args.steps + args.warmup),
        num_workers=2,
        collate_fn=torch_collate,
    )
    return [(x, y) for x, y, _ in loader], len(index.classes)


def measure(args) -> dict:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    cuda = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        data, classes = batches(args, Path(tmp))
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the model exists
        if args.only == "generated":
            model = generated_model(args.spec, args.frames, args.crop, classes, Path(tmp))
        else:
            model = pytorchvideo_model(args.depth, args.frames, args.crop, classes)
    model.to(device).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for x, y in data[: args.warmup]:
        step(x, y)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    clips = 0
    for x, y in data[args.warmup :]:
        step(x, y)
        clips += len(y)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    peak = (
        torch.cuda.max_memory_allocated()
        if cuda
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    )
    return {
        "model": args.only,
        "device": str(device),
        "params": params,
        "clips_per_s": clips / wall,
        "peak_mib": peak / 2**20,
        "peak_kind": "cuda max allocated" if cuda else "peak RSS growth from model build",
    }


def main() -> None:
    from csnspec.commands._data_args import FORMS, add_format_root

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--spec", default=str(ROOT / "specs" / "ircsn50.csn"))
    p.add_argument("--depth", type=int, default=50, help="create_csn model_depth to compare")
    data = p.add_argument_group("data (as `csnspec train` takes it)")
    data.add_argument("--train", help=f"training videos: {FORMS} (default: synthetic videos)")
    add_format_root(data)
    data.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--crop", type=int, default=112)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    p.add_argument("--only", choices=("generated", "pytorchvideo"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.data is not None:
        p.error(
            f"--data is gone: use --train {args.data} (with --format/--root as `csnspec train`)"
        )
    if args.only:
        print(json.dumps(measure(args)))
        return
    rows = []
    for only in ("generated", "pytorchvideo"):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--only", only]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"ir-CSN-{args.depth}, clips 3x{args.frames}x{args.crop}x{args.crop}, batch "
        f"{args.batch}, {args.steps} timed steps after {args.warmup}, {rows[0]['device']}"
    )
    print(
        f"{'model':<26}{'params (M)':>11}{'clips/s':>10}{'peak MiB':>10}  ({rows[0]['peak_kind']})"
    )
    names = {"generated": "csnspec generated (torch)", "pytorchvideo": "PyTorchVideo create_csn"}
    for r in rows:
        print(
            f"{names[r['model']]:<26}{r['params'] / 1e6:>11.2f}{r['clips_per_s']:>10.2f}"
            f"{r['peak_mib']:>10.0f}"
        )


if __name__ == "__main__":
    main()
