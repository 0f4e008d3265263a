"""Fast analytic scoring of candidates: exact `csnspec.stats` totals without building each network.

A network's cost is the sum of its stem, its stages and its head, and a stage's cost depends only
on the stage and the shape it receives. Each distinct (part, shape) is lowered once through the
ordinary path (`csnspec.lowering.lower` + `csnspec.analysis.analyse`, on a network holding just
that part) and its cost cached; a candidate then costs a few look-ups and additions.
Tests check the result equals `csnspec.stats(csnspec.parse(text)).total` on random candidates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..analysis import Cost, analyse
from ..errors import CsnError
from ..lowering import lower
from ..printer import format_spec
from ..spec import Family, Head, Network, Norm, Stage
from .space import Skip, Space

_NO_STEM = -1  # part ids of the defaults, for lines a space leaves out
_NO_HEAD = -2
_NO_NORM = -3


@dataclass(frozen=True, slots=True)
class Candidate:
    """A valid, scored combination of choices."""

    idx: tuple[int, ...]
    key: tuple[int, ...]  # the part ids: equal keys are equal networks
    cost: Cost
    parts: dict
    note: str | None  # options dropped because the family does not take them

    @property
    def families(self) -> str:
        return "/".join(dict.fromkeys(stage.family.value for stage in self.parts["stages"]))


def _default_parts() -> dict:
    from ..parse import parse

    net = parse("network d\ninput 3x8x8x8\nclasses 1\nstages simple x [1]\n")
    return {"stem": net.stem, "norm": Norm(), "head": Head()}


class Scorer:
    """Resolves and scores candidates of one space, caching every part's cost."""

    def __init__(self, space: Space):
        self.space = space
        self.defaults = _default_parts()
        self._costs: dict = {}  # (what, part id, index, in shape) -> (cost tuple, out shape) | Skip

    def evaluate(self, idx: tuple[int, ...]) -> Candidate | Skip:
        """The candidate for one combination of choices, or why there is none."""
        resolved = self.space.resolve(idx)
        if isinstance(resolved, Skip):
            return resolved
        parts = {
            "stem": self.defaults["stem"],
            "norm": self.defaults["norm"],
            "head": self.defaults["head"],
        }
        pids = {"stem": _NO_STEM, "head": _NO_HEAD, "norm": _NO_NORM}
        stages, stage_pids, note = [], [], None
        for line, (pid, part, line_note) in zip(self.space.lines, resolved):
            note = note or line_note
            if line.kind in ("stages", "stage"):
                stages.extend(part)
                stage_pids.extend((pid, j) for j in range(len(part)))
            else:
                parts[line.kind] = part
                pids[line.kind] = pid
        parts["stages"] = tuple(stages)
        key = tuple(r[0] for r in resolved)

        total = [0, 0, 0, 0, 0]
        shape = tuple(parts["input"])
        hit = self._cost(("stem", pids["stem"], 0, shape), lambda: _stem_cost(parts["stem"], shape))
        if isinstance(hit, Skip):
            return hit
        shape = _add(total, hit)
        for gi, (stage, (pid, _)) in enumerate(zip(stages, stage_pids)):
            hit = self._cost(
                ("stage", pid, gi, shape),
                lambda st=stage, s=shape, i=gi: _stage_cost(st, s, i),
            )
            if isinstance(hit, Skip):
                return hit
            shape = _add(total, hit)
        classes = parts["classes"]
        hit = self._cost(
            ("head", pids["head"], classes, shape),
            lambda: _head_cost(parts["head"], shape, classes),
        )
        if isinstance(hit, Skip):
            return hit
        _add(total, hit)
        return Candidate(tuple(idx), key, Cost(*total), parts, note)

    def _cost(self, key, compute):
        hit = self._costs.get(key)
        if hit is None:
            try:
                hit = compute()
            except CsnError as err:
                hit = Skip(err.message)
            self._costs[key] = hit
        return hit


def _add(total: list, hit) -> tuple:
    cost, shape = hit
    for i, v in enumerate(cost):
        total[i] += v
    return shape


def _tuple(cost: Cost) -> tuple:
    return (cost.flops, cost.params, cost.bn_params, cost.interactions, cost.activations)


_HEAD = Head()


def _net(input, stages, stem=(), head=_HEAD, classes=1) -> Network:
    return Network(name="part", input=input, classes=classes, stem=stem, stages=stages, head=head)


def _stem_cost(stem, shape):
    # The stage after the stem is a stand-in: only the stem's own row is read.
    low = lower(_net(shape, (Stage(family=Family.SIMPLE, blocks=1, width=1),), stem=stem))
    return _tuple(analyse(low).stages[0].cost), low.stem.out_shape


def _stage_cost(stage: Stage, shape, index: int):
    try:
        low = lower(_net(shape, (stage,)))
    except CsnError as err:
        # the lone stage is layer1 here; name it as it is in the whole network
        raise CsnError(
            err.message.replace("layer1.", f"layer{index + 1}."), hint=err.hint
        ) from None
    return _tuple(analyse(low).stages[1].cost), low.stages[0].out_shape


def _head_cost(head: Head, shape, classes: int):
    # An identity block (same width, stride 1) stands before the head; only the head row is read.
    identity = Stage(family=Family.SIMPLE, blocks=1, width=shape[0])
    low = lower(_net(shape, (identity,), head=head, classes=classes))
    return _tuple(analyse(low).stages[-1].cost), (classes,)


def network(space: Space, cand: Candidate, name: str | None = None) -> Network:
    """The spec IR of a candidate (named after the space unless `name` is given)."""
    from ..build import validated

    p = cand.parts
    # Whole-network rules (e.g. the total block count) are checked here, with words.
    return validated(
        {
            "name": name or space.name,
            "input": p["input"],
            "classes": p["classes"],
            "norm": p["norm"],
            "stem": p["stem"],
            "stages": p["stages"],
            "head": p["head"],
        },
        {},
    )


def canonical(space: Space, cand: Candidate) -> str:
    """The printer's canonical text of a candidate: what candidates are compared and stored by."""
    return format_spec(network(space, cand))


def text_key(text: str) -> str:
    """The store key of a canonical text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
