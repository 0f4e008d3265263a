"""Cold-process time of `csnspec compile` for the largest spec, and proof it never imports torch.

    python bench/bench_compile.py [--runs 7] [--spec specs/ipcsn152.csn]

Each run is a fresh `python -m csnspec.cli compile SPEC --backend torch -o OUT` process, so the
time includes interpreter start-up and every import: what a user waits for. A last run under
`python -X importtime` lists every module the compiler imported; torch must not be among them.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--spec", default=str(ROOT / "specs" / "ipcsn152.csn"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.py"
        cmd = [sys.executable, "-m", "csnspec.cli", "compile", args.spec, "--backend", "torch"]
        cmd += ["-o", str(out)]
        base = [sys.executable, "-c", "pass"]
        times, bare = [], []
        for _ in range(args.runs):  # in turns, so that machine load hits both alike
            bare.append(_timed(base))
            times.append(_timed(cmd))
        traced = subprocess.run(
            [sys.executable, "-X", "importtime", *cmd[1:]],
            capture_output=True,
            text=True,
            check=True,
        )
        lines = out.read_text(encoding="utf-8").count("\n")
    modules = {
        line.split("|")[-1].strip().split(".")[0]
        for line in traced.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    heavy = sorted(modules & {"torch", "jax", "flax", "numpy", "safetensors"})
    print(f"csnspec compile {Path(args.spec).name} --backend torch ({lines} lines out)")
    print(f"{'':<28} {'median':>8} {'min':>8} {'max':>8}")
    for name, t in (("cold compile process", times), ("bare `python -c pass`", bare)):
        print(f"{name:<28} {statistics.median(t):8.3f} {min(t):8.3f} {max(t):8.3f}  s")
    print(
        f"{'compile minus bare python':<28} {statistics.median(times) - statistics.median(bare):8.3f}"
    )
    print(f"top-level packages imported: {len(modules)}; heavy ones: {heavy or 'none'}")
    print("torch imported: " + ("YES" if "torch" in modules else "no"))
    return 1 if "torch" in modules else 0


def _timed(cmd) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


if __name__ == "__main__":
    raise SystemExit(main())
