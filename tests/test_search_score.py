"""The fast scorer equals `csnspec.stats`, and the Figure 7 finding of section 4.4 holds on
candidates expanded from the shipped space files."""

from __future__ import annotations

import random

import pytest

import csnspec
from csnspec.analysis import op_cost
from csnspec.ops import Conv3d
from csnspec.search.expand import Checker, expand
from csnspec.search.score import Candidate, Scorer, canonical
from csnspec.search.space import load_space, parse_space
from tests.conftest import ROOT

SPACES = ROOT / "spaces"

MIXED = """\
space mixed
input choose(3x8x64x64, 3x4x72x72)
classes choose(10,400)
stem conv 3x7x7 out=choose(16,24) stride=1x2x2, maxpool 1x3x3 stride=1x2x2
stage choose(simple, simple-G, simple-D, bottleneck-IP) g=choose(2,4) x choose(1,2) width=choose(16,24) ip-relu=choose(on,off)
stage choose(bottleneck, bottleneck-G, bottleneck-DG) g=choose(2,4,8) x choose(1,2) width=choose(16,32) stride=choose(2x2x2,1x2x2) stride-at=choose(first,middle) factorize=choose(3d,2+1d)
stage choose(simple-D, bottleneck-D) x 1 width=choose(32,48) stride=2x2x2 expansion=choose(1,2) project=choose(on,off)
head avgpool, dropout choose(0.2,0.5), fc
"""


@pytest.mark.parametrize("where", ["per-stage", "csn-x3d", "mixed"])
def test_fast_scorer_equals_stats(where):
    if where == "mixed":
        space = parse_space(MIXED, "mixed")
    else:
        space = load_space(SPACES / f"{where}.space")
    scorer = Scorer(space)
    rng = random.Random(0)
    checked = invalid = 0
    while checked < 60:
        idx = tuple(rng.randrange(len(c)) for c in space.choices)
        cand = scorer.evaluate(idx)
        if not isinstance(cand, Candidate):
            invalid += 1
            text = None
            continue
        text = canonical(space, cand)
        assert scorer.evaluate(idx).cost == csnspec.stats(csnspec.parse(text)).total, text
        checked += 1
    assert invalid < 200


def test_invalid_by_fast_scorer_is_invalid_by_the_parser():
    space = parse_space(
        "space s\ninput 3x8x32x32\nclasses 5\n"
        "stages choose(simple-G, bottleneck-DG) g=choose(2,3,5,8) x [1,1] widths=choose([8,12],[16,24])\n"
    )
    scorer = Scorer(space)
    for idx in space.indices():
        cand = scorer.evaluate(idx)
        fam, g, widths = (space.choices[i].alternatives[j] for i, j in enumerate(idx))
        text = (
            f"network s\ninput 3x8x32x32\nclasses 5\nstages {fam} g={g} x [1,1] widths={widths}\n"
        )
        if isinstance(cand, Candidate):
            assert cand.cost == csnspec.stats(csnspec.parse(text)).total
        else:
            with pytest.raises(csnspec.CsnError, match="does not divide"):
                csnspec.parse(text)
            assert "does not divide" in cand.reason


def test_fast_key_is_the_canonical_text():
    space = parse_space(MIXED, "mixed")
    checker = Checker(space)
    rng = random.Random(1)
    by_text = {}
    for _ in range(300):
        idx = tuple(rng.randrange(len(c)) for c in space.choices)
        _, cand = checker.classify(idx, canonicalise=False)
        if cand is None:
            continue
        text = canonical(space, cand)
        assert by_text.setdefault(text, cand.key) == cand.key


# -- Figure 7: channel interactions of simple-X and bottleneck-X (section 4.4) --------------


def _family(space_file: str) -> dict[str, object]:
    """Each candidate's network, by its `stages` line."""
    space = load_space(SPACES / space_file)
    out = {}
    for cand in expand(space).candidates:
        text = canonical(space, cand)
        out[text.splitlines()[-1].split(" x ")[0].removeprefix("stages ")] = csnspec.parse(text)
    return out


def _interactions(net, kernel=None) -> int:
    low = csnspec.lower(net)
    return sum(
        op_cost(op).interactions
        for op in low.ops()
        if isinstance(op, Conv3d)
        and not op.name.startswith("stem")
        and (kernel is None or op.kernel == kernel)
    )


@pytest.mark.parametrize("depth", [8, 16])
def test_simple_x_interactions_fall_quadratically_with_groups(depth):
    # "the number of channel interactions in simple-X-Y models drops quadratically when group
    # convolution is applied to their 3x3x3 layers" (Figure 7 text)
    nets = _family(f"simple-x-{depth}.space")
    assert set(nets) == {"simple", "simple-D"} | {f"simple-G g={g}" for g in (2, 4, 8, 16, 32)}
    base3 = _interactions(nets["simple"], (3, 3, 3))
    totals = [csnspec.stats(nets["simple"]).total.interactions]
    for g in (2, 4, 8, 16, 32):
        net = nets[f"simple-G g={g}"]
        ratio = _interactions(net, (3, 3, 3)) / base3
        assert 0.4 / g**2 < ratio <= 1 / g**2, (g, ratio)  # ~1/G^2: quadratic in the groups
        totals.append(csnspec.stats(net).total.interactions)
    assert totals == sorted(totals, reverse=True) and len(set(totals)) == len(totals)
    assert totals[2] < totals[0] / 4  # 4 groups: already below a quarter, whole network
    assert _interactions(nets["simple-D"], (3, 3, 3)) == 0  # depthwise: no channel interaction


@pytest.mark.parametrize("depth", [8, 16])
def test_bottleneck_x_interactions_barely_change_until_dg(depth):
    # "the number of channel interactions in bottleneck-X-Y models drops marginally when group
    # convolution is applied to their 3x3x3 ... starts to drop significantly when group
    # convolution is applied to their 1x1x1 layers" (Figure 7 text)
    nets = _family(f"bottleneck-x-{depth}.space")
    total = {k: csnspec.stats(v).total.interactions for k, v in nets.items()}
    base = total["bottleneck"]
    flat = [total[f"bottleneck-G g={g}"] for g in (2, 4, 8, 16, 32)] + [total["bottleneck-D"]]
    # 16 blocks: within a few percent. 8 blocks are Table 2's 26-layer networks (expansion 1),
    # where section 4.2 puts ir-CSN-26 at "about 64% of the original" ResNet3D-26.
    floor = 0.93 if depth == 16 else 0.6
    for value in flat:
        assert floor * base < value < base
    assert flat == sorted(flat, reverse=True)
    for g in (2, 4, 8, 16, 32):
        assert total[f"bottleneck-DG g={g}"] < 0.5 * base  # the sharp drop
    dg = [total[f"bottleneck-DG g={g}"] for g in (2, 4, 8, 16, 32)]
    assert dg == sorted(dg, reverse=True)
    # FLOPs fall all along the bottleneck-X curve, read right to left (Figure 6)
    flops = [
        csnspec.stats(nets[k]).total.flops
        for k in [
            "bottleneck",
            *(f"bottleneck-G g={g}" for g in (2, 4, 8, 16, 32)),
            "bottleneck-D",
            *(f"bottleneck-DG g={g}" for g in (2, 4, 8, 16, 32)),
        ]
    ]
    assert flops == sorted(flops, reverse=True)


def test_bottleneck_keeps_more_interactions_than_simple():
    # Figure 7: the bottleneck-X clusters sit above simple-X once simple-X is grouped
    simple = _family("simple-x-16.space")
    bottleneck = _family("bottleneck-x-16.space")
    b_d = csnspec.stats(bottleneck["bottleneck-D"]).total.interactions
    assert b_d > csnspec.stats(simple["simple"]).total.interactions


@pytest.mark.parametrize(
    "objective", ["max:interactions,min:flops", "min:flops,min:params,max:accuracy"]
)
def test_pareto_front_is_the_non_dominated_set(objective):
    from csnspec.search.objectives import pareto_front, parse_objectives

    objectives = parse_objectives(objective)
    signs = [o.sign() for o in objectives]
    rng = random.Random(0)
    for _ in range(100):
        points = [[rng.randint(0, 9) for _ in objectives] for _ in range(rng.randint(1, 30))]
        scaled = [[v * s for v, s in zip(p, signs)] for p in points]
        dominated = [
            any(all(a >= b for a, b in zip(q, p)) and q != p for q in scaled) for p in scaled
        ]
        assert pareto_front(points, objectives) == [not d for d in dominated]
