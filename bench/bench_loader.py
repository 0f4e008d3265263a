"""Data-loader throughput alone: training clips decoded, scaled, cropped and normalised per
second, through torch DataLoader workers and through the thread pool the Flax path uses.

    python bench/bench_loader.py                       # synthetic videos in a temp folder
    python bench/bench_loader.py --train train.csv --frames 8 --crop 224 --scale 256 320
    python bench/bench_loader.py --seek                # seeking decoder vs decoding from frame 0

`--seek` times, on 10-second 30 fps videos (mpeg4 as `data synth` writes them, or `--codec h264`:
x264's default GOP of 250 frames and B-frames),
one clip at the start, the middle and the end of a video, and the thread-pool loader's clips/s,
with the seeking decoder and the old way (decode from frame 0, FFmpeg's own threads) in the same
run. Goals: end/start <= 2x, loader >= 3x the old way.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path


def main() -> None:
    try:
        from csnspec.commands._data_args import FORMS, add_format_root
    except ImportError:  # --measure-loader run under an older csnspec (--against)
        FORMS, add_format_root = (
            "a dataset",
            lambda g: [g.add_argument(f) for f in ("--format", "--root")],
        )

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    data = p.add_argument_group("data (as `csnspec train` takes it)")
    data.add_argument(
        "--train", help=f"training videos: {FORMS} (default: synthetic 6x20 videos of --size px)"
    )
    add_format_root(data)
    data.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=128, help="synthetic frame size")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--rate", type=int, default=2)
    p.add_argument("--crop", type=int, default=112)
    p.add_argument("--scale", type=int, nargs=2, default=(128, 160))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--seek", action="store_true", help="seek figures instead (see above)")
    p.add_argument(
        "--codec",
        choices=("mpeg4", "h264"),
        default="mpeg4",
        help="--seek: the videos' codec: mpeg4 as `data synth` writes (GOP 12) or x264 (GOP 250)",
    )
    p.add_argument(
        "--against",
        metavar="REV",
        help="--seek: also time the thread-pool loader of git revision REV (its whole csnspec "
        "package, e.g. the commit before the seeking decoder) against this tree's, in the same run",
    )
    p.add_argument("--measure-loader", metavar="CSV", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=5, help="--seek: timings per clip (median)")
    args = p.parse_args()
    if args.data is not None:
        p.error(
            f"--data is gone: use --train {args.data} (with --format/--root as `csnspec train`)"
        )
    if args.measure_loader:
        measure_loader(args)
        return
    if args.seek:
        seek_figures(args)
        return

    import torch

    from csnspec.data.dataset import TrainClips, open_index
    from csnspec.data.loader import BatchPlan, threaded_batches
    from csnspec.data.synth import synthesize
    from csnspec.train.torch_loop import torch_collate

    with tempfile.TemporaryDirectory() as tmp:
        data, fmt, root = args.train, args.format, args.root
        if data is None:
            synthesize(tmp, classes=6, videos=20, frames=32, size=args.size, seed=0)
            data, fmt, root = str(Path(tmp) / "train.csv"), None, None
        index = open_index(data, root=root, format=fmt)
        opts = clip_options(args)
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


def clip_options(args):
    from csnspec.data.transforms import ClipOptions

    return ClipOptions(
        frames=args.frames,
        rate=args.rate,
        crop=args.crop,
        scale_min=args.scale[0],
        scale_max=args.scale[1],
    )


def seek_figures(args) -> None:
    import functools

    import numpy as np

    from csnspec.data import decode
    from csnspec.data.dataset import TrainClips, open_index
    from csnspec.data.decode import read_frames
    from csnspec.data.loader import BatchPlan, threaded_batches
    from csnspec.data.synth import motions, render, write_mp4
    from csnspec.data.transforms import clip_indices

    write = write_mp4 if args.codec == "mpeg4" else write_h264
    old = functools.partial(read_frames, seek=False, threads=0)
    opts = clip_options(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        for k, motion in enumerate(motions(6, args.size)):
            for i in range(2):
                rel = f"{motion.name}/{i}.mp4"
                video = render(np.random.default_rng([k, i]), motion, 300, args.size)
                write(tmp / rel, video, 30)
                rows.append(f"{rel},{motion.name}")
        (tmp / "train.csv").write_text("\n".join(rows) + "\n")
        video = tmp / rows[0].split(",")[0]

        def size(h, w):
            return (h, w)

        # CPU time (all threads) as well as wall time: on a shared machine the wall clock
        # measures the neighbours; the ratios are taken in the same run either way.
        print(f"one {opts.frames}-frame clip every {opts.rate} frames of a 300-frame video")
        print(
            f"{'decoder, ms (best of --repeat)':<32}{'start':>8}{'middle':>8}{'end':>8}{'end/start':>11}"
        )
        decoders = [("seek (PyAV, 1 thread)", read_frames), ("from frame 0 (old)", old)]
        if importlib.util.find_spec("decord"):
            decoders.append(("decord, 1 thread", read_decord))
        for name, reader in decoders:
            for clock in (time.perf_counter, time.process_time):
                ms = []
                for start in (0, 150 - opts.span // 2, 300 - opts.span):
                    reader(video, lambda n, s=start: clip_indices(s, n, opts), size)  # warm
                    times = []
                    for _ in range(args.repeat):
                        t0 = clock()
                        reader(video, lambda n, s=start: clip_indices(s, n, opts), size)
                        times.append(clock() - t0)
                    ms.append(1000 * min(times))
                label = f"{name}, {'wall' if clock is time.perf_counter else 'CPU'}"
                print(f"{label:<32}{ms[0]:>8.1f}{ms[1]:>8.1f}{ms[2]:>8.1f}{ms[2] / ms[0]:>10.1f}x")

        index = open_index(tmp / "train.csv")
        print(f"thread-pool loader, {len(index)} 10-second 30 fps videos, batch {args.batch}")
        print(f"{'workers':<9}{'decoder':<15}{'clips/s':>4}{'CPU ms/clip':>13}")

        def cold(*args, **kw):
            """Seeking with the frame table read again for every clip, as on a dataset larger
            than the table cache (each video visited once per epoch)."""
            decode._table.cache_clear()
            return read_frames(*args, **kw)

        TrainClips(index, opts, seed=0)[(10**6, 0)]  # untimed: one-time costs (lazy imports)
        for workers in args.workers:
            if workers == 0:
                continue
            readers = {"seek": read_frames, "seek cold": cold, "old": old}
            totals = {name: [0, 0.0, 0.0] for name in readers}  # clips, wall s, CPU s
            for r in range(3):  # alternating rounds: all see the same neighbours
                for name, reader in readers.items():
                    ds = TrainClips(index, opts, seed=r, reader=reader)
                    plan = BatchPlan(len(index), args.batch, r, 0, args.batches)
                    t0, c0 = time.perf_counter(), time.process_time()
                    totals[name][0] += sum(len(b) for b in threaded_batches(ds, plan, workers))
                    totals[name][1] += time.perf_counter() - t0
                    totals[name][2] += time.process_time() - c0
            for name, (clips, wall, cpu) in totals.items():
                print(f"{workers:<9}{name:<15}{clips / wall:>4.1f}{1000 * cpu / clips:>13.1f}")
            n2, w2, c2 = totals["old"]
            for name in ("seek", "seek cold"):
                n1, w1, c1 = totals[name]
                ratio = f"{(n1 / w1) / (n2 / w2):>8.1f}x{(c2 / n2) / (c1 / n1):>12.1f}x"
                print(f"{'':<9}{name + '/old':<15}{ratio[5:]}")
        if args.against:
            against(args, tmp)


def against(args, tmp: Path) -> None:
    """This tree's loader against revision `args.against`'s, each in its own process (the whole
    csnspec package of that revision on PYTHONPATH), alternating rounds."""
    import json
    import os
    import subprocess
    import sys

    here = Path(__file__).resolve().parent.parent
    old_tree = tmp / "against"
    old_tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(here), "archive", args.against, "csnspec"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
    trees = {"this tree": here, args.against[:12]: old_tree}
    print(f"whole loader, this tree vs {args.against} (each in its own process)")
    print(f"{'workers':<9}{'csnspec':<14}{'clips/s':>9}{'CPU ms/clip':>13}")
    for workers in args.workers:
        if workers == 0:
            continue
        totals = {name: [0, 0.0, 0.0] for name in trees}
        for r in range(3):
            for name, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": str(tree)}
                cmd = [sys.executable, __file__, "--measure-loader", str(tmp / "train.csv")]
                cmd += ["--workers", str(workers), "--batches", str(args.batches)]
                cmd += ["--batch", str(args.batch), "--frames", str(args.frames)]
                cmd += ["--rate", str(args.rate), "--crop", str(args.crop), "--seed", str(r)]
                cmd += ["--scale", *map(str, args.scale)]
                out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                got = json.loads(out.stdout.strip().splitlines()[-1])
                for k, key in enumerate(("clips", "wall", "cpu")):
                    totals[name][k] += got[key]
        for name, (clips, wall, cpu) in totals.items():
            print(f"{workers:<9}{name:<14}{clips / wall:>9.1f}{1000 * cpu / clips:>13.1f}")
        (n1, w1, c1), (n2, w2, c2) = totals.values()
        ratio = f"{(n1 / w1) / (n2 / w2):>8.1f}x{(c2 / n2) / (c1 / n1):>12.1f}x"
        print(f"{'':<9}{'ratio':<14}{ratio}")


def measure_loader(args) -> None:
    """One thread-pool loader run with whichever csnspec is importable; JSON on stdout."""
    import json

    from csnspec.data.dataset import TrainClips, open_index
    from csnspec.data.loader import BatchPlan, threaded_batches

    index = open_index(args.measure_loader)
    ds = TrainClips(index, clip_options(args), seed=args.seed)
    plan = BatchPlan(len(index), args.batch, args.seed, 0, args.batches)
    ds[(10**6, 0)]  # one clip first, untimed: one-time costs (lazy imports) are not per clip
    t0, c0 = time.perf_counter(), time.process_time()
    clips = sum(len(b) for b in threaded_batches(ds, plan, args.workers[0]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"clips": clips, "wall": wall, "cpu": cpu}))


def read_decord(path, pick, size):
    """decord's VideoReader behind csnspec's reader interface (frames at the video's own size:
    `size` is the identity here), opened per clip as a dataset item would."""
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    return reader.get_batch([int(i) for i in pick(len(reader))]).asnumpy()


def write_h264(path: Path, video, fps: int = 30) -> None:
    """H.264 as people download it: x264's default GOP (250) and B-frames."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        stream.height, stream.width = video.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


if __name__ == "__main__":
    main()
