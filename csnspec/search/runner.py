"""The search driver: size the space, propose candidates, evaluate them, store each result as it
finishes, and write the reports (results.csv, pareto.csv, top/, plots/) from the store."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_text
from ..errors import CsnError
from .expand import Checker, nothing_left
from .objectives import Objective, cost_metrics, pareto_front, values
from .score import Candidate, text_key
from .space import Space
from .store import Store, check_meta
from .strategies import Exhaustive, OptunaSampler, RandomSampler

PROBE = 2_000  # random draws that show a space too large to expand has any candidate at all


@dataclass
class Settings:
    out: Path
    objectives: list[Objective]
    strategy: str = "exhaustive"
    trials: int | None = None
    seed: int = 0
    resume: bool = False
    top: int = 10
    max_exhaustive: int = 1_000_000
    executor: str = "auto"
    fn_path: str | None = None  # trained objective, module:function
    fn_options: dict = field(default_factory=dict)
    ray_address: str | None = None
    ray_cpus: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    plots: bool = True

    @property
    def trained(self) -> bool:
        return any(o.trained for o in self.objectives)


def run_search(space: Space, s: Settings, log=print) -> dict:
    """Run (or resume) a search; return a summary of what it did."""
    log(f"space {space.name}: {len(space.choices)} choices, {space.raw_size:,} combinations")
    check_meta(s.out, _meta(space, s), resume=s.resume)
    checker = Checker(space)
    strategy, total = _strategy(space, checker, s, log)
    store = Store(s.out, sync_every=1.0 if not s.trained else 0.0)
    if store.torn:
        log(f"{store.torn} record(s) cut short by a kill were ignored; those trials run again")
    done_before = len(store)
    if s.resume:
        log(f"resuming: {done_before} trial(s) already finished in {s.out}")
    budget = s.trials if s.trials is not None else total
    executor = _executor(s, log) if s.trained else None
    # Optuna learns from each result before its next proposal; the others propose in batches.
    batch = 1 if s.strategy == "optuna" else 256
    proposer = Proposer(checker, strategy, store, s.objectives, budget, batch)
    try:
        if executor is None:
            while (item := proposer.next()) is not None:
                cand, text, key = item
                rec = _record(space, cand, text, key, {}, None, 0.0)
                store.append(rec)
                proposer.finished(key)
                _tell(strategy, cand, rec, s.objectives)
        else:
            _run_trained(space, proposer, executor, store, strategy, s, log)
        ran = proposer.issued
    finally:
        store.close()
        if executor is not None:
            executor.close()
    log(checker.tally.summary())
    log(f"{ran} trial(s) run now, {len(store)} finished in all")
    summary = write_reports(space, s, log)
    summary.update(ran=ran, finished=len(store), combinations=space.raw_size)
    return summary


class Proposer:
    """The next candidate to run: new to the store, within the budget, told to the strategy
    when it was finished by an earlier run (which is never run again)."""

    def __init__(self, checker, strategy, store: Store, objectives, budget: int, batch: int):
        self.checker, self.strategy, self.store = checker, strategy, store
        self.objectives, self.budget, self.batch = objectives, budget, batch
        self.buffer: deque = deque()
        self.running: set = set()
        self.issued = 0

    def next(self):
        """(candidate, canonical text, key), or None when the search is done."""
        while len(self.store) + len(self.running) < self.budget:
            if not self.buffer:
                self.buffer.extend(self.strategy.propose(self.batch))
                if not self.buffer:
                    return None
            cand = self.buffer.popleft()
            text = self.checker.text(cand)
            key = text_key(text)
            rec = self.store.records.get(key)
            if rec is not None:
                _tell(self.strategy, cand, rec, self.objectives)
                continue
            if key in self.running:
                continue
            self.running.add(key)
            self.issued += 1
            return cand, text, key
        return None

    def finished(self, key: str) -> None:
        self.running.discard(key)


def _strategy(space: Space, checker: Checker, s: Settings, log):
    """The strategy, and how many candidates it can give (None where unknown)."""
    if s.strategy == "exhaustive":
        if space.raw_size > s.max_exhaustive:
            raise CsnError(
                f"the space has {space.raw_size:,} combinations, more than --max-exhaustive "
                f"{s.max_exhaustive:,}",
                hint="sample it: --strategy random --trials N, or --strategy optuna --trials N",
            )
        cands = [c for idx in space.indices() if (c := checker.check(idx))]
        if not cands:
            raise nothing_left(space, checker.tally)
        log(f"expanded: {len(cands):,} candidates")
        return Exhaustive(cands), len(cands)
    if s.trials is None:
        raise CsnError(f"--strategy {s.strategy} needs --trials N")
    # Show that the space has candidates before anything runs (the checker's tally is kept apart).
    probe = Checker(space, checker.scorer)
    if space.raw_size <= min(s.max_exhaustive, 200_000):
        n = sum(1 for idx in space.indices() if probe.check(idx, canonicalise=False))
        log(f"expanded: {n:,} candidates")
    else:
        rng = random.Random(s.seed)
        sizes = [len(c) for c in space.choices]
        n = sum(
            1
            for _ in range(PROBE)
            if probe.check(tuple(rng.randrange(k) for k in sizes), canonicalise=False)
        )
        log(f"{n} of {PROBE} random combinations are distinct valid candidates")
    if n == 0:
        raise nothing_left(space, probe.tally)
    if s.strategy == "random":
        return RandomSampler(checker, s.seed), None
    strat = OptunaSampler(checker, s.objectives, s.seed)
    if s.resume:
        _warm(space, strat, s)
    return strat, None


def _warm(space: Space, strat: OptunaSampler, s: Settings) -> None:
    # A resumed Optuna search learns from the trials already finished.
    store = Store(s.out)
    try:
        for rec in store.records.values():
            cand = strat.checker.scorer.evaluate(tuple(rec["idx"]))
            if isinstance(cand, Candidate):
                strat.checker.check(cand.idx)  # marks it seen
                strat.warm(cand, _values(rec, s.objectives))
    finally:
        store.close()


def _executor(s: Settings, log):
    from .executors import LocalExecutor, RayExecutor, ray_available

    trials_dir = s.out / "trials"
    kind = s.executor
    if kind == "auto":
        kind = "ray" if ray_available() else "local"
        if kind == "local":
            log("Ray is not installed: trials run in this process (pip install 'csnspec[search]')")
    if kind == "local":
        if s.ray_address:
            raise CsnError("--ray-address needs --executor ray")
        return LocalExecutor(s.fn_path, s.fn_options, trials_dir)
    return RayExecutor(
        s.fn_path,
        s.fn_options,
        trials_dir,
        address=s.ray_address,
        num_cpus=s.ray_cpus,
        cpus_per_trial=s.cpus_per_trial,
        gpus_per_trial=s.gpus_per_trial,
        log=log,
    )


def _run_trained(space, proposer: Proposer, executor, store: Store, strategy, s: Settings, log):
    by_key = {}

    def propose():
        item = proposer.next()
        if item is None:
            return None
        cand, text, key = item
        by_key[key] = (cand, text)
        return key, text

    def on_start(key):
        store.started(key, name=_name(space, key))

    def on_done(key, metrics, error, seconds):
        cand, text = by_key[key]
        if error is None and not isinstance((metrics or {}).get("accuracy"), (int, float)):
            error, metrics = f"the objective reported no accuracy: {metrics}", None
        rec = _record(space, cand, text, key, metrics or {}, error, seconds)
        store.append(rec)
        proposer.finished(key)
        _tell(strategy, cand, rec, s.objectives)
        what = f"accuracy {metrics['accuracy']:.3f}" if metrics else f"FAILED ({error})"
        log(f"trial {_name(space, key)}: {what} in {seconds:.1f}s")

    executor.run(propose, on_start, on_done)


def _record(space, cand: Candidate, text: str, key: str, metrics: dict, error, seconds) -> dict:
    rec = {
        "key": key,
        "name": _name(space, key),
        "spec": text,
        "idx": list(cand.idx),
        "choices": space.alternatives(cand.idx),
        "families": cand.families,
        "cost": cost_metrics(cand.cost),
        "metrics": metrics,
        "status": "failed" if error else "ok",
        "finished": time.time(),
    }
    if error:
        rec["error"] = error
    if seconds:
        rec["seconds"] = round(seconds, 3)
    return rec


def _values(rec: dict, objectives) -> list[float] | None:
    if rec.get("status") != "ok":
        return None
    return values(objectives, {**rec["cost"], **rec.get("metrics", {})})


def _tell(strategy, cand, rec, objectives) -> None:
    strategy.tell(cand, _values(rec, objectives))


def _name(space: Space, key: str) -> str:
    return f"{space.name[:54]}-{key[:8]}"


def _meta(space: Space, s: Settings) -> dict:
    return {
        "space": space.name,
        "space_file": space.filename,
        "space_sha256": hashlib.sha256(space.source.encode("utf-8")).hexdigest(),
        "objective": ",".join(o.text for o in s.objectives),
        "strategy": s.strategy,
        "seed": s.seed,
        "trained_fn": s.fn_path,
        "trained_options": s.fn_options,
    }


# -- reports ---------------------------------------------------------------------------------

COST_COLUMNS = ("flops", "params", "bn_params", "interactions", "activations", "memory")


def write_reports(space: Space, s: Settings, log=print) -> dict:
    """results.csv, pareto.csv, top/*.csn and the plots, all from results.jsonl."""
    store = Store(s.out)
    store.close()
    records = list(store.records.values())
    ok = [r for r in records if r.get("status") == "ok" and _values(r, s.objectives) is not None]
    mask = pareto_front([_values(r, s.objectives) for r in ok], s.objectives) if ok else []
    signs = [o.sign() for o in s.objectives]
    on_front = {r["key"] for r, m in zip(ok, mask) if m}

    def order(r):
        v = _values(r, s.objectives)
        return (r["key"] not in on_front, [-x * g for x, g in zip(v, signs)])

    ranked = sorted(ok, key=order)
    rank = {r["key"]: i + 1 for i, r in enumerate(ranked)}
    labels = [c.label for c in space.choices]
    metric_cols = sorted({k for r in records for k in r.get("metrics", {})})

    def table(rows) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(
            [
                "rank",
                "key",
                "name",
                "status",
                "pareto",
                "families",
                *labels,
                *COST_COLUMNS,
                *metric_cols,
                "seconds",
                "error",
            ]
        )
        for r in rows:
            w.writerow(
                [
                    rank.get(r["key"], ""),
                    r["key"],
                    r["name"],
                    r["status"],
                    int(r["key"] in on_front),
                    r["families"],
                    *(r["choices"].get(lb, "") for lb in labels),
                    *(r["cost"][c] for c in COST_COLUMNS),
                    *(r.get("metrics", {}).get(m, "") for m in metric_cols),
                    r.get("seconds", ""),
                    r.get("error", ""),
                ]
            )
        return out.getvalue()

    rest = [r for r in records if r["key"] not in rank]
    write_text(s.out / "results.csv", table(ranked + rest))
    write_text(s.out / "pareto.csv", table([r for r in ranked if r["key"] in on_front]))
    top_dir = s.out / "top"
    keep = set()
    for i, r in enumerate(ranked[: s.top]):
        path = top_dir / f"{i + 1:02d}-{r['name']}.csn"
        text = r["spec"].replace(f"network {space.name}\n", f"network {r['name']}\n", 1)
        write_text(path, text)
        keep.add(path.name)
    if top_dir.is_dir():
        for old in top_dir.glob("*.csn"):
            if old.name not in keep:
                old.unlink()  # a candidate that has left the top since the last report
    plots = []
    if s.plots and ok:
        from .plots import plot_all

        plots = plot_all(records, on_front, s.out / "plots", space.name, log)
    summary = {
        "records": len(records),
        "ok": len(ok),
        "failed": len(records) - len(ok),
        "pareto": len(on_front),
        "best": ranked[0]["name"] if ranked else None,
        "plots": [str(p) for p in plots],
    }
    write_text(s.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if ranked:
        best = ranked[0]
        shown = ", ".join(
            f"{o.metric}={_fmt(v)}" for o, v in zip(s.objectives, _values(best, s.objectives))
        )
        log(
            f"best: {best['name']} ({best['families']}; {shown}); {len(on_front)} on the Pareto front"
        )
    log(
        f"wrote {s.out}/results.csv, pareto.csv, top/ ({min(s.top, len(ranked))} specs)"
        + (f", {len(plots)} plot(s)" if plots else "")
    )
    return summary


def _fmt(v: float) -> str:
    if abs(v) >= 1e9:
        return f"{v / 1e9:.3g}G"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g}M"
    return f"{v:.4g}"
