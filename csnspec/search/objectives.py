"""Search objectives: `max:interactions`, `min:flops,max:interactions` (a Pareto front), `trained`.

Analytic objectives read the candidate's exact complexity; `trained` is the video top-1
accuracy (`accuracy`, maximised) that a short training run reports for the candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CsnError, did_you_mean

ANALYTIC = ("flops", "params", "bn_params", "interactions", "activations", "memory")
TRAINED = ("accuracy",)


@dataclass(frozen=True)
class Objective:
    direction: str  # "max" or "min"
    metric: str

    @property
    def trained(self) -> bool:
        return self.metric in TRAINED

    @property
    def text(self) -> str:
        return f"{self.direction}:{self.metric}"

    def sign(self) -> int:
        """+1 where larger is better: values times sign are maximised."""
        return 1 if self.direction == "max" else -1


def parse_objectives(text: str) -> list[Objective]:
    """Read `--objective`; `trained` stands for `max:accuracy`."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            raise CsnError(
                f"--objective has an empty item in '{text}'", hint="e.g. max:interactions,min:flops"
            )
        if item == "trained":
            out.append(Objective("max", "accuracy"))
            continue
        direction, sep, metric = item.partition(":")
        if not sep or direction not in ("max", "min"):
            raise CsnError(
                f"--objective item '{item}' is not `max:METRIC`, `min:METRIC` or `trained`",
                hint="e.g. --objective max:interactions,min:flops",
            )
        metric = metric.replace("-", "_")
        if metric not in ANALYTIC + TRAINED:
            raise CsnError(
                f"unknown quantity '{metric}' in --objective",
                hint=did_you_mean(metric, ANALYTIC + TRAINED)
                or "objectives take: " + ", ".join(ANALYTIC + TRAINED),
            )
        out.append(Objective(direction, metric))
    if len({o.metric for o in out}) != len(out):
        raise CsnError(f"--objective names a quantity twice in '{text}'")
    return out


def cost_metrics(cost) -> dict[str, int]:
    d = cost.as_dict()
    d["memory"] = cost.activation_bytes
    return d


def values(objectives: list[Objective], metrics: dict) -> list[float] | None:
    """The objective values of one record's metrics (None where one is missing)."""
    try:
        return [float(metrics[o.metric]) for o in objectives]
    except (KeyError, TypeError):
        return None


def pareto_front(points: list[list[float]], objectives: list[Objective]) -> list[bool]:
    """Which points no other point dominates (better or equal in all, better in one)."""
    signs = [o.sign() for o in objectives]
    pts = [tuple(v * s for v, s in zip(p, signs)) for p in points]
    order = sorted(range(len(pts)), key=lambda i: pts[i], reverse=True)
    front: list[tuple] = []
    mask = [False] * len(pts)
    if len(objectives) == 2:  # a sweep: O(n log n) for the common case
        best, last = float("-inf"), None
        for i in order:
            if pts[i][1] > best or pts[i] == last:
                mask[i], best, last = True, pts[i][1], pts[i]
        return mask
    # In descending lexicographic order nothing later dominates anything earlier, so a point is
    # on the front when no point already on it dominates it (or equals it: ties stay in).
    for i in order:
        p = pts[i]
        if any(_dominates(q, p) for q in front):
            continue
        front.append(p)
        mask[i] = True
    return mask


def _dominates(a, b) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))
