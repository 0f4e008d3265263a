"""Search strategies: which candidates to evaluate next.

- `exhaustive`: every candidate of the space, in order (spaces up to `--max-exhaustive`).
- `random`: uniform samples of the combinations of choices, de-duplicated (`--seed`).
- `optuna`: Optuna's TPE sampler for one objective, its NSGA-II (an evolutionary sampler) for
  several; each `choose` is one categorical parameter. Invalid, duplicate and rejected samples
  are told back as failed or with the known values, so they are never evaluated twice.

A strategy proposes with `propose(n)` and hears results with `tell(candidate, values)`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from ..errors import CsnError
from .expand import Checker
from .objectives import Objective
from .score import Candidate

STRATEGIES = ("exhaustive", "random", "optuna")


class Exhaustive:
    def __init__(self, candidates: list[Candidate]):
        self._it: Iterator[Candidate] = iter(candidates)

    def propose(self, n: int) -> list[Candidate]:
        out = []
        for cand in self._it:
            out.append(cand)
            if len(out) == n:
                break
        return out

    def tell(self, cand: Candidate, values) -> None:
        pass


class RandomSampler:
    """Uniform over the combinations of choices; gives up after `patience` draws find nothing new."""

    def __init__(self, checker: Checker, seed: int = 0, patience: int = 10_000):
        self.checker = checker
        self.rng = random.Random(seed)
        self.sizes = [len(c) for c in checker.space.choices]
        self.patience = patience
        self.exhausted = False

    def propose(self, n: int) -> list[Candidate]:
        out, misses = [], 0
        while len(out) < n and misses < self.patience:
            idx = tuple(self.rng.randrange(k) for k in self.sizes)
            cand = self.checker.check(idx)
            if cand is None:
                misses += 1
                continue
            out.append(cand)
        self.exhausted = not out
        return out

    def tell(self, cand: Candidate, values) -> None:
        pass


class OptunaSampler:
    """Optuna's ask-and-tell loop over the space's choices."""

    def __init__(
        self, checker: Checker, objectives: list[Objective], seed: int = 0, patience: int = 2_000
    ):
        try:
            import optuna
        except ImportError:
            raise CsnError(
                "--strategy optuna needs Optuna",
                hint="pip install 'csnspec[search]' (or pip install optuna)",
            ) from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.checker = checker
        self.objectives = objectives
        if len(objectives) == 1:
            sampler = optuna.samplers.TPESampler(seed=seed)
        else:
            sampler = optuna.samplers.NSGAIISampler(seed=seed)
        self.study = optuna.create_study(
            directions=[o.direction + "imize" for o in objectives], sampler=sampler
        )
        self.dists = {
            c.label: optuna.distributions.CategoricalDistribution(list(range(len(c))))
            for c in checker.space.choices
        }
        self.known: dict = {}  # part-id key -> objective values of the evaluated candidate
        self.pending: dict = {}  # part-id key -> open optuna trials waiting for its values
        self.patience = patience

    def warm(self, cand: Candidate, values) -> None:
        """Add a result found earlier (a resumed search) to the study."""
        self.known[cand.key] = values
        if values is None:
            return
        params = {c.label: i for c, i in zip(self.checker.space.choices, cand.idx)}
        trial = self.optuna.trial.create_trial(
            params=params, distributions=self.dists, values=values
        )
        self.study.add_trial(trial)

    def propose(self, n: int) -> list[Candidate]:
        out, misses = [], 0
        while len(out) < n and misses < self.patience:
            trial = self.study.ask(self.dists)
            idx = tuple(trial.params[c.label] for c in self.checker.space.choices)
            status, cand = self.checker.classify(idx)
            if status == "new":
                self.pending.setdefault(cand.key, []).append(trial)
                out.append(cand)
                continue
            misses += 1
            known = self.known.get(cand.key) if cand is not None else None
            if status == "duplicate" and cand.key in self.pending:
                self.pending[cand.key].append(trial)  # told when the first one finishes
            elif status == "duplicate" and known is not None:
                self.study.tell(trial, known)
            else:
                self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        return out

    def tell(self, cand: Candidate, values) -> None:
        self.known[cand.key] = values
        for trial in self.pending.pop(cand.key, []):
            if values is None:
                self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(trial, values)
