"""Complexity numbers against the paper and published peers (golden values typed in from the
paper's Table 2 and the peers' own documentation, never from csnspec's output), and the
paper's equations (1)-(3) by hand."""

from __future__ import annotations

import pytest
from conftest import ROOT

import csnspec
from csnspec.analysis import op_cost
from csnspec.ops import Conv3d

# Table 2 of the paper: FLOPs x1e9, params x1e6, interactions x1e9, on 3x8x224x224, 400 classes.
TABLE_2 = {
    "resnet3d26": (14.3, 20.4, 0.42),
    "ircsn26": (4.0, 1.7, 0.27),
    "ipcsn26": (5.0, 2.4, 0.42),
    "resnet3d50": (29.5, 46.9, 5.68),
    "ircsn50": (10.6, 13.1, 5.42),
    "ipcsn50": (11.9, 14.3, 5.68),
    "resnet3d101": (44.7, 85.9, 8.67),
    "ircsn101": (14.1, 22.1, 8.27),
    "ipcsn101": (15.9, 24.5, 8.67),
}


def assert_table_2_row(spec: str, row: str) -> None:
    net = csnspec.load(ROOT / "specs" / f"{spec}.csn")
    assert net.input == (3, 8, 224, 224) and net.classes == 400
    total = csnspec.stats(net).total
    flops, params, interactions = TABLE_2[row]
    # printed precision: one decimal, one decimal, two decimals
    assert round(total.flops / 1e9, 1) == flops
    assert round(total.params / 1e6, 1) == params
    assert round(total.interactions / 1e9, 2) == interactions


@pytest.mark.parametrize("spec", sorted(TABLE_2))
def test_table_2(spec):
    assert_table_2_row(spec, spec)


def test_table_2_savings_quoted_in_the_text():
    # section 4.2: "The ir-CSN provides a computational savings of 3.6x"
    def gflops(name):
        return csnspec.stats(csnspec.load(ROOT / "specs" / f"{name}.csn")).total.flops

    assert round(gflops("resnet3d26") / gflops("ircsn26"), 1) == 3.6


# Item 5 of issue 13: the bottleneck-X-8 family of Figure 6 is Table 2's 26-layer base
# architecture. Table 3 names a network by block and number of blocks (ResNet3D-50 is
# bottleneck-16), so the 26-layer ResNet3D (8 blocks x 3 convs + stem + fc) is bottleneck-8;
# Figure 4's caption: bottleneck-D is ir-CSN. Table 2 prints them as ResNet3D-26 and ir-CSN-26.
TABLE_2_AS_FIGURE_6 = {"bottleneck-8": "resnet3d26", "bottleneck-d-8": "ircsn26"}


@pytest.mark.parametrize("spec", sorted(TABLE_2_AS_FIGURE_6))
def test_bottleneck_x_8_is_table_2s_26_layer_network(spec):
    assert_table_2_row(spec, TABLE_2_AS_FIGURE_6[spec])


def test_bottleneck_x_8_interactions_as_figure_7_describes():
    # Section 4.4 on Figure 7: bottleneck-X interactions "drop marginally when group
    # convolution is applied to their 3x3x3" and "start to drop significantly when group
    # convolution is applied to their 1x1x1 layers".
    def pairs(name):
        return csnspec.stats(csnspec.load(ROOT / "specs" / f"{name}.csn")).total.interactions

    base, dg = pairs("bottleneck-8"), pairs("bottleneck-dg-8-g4")
    three = [pairs(n) for n in ("bottleneck-g-8-g8", "bottleneck-g-8-g32", "bottleneck-d-8")]
    assert all(dg < t / 5 for t in three) and all(t > base / 2 for t in three)


# Published parameter counts (400 classes), in millions, at the peers' printed precision.
# conv + fc weights and biases only: VMZ's model zoo table (facebookresearch/VMZ, CSN models:
# ir-CSN-152 29.6 M, ip-CSN-152 32.8 M, printed to one decimal); with BatchNorm's affine
# parameters: mmaction2's CSN README (ir-50 13.13, ir-152 29.70, ip-152 33.02) and
# pytorchvideo's model zoo (ir-101 22.21).
PEERS_WITHOUT_BN = {"ircsn152": 29.6, "ipcsn152": 32.8}
PEERS_WITH_BN = {"ircsn50": 13.13, "ircsn101": 22.21, "ircsn152": 29.70, "ipcsn152": 33.02}


@pytest.mark.parametrize("spec", sorted(PEERS_WITHOUT_BN))
def test_vmz_params(spec):
    total = csnspec.stats(csnspec.load(ROOT / "specs" / f"{spec}.csn")).total
    assert round(total.params / 1e6, 1) == PEERS_WITHOUT_BN[spec]


@pytest.mark.parametrize("spec", sorted(PEERS_WITH_BN))
def test_mmaction2_and_pytorchvideo_params(spec):
    total = csnspec.stats(csnspec.load(ROOT / "specs" / f"{spec}.csn")).total
    assert round((total.params + total.bn_params) / 1e6, 2) == PEERS_WITH_BN[spec]


def test_torchvision_r3d_18():
    # torchvision's R3D_18_Weights.KINETICS400_V1 meta: num_params 33371472 (BN included),
    # _ops 40.697 (GFLOPs as multiply-adds, 16x112x112 clip). r3d_18 is simple-8 with a stem
    # that has no max-pool.
    text = (
        "network r3d-18\ninput 3x16x112x112\nclasses 400\n"
        "stem conv 3x7x7 out=64 stride=1x2x2\nstages simple x [2,2,2,2]\n"
    )
    total = csnspec.stats(csnspec.parse(text)).total
    assert total.params + total.bn_params == 33_371_472
    assert round(total.flops / 1e9, 3) == 40.697
    # params do not depend on the clip, so the shipped simple-8 (with pool1) has the same count
    shipped = csnspec.stats(csnspec.load(ROOT / "specs" / "simple-8.csn")).total
    assert shipped.params + shipped.bn_params == 33_371_472


# -- the paper's equations, by hand ----------------------------------------------------------


def conv(cin, cout, groups=1, kernel=(1, 1, 1), out=(1, 1, 1)):
    return Conv3d(
        name="c",
        in_shape=(cin, *out),
        out_shape=(cout, *out),
        in_channels=cin,
        out_channels=cout,
        kernel=kernel,
        stride=(1, 1, 1),
        padding=(0, 0, 0),
        groups=groups,
    )


@pytest.mark.parametrize("groups, pairs", [(1, 24), (2, 4), (4, 0)])
def test_equation_3_on_figure_1(groups, pairs):
    # Figure 1: 4 input and 4 output channels; conventional, group (2 groups), depthwise
    assert op_cost(conv(4, 4, groups)).interactions == pairs


def test_equations_1_and_2():
    # 3x3x3, 8 -> 16 channels, 2 groups, on a 4x5x6 output: C_out * C_in/G * k^3 (* THW)
    c = op_cost(conv(8, 16, 2, kernel=(3, 3, 3), out=(4, 5, 6)))
    assert c.params == 16 * 4 * 27 == 1728
    assert c.flops == 1728 * 4 * 5 * 6
    assert c.interactions == 16 * (4 * 3 // 2) == 96


def test_a_tiny_network_by_hand():
    # no stem, one simple block 4 -> 4 channels (identity shortcut), 2x2x2 maps, 3 classes
    text = "network t\ninput 4x2x2x2\nclasses 3\nstem none\nstage simple x 1 width=4\n"
    total = csnspec.stats(csnspec.parse(text)).total
    conv_params = 4 * 4 * 27  # each of the two 3x3x3 convs
    assert total.params == 2 * conv_params + (4 * 3 + 3)
    assert total.flops == 2 * conv_params * 8 + 4 * 3
    assert total.interactions == 2 * 4 * 6  # fc excluded
    assert total.bn_params == 2 * (2 * 4)
    # conv, bn, relu, conv, bn, add, relu at 4x2x2x2 = 32 each; pooled 4; logits 3
    assert total.activations == 7 * 32 + 4 + 3


def test_shortcut_projection_counts():
    # one bottleneck block 4 -> 8 channels (width 2, expansion 4) on 1x1x1 maps
    text = "network t\ninput 4x1x1x1\nclasses 2\nstem none\nstage bottleneck x 1 width=2\n"
    report = csnspec.stats(csnspec.parse(text))
    shortcut = next(r for r in report.ops if r.name.endswith("shortcut_conv"))
    assert shortcut.cost.params == 4 * 8
    assert shortcut.cost.interactions == 8 * 6
    # a (4->2), b (2->2, 3x3x3), c (2->8), shortcut (4->8), fc 8->2
    assert report.total.params == 8 + 2 * 2 * 27 + 16 + 32 + 18
    assert report.total.interactions == 2 * 6 + 2 * 1 + 8 * 1 + 8 * 6


def test_rows_sum_to_the_total():
    report = csnspec.stats(csnspec.load(ROOT / "specs" / "mixed-tiny.csn"))
    for by in ("op", "block", "stage"):
        rows = report.rows(by)
        for metric in ("flops", "params", "bn_params", "interactions", "activations"):
            assert sum(getattr(r.cost, metric) for r in rows) == getattr(report.total, metric)
