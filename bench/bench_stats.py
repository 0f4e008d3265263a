"""How fast `csnspec stats` is: cold-process wall time and in-process parse+lower+analyse rate.

    python bench/bench_stats.py [--runs 10] [--seconds 3] [--baseline DIR] [SPEC]

Cold runs read compiled bytecode, as an installed csnspec does: they keep it in a temporary
folder (PYTHONPYCACHEPREFIX), which the warm-up run fills even where the environment sets
PYTHONDONTWRITEBYTECODE (without it every csnspec module is compiled again, some 60-80 ms).
`--baseline DIR` times the same command with another checkout's csnspec (e.g. `git archive`
of another branch, unpacked in DIR) in the same run, for a comparison on a loaded machine.

Targets: a cold `csnspec stats specs/ipcsn152.csn` under 0.3 s (median), and at least 200
fresh parse -> lower -> analyse rounds of ip-CSN-152 per second in one process (plain code
over speed tricks: the search scorer caches per-part costs and needs no more, issue 10).

Both targets are judged on wall time and on CPU time: on a shared machine the wall clock also
counts the time other processes hold the cores. The cold run is set against its floor, timed
alongside: a bare interpreter, and one that imports pydantic and builds a one-field model
(pydantic's import, its lazily imported schema machinery and its plugin lookup through
importlib.metadata), which the spec IR cannot avoid.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLD_TARGET_S = 0.3
RATE_TARGET = 200.0
PYDANTIC_FLOOR = "from pydantic import BaseModel\nclass Floor(BaseModel):\n    x: int"


def _timed(cmd, env=None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def child_env(pycache: str, csnspec_root: Path = ROOT) -> dict[str, str]:
    """The environment of a timed run: bytecode kept in `pycache`, csnspec from `csnspec_root`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(csnspec_root), env.get("PYTHONPATH")]))
    return env


def cold(runs: int, *jobs) -> list[tuple[list[float], list[float]]]:
    """Wall and CPU times of each (command, environment) job in fresh processes.

    The jobs take turns, run by run, so that a change in the machine's load hits them alike.
    """
    for cmd, env in jobs:  # warm the OS file cache, the bytecode cache and lark's grammar cache
        _timed(cmd, env)
    times = [([], []) for _ in jobs]
    for _ in range(runs):
        for (cmd, env), (walls, cpus) in zip(jobs, times):
            wall, cpu = _timed(cmd, env)
            walls.append(wall)
            cpus.append(cpu)
    return times


def rate(spec: str, seconds: float) -> tuple[float, float]:
    """Fresh parse -> lower -> analyse rounds per wall second and per CPU second."""
    import csnspec
    from csnspec.lowering import lower

    text = (ROOT / spec).read_text(encoding="utf-8")
    csnspec.stats(csnspec.parse(text))  # build the parser once, as any long-lived process does
    clear = getattr(lower, "cache_clear", lambda: None)
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        clear()  # every round lowers afresh (equal specs would share one cached lowering)
        csnspec.stats(csnspec.parse(text)).total  # noqa: B018 (the total is what stats prints)
        n += 1
    return n / elapsed, n / (time.process_time() - cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="?", default="specs/ipcsn152.csn")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--baseline", type=Path, metavar="DIR", help="another checkout to compare")
    args = ap.parse_args()

    # (-P: csnspec comes from PYTHONPATH, see child_env, not from the working folder)
    stats_cmd = [sys.executable, "-P", "-m", "csnspec.cli", "stats", args.spec]
    with tempfile.TemporaryDirectory(prefix="csnspec-pyc-") as pycache:
        jobs = [
            (stats_cmd, child_env(pycache)),
            ([sys.executable, "-c", "pass"], child_env(pycache)),
            ([sys.executable, "-c", PYDANTIC_FLOOR], child_env(pycache)),
        ]
        if args.baseline:
            jobs.append((stats_cmd, child_env(pycache, args.baseline.resolve())))
        timed = cold(args.runs, *jobs)
        (walls, cpus), (bare_walls, bare_cpus), (floor_walls, floor_cpus), *baseline = timed
        if baseline:
            ((base_walls, base_cpus),) = baseline
    per_s, per_cpu_s = rate(args.spec, args.seconds)
    median = statistics.median
    rows = [
        (
            "cold `csnspec stats`, wall (median s)",
            f"{median(walls):.3f}",
            f"< {COLD_TARGET_S}",
            median(walls) < COLD_TARGET_S,
        ),
        ("  wall min / max (s)", f"{min(walls):.3f} / {max(walls):.3f}", "", None),
        (
            "  CPU user+sys (median s)",
            f"{median(cpus):.3f}",
            f"< {COLD_TARGET_S}",
            median(cpus) < COLD_TARGET_S,
        ),
        (
            "bare `python -c pass`, wall / CPU (median s)",
            f"{median(bare_walls):.3f} / {median(bare_cpus):.3f}",
            "",
            None,
        ),
        (
            "pydantic + one model, wall / CPU (median s)",
            f"{median(floor_walls):.3f} / {median(floor_cpus):.3f}",
            "",
            None,
        ),
        ("  stats CPU above it (median s)", f"{median(cpus) - median(floor_cpus):.3f}", "", None),
        *(
            [
                (
                    f"baseline {args.baseline}, wall / CPU (median s)",
                    f"{median(base_walls):.3f} / {median(base_cpus):.3f}",
                    "",
                    None,
                )
            ]
            if args.baseline
            else []
        ),
        (
            "parse+lower+analyse, in process (per s)",
            f"{per_s:.0f}",
            f">= {RATE_TARGET:.0f}",
            per_s >= RATE_TARGET,
        ),
        ("  per CPU second", f"{per_cpu_s:.0f}", f">= {RATE_TARGET:.0f}", per_cpu_s >= RATE_TARGET),
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"spec: {args.spec}   python {sys.version.split()[0]}   runs: {args.runs}   "
        f"cores: {os.cpu_count()}   load average: {load}"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("ok" if ok else "MISSED")
        print(f"{name:<{width}}  {value:>13}  {target:>7}  {mark}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
