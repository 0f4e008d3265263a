"""Hypothesis strategies for random valid networks (spec IR), shared by the property tests.

`networks(small=True)` keeps clips and widths small enough to run both backends on CPU.
"""

from __future__ import annotations

import keyword

from hypothesis import assume
from hypothesis import strategies as st

from csnspec.errors import CsnError
from csnspec.lowering import lower
from csnspec.spec import Family, Head, HeadConv, Network, Norm, Stage, StemConv, StemPool

STRIDES = [(1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 1, 1)]
KERNELS = [(1, 1, 1), (3, 1, 1), (1, 3, 3), (3, 3, 3), (3, 3, 1)]
POOLS = [(2, 1, 1), (1, 2, 2), (2, 2, 2)]
# network names; Python keywords (`if`, `in`...) are refused by the spec IR, so never drawn
NAMES = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4}){0,2}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n.replace("-", "_"))
)


@st.composite
def stages_(draw, small: bool):
    n = draw(st.integers(1, 4 if small else 5))
    shared = draw(st.booleans())
    max_blocks = 2 if small else 4
    widths = [8, 16, 24, 32] if small else [8, 16, 32, 64, 96, 128]

    def block_options(fam: Family) -> dict:
        opts: dict = {"family": fam, "factorize": draw(st.sampled_from(["3d", "2+1d", "1+2d"]))}
        if fam in (Family.SIMPLE, Family.BOTTLENECK) and opts["factorize"] != "3d":
            opts["mid"] = draw(st.sampled_from(["out", "matched", "matched-block"]))
        if fam.uses_groups:
            opts["groups"] = draw(st.sampled_from([1, 2, 4, 8]))
        if fam.is_bottleneck:
            opts["expansion"] = draw(st.integers(1, 4))
            opts["stride_at"] = draw(st.sampled_from(["middle", "first"]))
        if fam is Family.X3D:
            opts["expansion"] = draw(st.sampled_from([1, 2.25, 3.5]))
        if fam.has_conv_b:  # squeeze-excitation (none, every block, every other) and act-b
            opts["se"] = draw(st.sampled_from([(0,), (0.25,), (0.0625, 0), (0, 0.5)]))
            opts["act_b"] = draw(st.sampled_from(["relu", "swish"]))
        if fam is Family.BOTTLENECK_IP:
            opts["ip_relu"] = draw(st.booleans())
        if fam is Family.SIMPLE_D:
            opts["project"] = draw(st.booleans())
        return opts

    def kernels():
        # the family's default, one kernel, or an alternation over the blocks
        return draw(st.none() | st.lists(st.sampled_from(KERNELS), min_size=1, max_size=2))

    common = block_options(draw(st.sampled_from(list(Family))))
    out = []
    for _ in range(n):
        opts = common if shared else block_options(draw(st.sampled_from(list(Family))))
        out.append(
            Stage(
                blocks=draw(st.integers(1, max_blocks)),
                width=draw(st.sampled_from(widths)),
                stride=draw(st.sampled_from(STRIDES)),
                kernel_a=kernels(),
                kernel_b=kernels(),
                pool=draw(st.none() | st.none() | st.sampled_from(POOLS)),
                **opts,
            )
        )
    return tuple(out)


@st.composite
def stems(draw, small: bool):
    kind = draw(st.sampled_from(["default", "none", "conv", "conv+pool", "x3d"]))
    if kind == "none":
        return ()
    if kind == "x3d":  # X3D's stem: a spatial conv without BN, then a channel-wise temporal conv
        out = draw(st.sampled_from([8, 12]))
        return (
            StemConv(kernel=(1, 3, 3), out=out, stride=(1, 2, 2), padding=(0, 1, 1), norm=False),
            StemConv(kernel=(3, 1, 1), out=out, padding=(1, 0, 0), groups=out),
        )
    out = draw(st.sampled_from([8, 16, 32]))
    if kind == "default" and not small:
        out = 64
    kt = draw(st.sampled_from([1, 3]))
    ks = draw(st.sampled_from([3, 5, 7]))
    layers = [
        StemConv(
            kernel=(kt, ks, ks),
            out=out,
            stride=draw(st.sampled_from([(1, 2, 2), (1, 1, 1)])),
            padding=(kt // 2, ks // 2, ks // 2),
        )
    ]
    if kind in ("default", "conv+pool"):
        layers.append(StemPool(kernel=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
    return tuple(layers)


@st.composite
def networks(draw, small: bool = True) -> Network:
    """A random network that lowers without error."""
    if small:
        clip = (3, draw(st.integers(1, 6)), draw(st.integers(8, 32)), draw(st.integers(8, 32)))
    else:
        clip = (
            draw(st.sampled_from([1, 2, 3])),
            draw(st.integers(1, 16)),
            draw(st.integers(16, 224)),
            draw(st.integers(16, 224)),
        )
    head_convs = st.lists(
        st.builds(
            HeadConv, kernel=st.just((1, 1, 1)), out=st.sampled_from([8, 16]), norm=st.booleans()
        ),
        max_size=1,
    ).map(tuple)
    head = Head(
        convs=draw(head_convs),
        window=draw(st.none() | st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2))),
        post_convs=draw(head_convs),
        dropout=draw(st.sampled_from([0.0, 0.0, 0.25, 0.5])),
    )
    net = Network(
        name=draw(NAMES),
        input=clip,
        classes=draw(st.integers(1, 12)),
        norm=Norm(
            eps=draw(st.sampled_from([1e-5, 1e-3])),
            momentum=draw(st.sampled_from([0.1, 0.01, 0.5])),
        ),
        stem=draw(stems(small)),
        stages=draw(stages_(small)),
        head=head,
    )
    try:
        lower(net)
    except CsnError:
        assume(False)
    return net
