"""Printing and parsing are inverse: format_spec -> parse gives back the same spec IR."""

from __future__ import annotations

import pytest
from conftest import SPECS
from hypothesis import given
from strategies import networks

import csnspec
from csnspec.spec import BLOCK_OPTIONS, Family, Network, Stage


def roundtrip(net: Network) -> None:
    text = csnspec.format_spec(net)
    again = csnspec.parse(text)
    assert again == net, text
    assert csnspec.format_spec(again) == text  # printing is a fixed point
    assert csnspec.stats(again).total == csnspec.stats(net).total


@given(networks(small=False))
def test_random_networks(net):
    roundtrip(net)


@given(networks(small=True))
def test_random_small_networks(net):
    roundtrip(net)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_specs(path):
    net = csnspec.load(path)
    roundtrip(net)


def test_equal_networks_compare_equal_whatever_their_source():
    a = csnspec.parse("network n\ninput 3x8x112x112\nclasses 4\nstages simple x [1,1]\n")
    b = csnspec.parse(
        "# same network, other spelling\nnetwork n\ninput 3x8x112x112\nclasses 4\n"
        "stage SIMPLE x 1 width=64\nstage simple x 1 width=128 stride=2x2x2\nhead avgpool, fc\n"
    )
    assert a == b and hash(a) == hash(b)
    assert a != a.with_input(classes=5)


def test_canonical_text_of_defaults():
    text = (
        "network n\ninput 3x8x224x224\nclasses 400\nnorm batchnorm eps=1e-05 momentum=0.1\n"
        "stem conv 3x7x7 out=64 stride=1x2x2, maxpool 1x3x3 stride=1x2x2\n"
        "stages bottleneck-IP x [3,4,6,3] widths=[64,128,256,512] expansion=4\n"
        "head avgpool, dropout 0, fc\n"
    )
    assert csnspec.format_spec(csnspec.parse(text)) == (
        "network n\ninput 3x8x224x224\nclasses 400\nstages bottleneck-IP x [3,4,6,3]\n"
    )


def test_canonical_text_of_explicit_stages():
    net = csnspec.parse(
        "network m\ninput 4x8x112x112\nclasses 10\nstem none\n"
        "stage simple-D project=off x 1 width=4\n"
        "stage bottleneck-DG g=2 stride-at=first factorize=2+1d x 2 width=8 expansion=2 stride=1x2x2\n"
        "stage ip-csn ip-relu=on x 1 width=16\n"
        "head avgpool 1x2x2, dropout 0.25, fc\n"
    )
    assert csnspec.format_spec(net) == (
        "network m\ninput 4x8x112x112\nclasses 10\nstem none\n"
        "stage simple-D project=off x 1 width=4\n"
        "stage bottleneck-DG g=2 stride-at=first factorize=2+1d x 2 width=8 expansion=2 stride=1x2x2\n"
        "stage bottleneck-IP ip-relu=on x 1 width=16\n"
        "head avgpool 1x2x2, dropout 0.25, fc\n"
    )


def test_stages_built_in_python_get_the_language_defaults():
    built = Stage(family=Family.BOTTLENECK_IP, blocks=2, width=64)
    parsed = csnspec.parse(
        "network n\ninput 3x8x112x112\nclasses 4\nstage bottleneck-IP x 2 width=64\n"
    ).stages[0]
    assert built == parsed
    assert (built.expansion, built.stride_at, built.ip_relu) == (4, "middle", False)
    with pytest.raises(ValueError, match="needs `groups`"):
        Stage(family=Family.SIMPLE_G, blocks=1, width=8)
    with pytest.raises(ValueError, match="`groups=2` means nothing for simple blocks"):
        Stage(family=Family.SIMPLE, blocks=1, width=8, groups=2)


# a value other than the default for each option of spec.BLOCK_OPTIONS, written as in a spec
OTHER_VALUE = {
    "g": "2",
    "expansion": "2",
    "stride-at": "first",
    "kernel-a": "3x1x1/1x1x1",
    "kernel-b": "1x3x3",
    "factorize": "2+1d",
    "mid": "matched",
    "ip-relu": "on",
    "project": "off",
    "se": "0.25",
    "act-b": "swish",
}
# what an option needs written beside it to mean something
BESIDE = {"mid": "factorize=2+1d "}


@pytest.mark.parametrize("option", BLOCK_OPTIONS, ids=[o.key for o in BLOCK_OPTIONS])
def test_every_block_option_is_read_printed_and_refused_where_it_does_not_apply(option):
    # the table is the one place: the parser, Stage, the printer and the search all follow it
    assert set(OTHER_VALUE) == {o.key for o in BLOCK_OPTIONS}
    head = "network n\ninput 3x8x32x32\nclasses 4\n"
    takers = [f for f in Family if option.applies(f)]
    refusers = [f for f in Family if not option.applies(f)]
    family = takers[0]
    needs_g = "" if option.key == "g" or not family.uses_groups else " g=2"
    written = f"{option.key}={OTHER_VALUE[option.key]}"
    beside = BESIDE.get(option.key, "")
    net = csnspec.parse(
        f"{head}stages {family.value}{needs_g} {beside}{written} x [1] widths=[64]\n"
    )
    assert written in csnspec.format_spec(net)
    roundtrip(net)
    for family in refusers:
        with pytest.raises(csnspec.CsnError) as info:
            csnspec.parse(f"{head}stages {family.value} {written} x [1]\n")
        assert info.value.message == f"`{option.key}=` means nothing for {family.value} blocks"
        assert info.value.hint == option.hint


def test_canonical_text_of_alternations_kernels_and_pools():
    head = "network n\ninput 3x8x112x112\nclasses 4\n"
    net = csnspec.parse(
        head + "stages bottleneck kernel-a=[3x1x1/3x1x1, 1x1x1/3x1x1/1x1x1/3x1x1] "
        "kernel-b=[3x3x3,3x3x3] factorize=2+1d mid=out x [2,4] pools=[none, none]\n"
    )
    # the shortest pattern, defaults left out, a per-stage list only where stages differ
    assert csnspec.format_spec(net) == (
        head + "stages bottleneck kernel-a=[3x1x1,1x1x1/3x1x1] factorize=2+1d x [2,4]\n"
    )
    assert [st.kernel_a for st in net.stages] == [((3, 1, 1),), ((1, 1, 1), (3, 1, 1))]
    same = csnspec.parse(
        head + "stage bottleneck kernel-a=3x1x1 factorize=2+1d x 2 width=64\n"
        "stage bottleneck kernel-a=1x1x1/3x1x1 factorize=2+1d x 4 width=128 stride=2x2x2\n"
    )
    assert same == net
    pooled = csnspec.parse(head + "stages simple x [1,1] pools=[2x1x1,none]\n")
    assert csnspec.format_spec(pooled) == head + "stages simple x [1,1] pools=[2x1x1,none]\n"
    assert pooled.stages[0].pool == (2, 1, 1) and pooled.stages[1].pool is None
