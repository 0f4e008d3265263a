"""Analytic scoring throughput of `csnspec search` against slower ways of counting a candidate.

    python bench/bench_search.py [--count 100000] [--torch 3] [--parse 200] [--space FILE ...] [--cpu]

For each space (the issue's bottleneck-X-16 family and spaces/per-stage.space, 279,936
distinct networks), on one core in one process:

- scorer: `Scorer.evaluate` (cached per-part costs) over `--count` combinations in order, from
  cold caches; "warm" repeats the same combinations (cycled to at least 100,000 evaluations).
- checked: the same through `Checker.check`, which also de-duplicates, applies the `require`
  lines and prints each new candidate's canonical text (what an exhaustive search does).
- parse+stats: `csnspec.stats(csnspec.parse(text))` per candidate, on `--parse` candidates.
- torch: the torch backend's module rendered and executed, the model built, and one forward
  on the meta device under `torch.utils.flop_counter.FlopCounterMode`, on `--torch` candidates
  (and the counted FLOPs checked against the scorer's: FlopCounterMode counts 2 per multiply-add).
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import csnspec
from csnspec.search.expand import Checker
from csnspec.search.score import Candidate, Scorer, canonical
from csnspec.search.space import load_space

# wall-clock time, or with --cpu the process's CPU time: candidates per second of one core
# even on a machine other processes share
clock = time.perf_counter


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def bench_space(path: Path, count: int, n_parse: int, n_torch: int) -> dict:
    space = load_space(path)
    n = min(count, space.raw_size)
    combos = list(itertools.islice(space.indices(), n))
    scorer = Scorer(space)
    t = clock()
    cands = [scorer.evaluate(idx) for idx in combos]
    cold = clock() - t
    # warm: at least 100,000 evaluations (the small space's 20 combinations, cycled)
    reps = max(n, 100_000)
    t = clock()
    for idx in itertools.islice(itertools.cycle(combos), reps):
        scorer.evaluate(idx)
    warm = (clock() - t) * n / reps
    checker = Checker(space, Scorer(space))
    t = clock()
    valid = sum(1 for idx in combos if checker.check(idx))
    checked = clock() - t

    rng = random.Random(0)
    pool = [c for c in cands if isinstance(c, Candidate)]
    sample = rng.sample(pool, min(n_parse, len(pool)))
    texts = [canonical(space, c) for c in sample]
    t = clock()
    for text in texts:
        csnspec.stats(csnspec.parse(text))
    parse_s = (clock() - t) / len(texts)

    torch_s = None
    if n_torch:
        torch_s = bench_torch(space, rng.sample(pool, min(n_torch, len(pool))))
    return {
        "space": f"{space.name} ({space.raw_size:,} combinations)",
        "n": n,
        "valid": valid,
        "cold": cold / n,
        "warm": warm / n,
        "checked": checked / n,
        "parse": parse_s,
        "torch": torch_s,
    }


def bench_torch(space, cands) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from csnspec.backends import load_module

    torch.set_num_threads(1)
    total = 0.0
    for cand in cands:
        t = clock()
        net = csnspec.parse(canonical(space, cand))
        module = load_module(csnspec.lower(net), "torch")
        model = module.build(net.classes).to("meta").eval()
        x = torch.zeros((1, *net.input), device="meta")
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        total += clock() - t
        assert counter.get_total_flops() == 2 * cand.cost.flops, (
            counter.get_total_flops(),
            cand.cost.flops,
        )
    return total / len(cands)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=100_000, help="combinations scored per space")
    p.add_argument("--parse", type=int, default=200)
    p.add_argument(
        "--torch", type=int, default=3, help="candidates built as torch models (0: skip)"
    )
    p.add_argument(
        "--space",
        action="append",
        type=Path,
        metavar="FILE",
        help="a space file to measure (repeatable; default: spaces/bottleneck-x-16.space and "
        "spaces/per-stage.space)",
    )
    p.add_argument(
        "--cpu", action="store_true", help="time with the process's CPU time, not the wall clock"
    )
    args = p.parse_args()
    if args.cpu:
        global clock
        clock = time.process_time
    spaces = args.space or [
        ROOT / "spaces" / "bottleneck-x-16.space",
        ROOT / "spaces" / "per-stage.space",
    ]
    rows = [bench_space(path, args.count, args.parse, args.torch) for path in spaces]
    head = [
        "space",
        "combos",
        "scorer cold",
        "scorer warm",
        "checked+canonical",
        "parse+stats",
        "torch+FlopCounter",
        "torch / scorer",
    ]
    table = [head]
    for r in rows:
        ratio = f"{r['torch'] / r['cold']:,.0f}x" if r["torch"] else "-"
        table.append(
            [
                r["space"],
                f"{r['n']:,}",
                rate(1, r["cold"]),
                rate(1, r["warm"]),
                rate(1, r["checked"]),
                f"{r['parse'] * 1e3:.2f} ms",
                f"{r['torch']:.2f} s" if r["torch"] else "-",
                ratio,
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        print(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(
        "\nscorer: candidates per second on one core (cold: caches empty at the start); "
        "parse+stats and torch: seconds per candidate"
    )


if __name__ == "__main__":
    main()
