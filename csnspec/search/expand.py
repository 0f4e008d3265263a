"""Expansion of a space into its candidates: every combination of choices, the invalid ones and
the duplicates dropped with their reasons counted, constraints applied, de-duplicated by the
canonical text the printer gives."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..errors import CsnError, Span
from .score import Candidate, Scorer, canonical
from .space import Skip, Space, normalise_reason


@dataclass
class Tally:
    """What became of every combination of choices looked at, by reason."""

    seen: int = 0
    valid: int = 0
    reasons: Counter = field(default_factory=Counter)  # (kind, reason) -> count
    examples: dict = field(default_factory=dict)  # (kind, reason) -> one full message

    def count(self, kind: str, message: str) -> None:
        key = (kind, normalise_reason(message))
        self.reasons[key] += 1
        self.examples.setdefault(key, message)

    def summary(self) -> str:
        lines = [f"{self.seen:,} combinations looked at, {self.valid:,} candidates"]
        order = {"duplicate": 0, "invalid": 1, "rejected": 2}
        for (kind, reason), n in sorted(
            self.reasons.items(), key=lambda kv: (order[kv[0][0]], -kv[1])
        ):
            lines.append(f"  {n:>8,} {kind}: {self.examples[(kind, reason)]}")
        return "\n".join(lines)


class Checker:
    """Turns combinations into unique, valid candidates that meet the space's constraints."""

    def __init__(self, space: Space, scorer: Scorer | None = None):
        self.space = space
        self.scorer = scorer or Scorer(space)
        self.tally = Tally()
        self._keys: dict = {}  # part-id key -> canonical text (or None until asked)
        self._texts: dict = {}  # canonical text -> part-id key
        self._rejected: set = set()  # keys that fail a constraint

    def check(self, idx, *, canonicalise: bool = True) -> Candidate | None:
        """The candidate for `idx` if it is new, valid and meets every constraint."""
        status, cand = self.classify(idx, canonicalise=canonicalise)
        return cand if status == "new" else None

    def classify(self, idx, *, canonicalise: bool = True):
        """(status, candidate): status is new, duplicate, invalid (candidate None) or rejected."""
        self.tally.seen += 1
        cand = self.scorer.evaluate(tuple(idx))
        if isinstance(cand, Skip):
            self.tally.count("invalid", cand.reason)
            return "invalid", None
        if cand.key in self._rejected:
            self.tally.count("duplicate", cand.note or "the same network as an earlier candidate")
            return "rejected", cand
        if cand.key in self._keys:
            self.tally.count("duplicate", cand.note or "the same network as an earlier candidate")
            return "duplicate", cand
        for req in self.space.requires:
            if not req.holds(cand.cost):
                self._keys[cand.key] = None
                self._rejected.add(cand.key)
                self.tally.count("rejected", f"fails `require {req.text}`")
                return "rejected", cand
        text = None
        if canonicalise:
            # Keys are equal exactly when networks are; the text check guards that promise.
            try:
                text = canonical(self.space, cand)
            except CsnError as err:
                self._keys[cand.key] = None
                self._rejected.add(cand.key)
                self.tally.count("invalid", err.message)
                return "invalid", None
            if text in self._texts:
                self._keys[cand.key] = text
                self.tally.count(
                    "duplicate", cand.note or "the same canonical spec as an earlier candidate"
                )
                return "duplicate", cand
            self._texts[text] = cand.key
        self._keys[cand.key] = text
        self.tally.valid += 1
        return "new", cand

    def seen_key(self, key) -> bool:
        return key in self._keys

    def text(self, cand: Candidate) -> str:
        """The canonical text of a candidate this checker passed (printed once, then kept)."""
        text = self._keys.get(cand.key)
        if text is None:
            text = self._keys[cand.key] = canonical(self.space, cand)
        return text


@dataclass
class Expansion:
    space: Space
    candidates: list[Candidate]
    tally: Tally

    @property
    def raw_size(self) -> int:
        return self.space.raw_size


def expand(space: Space, *, canonicalise: bool = True) -> Expansion:
    """Every valid, unique candidate of the space that meets its constraints, in order.

    Raises CsnError, with the reasons summarised, when nothing is left.
    """
    checker = Checker(space)
    out = [c for idx in space.indices() if (c := checker.check(idx, canonicalise=canonicalise))]
    if not out:
        raise nothing_left(space, checker.tally)
    return Expansion(space, out, checker.tally)


def nothing_left(space: Space, tally: Tally) -> CsnError:
    return CsnError(
        "the space has no valid candidate\n" + tally.summary(),
        Span(1, 1) if space.source else None,
        hint="widen the choices or loosen the `require` lines",
        source=space.source,
        filename=space.filename,
    )
