"""Data-loader throughput alone: training clips decoded, scaled, cropped and normalised per
second, through torch DataLoader workers and through the thread pool the Flax path uses.

    python bench/bench_loader.py                       # synthetic videos in a temp folder
    python bench/bench_loader.py --data train.csv --frames 8 --crop 224 --scale 256 320
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="dataset (default: synthetic 6x20 videos of --size px)")
    p.add_argument("--size", type=int, default=128, help="synthetic frame size")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--rate", type=int, default=2)
    p.add_argument("--crop", type=int, default=112)
    p.add_argument("--scale", type=int, nargs=2, default=(128, 160))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()

    import torch

    from csnspec.data.dataset import TrainClips, open_index
    from csnspec.data.loader import BatchPlan, threaded_batches
    from csnspec.data.synth import synthesize
    from csnspec.data.transforms import ClipOptions
    from csnspec.train.torch_loop import torch_collate

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            synthesize(tmp, classes=6, videos=20, frames=32, size=args.size, seed=0)
            data = str(Path(tmp) / "train.csv")
        index = open_index(data)
        opts = ClipOptions(
            frames=args.frames,
            rate=args.rate,
            crop=args.crop,
            scale_min=args.scale[0],
            scale_max=args.scale[1],
        )
        ds = TrainClips(index, opts, seed=0)
        print(
            f"{len(index)} videos, clips {args.frames}x{args.crop}x{args.crop} every "
            f"{args.rate} frames, batch {args.batch}, {args.batches} batches per row"
        )
        print(f"{'loader':<22}{'workers':>8}{'clips/s':>10}")
        for workers in args.workers:
            for kind in ("torch DataLoader", "thread pool"):
                if kind == "thread pool" and workers == 0:
                    continue
                plan = BatchPlan(len(index), args.batch, 0, 0, args.batches)
                t0 = time.perf_counter()
                if kind == "torch DataLoader":
                    loader = torch.utils.data.DataLoader(
                        ds, batch_sampler=plan, num_workers=workers, collate_fn=torch_collate
                    )
                    clips = sum(len(b[1]) for b in loader)
                else:
                    clips = sum(len(b) for b in threaded_batches(ds, plan, workers))
                rate = clips / (time.perf_counter() - t0)
                print(f"{kind:<22}{workers:>8}{rate:>10.1f}")


if __name__ == "__main__":
    main()
