"""Where trained trials run: in this process (`local`) or as Ray Tune trials (`ray`).

Both call `on_start(key)` when a trial starts and `on_done(key, metrics, error)` as each one
finishes, in the driver process, which is the only writer of the results store.

Ray: `ray.init()` starts a local instance on this machine, `--ray-address` joins a cluster.
One trial per GPU where the cluster has GPUs, else `cpus_per_trial` CPUs each. Trials read the
spec text from their config and write into OUT/trials/KEY, so on a cluster OUT and the data
must be on storage every node sees (a shared file system such as NFS), at the same path.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from functools import cache
from pathlib import Path

from ..errors import CsnError
from .trained import as_metrics, resolve

EXECUTORS = ("auto", "local", "ray")


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        return False
    return True


class LocalExecutor:
    """Trials one after another in this process."""

    slots = 1

    def __init__(self, fn_path: str, options: dict, trials_dir: Path):
        self.fn = resolve(fn_path)
        self.options = options
        self.trials_dir = trials_dir

    def run(self, propose, on_start, on_done) -> None:
        while (item := propose()) is not None:
            key, text = item
            on_start(key)
            started = time.perf_counter()
            try:
                metrics = as_metrics(self.fn(text, self.trials_dir / key, **self.options))
            # A failing candidate is a result, not the end of the search: whatever it raises.
            except Exception as err:  # noqa: BLE001
                on_done(key, None, f"{type(err).__name__}: {err}", time.perf_counter() - started)
                continue
            on_done(key, metrics, None, time.perf_counter() - started)

    def close(self) -> None:
        pass


def _trainable(config, fn_path=None, options=None, trials_dir=None):
    # Runs in a Ray worker: import the objective there (workers import csnspec like the driver).
    from ray import tune

    key = config["key"]
    started = time.perf_counter()
    fn = resolve(fn_path)
    metrics = as_metrics(fn(config["spec"], Path(trials_dir) / key, **options))
    tune.report({**metrics, "key": key, "seconds": time.perf_counter() - started})


class RayExecutor:
    """Each batch is one Ray Tune run: a grid over the batch's candidate keys."""

    def __init__(
        self,
        fn_path: str,
        options: dict,
        trials_dir: Path,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float | None = None,
        log=print,
    ):
        if not ray_available():
            raise CsnError(
                "--executor ray needs Ray Tune",
                hint="pip install 'csnspec[search]' (or pip install 'ray[tune]'), or use --executor local",
            )
        # Tune's console tables and INFO lines would bury the search's own one-line-per-trial log.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
        logging.getLogger("ray.train").setLevel(logging.WARNING)
        import ray

        resolve(fn_path)  # fail here, not in every worker
        self.fn_path, self.options = fn_path, options
        self.trials_dir = Path(trials_dir).resolve()
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                # "local": a new instance of our own, never a cluster `ray start` left running here
                kwargs["address"] = "local"
                if num_cpus:
                    kwargs["num_cpus"] = num_cpus
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise CsnError(f"cannot start or reach Ray ({address or 'local'}): {err}") from None
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        self.gpus_per_trial = (
            gpus_per_trial if gpus_per_trial is not None else (1.0 if gpus else 0.0)
        )
        self.cpus_per_trial = cpus_per_trial
        if self.gpus_per_trial:
            self.slots = max(1, int(gpus / self.gpus_per_trial))
        else:
            self.slots = max(1, int(res.get("CPU", 1) / cpus_per_trial))
        log(
            f"ray: {res.get('CPU', 0):g} CPUs, {gpus} GPUs; {self.slots} trial(s) at a time "
            f"({self.cpus_per_trial:g} CPU, {self.gpus_per_trial:g} GPU each)"
        )
        self._batch = 0

    def run(self, propose, on_start, on_done) -> None:
        """One Tune run for the whole search: a searcher hands Tune the next candidate."""
        from ray import tune

        pending = set()

        def done(key, *rest):
            pending.discard(key)
            on_done(key, *rest)

        def start(key):
            pending.add(key)
            on_start(key)

        trainable = tune.with_resources(
            tune.with_parameters(
                _trainable,
                fn_path=self.fn_path,
                options=self.options,
                trials_dir=str(self.trials_dir),
            ),
            {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial},
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=_searcher_class()(propose),
                num_samples=-1,  # until the searcher says the search is done
                max_concurrent_trials=self.slots,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"search-{int(time.time())}",
                storage_path=str(self.trials_dir.parent / "ray"),
                callbacks=[_report_class()(start, done)],
                verbose=0,
            ),
        )
        tuner.fit()
        if pending:
            # Tune returns early when stopped (Ctrl-C): stop the search too.
            raise KeyboardInterrupt

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


@cache
def _report_class():
    from ray import tune

    class Report(tune.Callback):
        """Runs in the driver as Tune schedules trials, so the store has one writer."""

        def __init__(self, on_start, on_done):
            self.on_start, self.on_done = on_start, on_done

        def __getstate__(self):
            # Tune pickles its run config; the handlers (open files) stay in this process.
            return {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.on_start(trial.config["key"])

        def on_trial_complete(self, iteration, trials, trial, **info):
            result = dict(trial.last_result or {})
            metrics = {k: v for k, v in result.items() if k in _metric_keys(result)}
            self.on_done(trial.config["key"], metrics, None, result.get("seconds", 0.0))

        def on_trial_error(self, iteration, trials, trial, **info):
            self.on_done(trial.config["key"], None, _trial_error(trial), 0.0)

    return Report


@cache
def _searcher_class():
    from ray.tune.search import Searcher

    class Proposals(Searcher):
        """Tune's searcher interface over the search's own proposer (in the driver)."""

        def __init__(self, propose):
            super().__init__()
            self.propose = propose

        def __getstate__(self):
            return {}  # Tune pickles its config; the proposer stays in this process

        def suggest(self, trial_id):
            item = self.propose()
            if item is None:
                return Searcher.FINISHED
            key, text = item
            return {"key": key, "spec": text}

        def on_trial_complete(self, trial_id, result=None, error=False):
            pass  # results reach the store through the callbacks

        def save(self, checkpoint_path):
            pass  # the results store is what a search resumes from, not Tune's checkpoints

        def restore(self, checkpoint_path):
            pass

    return Proposals


# What Tune adds to every result, which is not the objective's.
_TUNE_KEYS = {
    "key",
    "seconds",
    "timestamp",
    "checkpoint_dir_name",
    "done",
    "training_iteration",
    "trial_id",
    "date",
    "time_this_iter_s",
    "time_total_s",
    "pid",
    "hostname",
    "node_ip",
    "config",
    "time_since_restore",
    "iterations_since_restore",
    "experiment_tag",
    "should_checkpoint",
}


def _metric_keys(result: dict) -> set:
    return {k for k in result if k not in _TUNE_KEYS}


def _trial_error(trial) -> str:
    path = getattr(trial, "error_file", None) or getattr(trial, "error_msg", None)
    try:
        if path and Path(str(path)).is_file():
            lines = Path(str(path)).read_text(encoding="utf-8").strip().splitlines()
            return lines[-1] if lines else "trial failed"
    except OSError:
        pass
    return str(path or "trial failed") or traceback.format_exc(limit=1)
