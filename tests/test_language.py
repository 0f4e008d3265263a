"""The language means what the paper says: the issue's four example texts, checked through the
lowered IR, and the defaults of Table 1 (layer shapes at every stage)."""

from __future__ import annotations

import pytest

import csnspec
from csnspec.ops import Conv3d
from csnspec.spec import Family

DG_16_G4 = """\
# bottleneck-DG-16 with 4 groups in its 1x1x1 convolutions (Figure 4d)
network bottleneck-dg-16-g4
input 3x8x224x224
classes 400
stages bottleneck-DG g=4 x [3,4,6,3]
"""

IP_CSN_152 = """\
# ip-CSN-152, spelled out
network ip-csn-152
input 3x32x224x224        # channels x frames x height x width
classes 400
norm batchnorm eps=1e-3 momentum=0.1
stem conv 3x7x7 out=64 stride=1x2x2, maxpool 1x3x3 stride=1x2x2
stages bottleneck-IP x [3,8,36,3] widths=[64,128,256,512] expansion=4
head avgpool, dropout 0.0, fc
"""

MIXED_TINY = """\
# explicit stages mixing families
network mixed-tiny
input 3x16x112x112
classes 10
stem conv 3x7x7 out=32 stride=1x2x2
stage bottleneck-D x 2 width=32 expansion=2
stage bottleneck-DG g=2 x 3 width=64 expansion=2 stride=2x2x2
stage simple-G g=8 x 2 width=128 stride=1x2x2
stage bottleneck-D factorize=2+1d x 2 width=128 expansion=2 stride=2x2x2
head avgpool, fc
"""

RESNET3D_26 = """\
# the 26-layer networks of Table 2 use bottleneck blocks without expansion
network resnet3d-26
input 3x8x224x224
classes 400
stages bottleneck x [2,2,2,2] expansion=1
"""


def convs(block) -> dict[str, Conv3d]:
    """A block's convolutions by their slot: 'conv_a', 'conv_b', ..., 'shortcut_conv'."""
    return {op.name.rsplit(".", 1)[1]: op for op in block.ops if op.kind == "conv3d"}


def kinds(block) -> list[str]:
    return [op.name.rsplit(".", 1)[1] for op in block.ops]


def is_depthwise(conv: Conv3d) -> bool:
    return conv.groups == conv.in_channels == conv.out_channels


# -- the four examples ----------------------------------------------------------------------


def test_dg_groups_exactly_the_two_pointwise_convs():
    net = csnspec.parse(DG_16_G4)
    assert [st.blocks for st in net.stages] == [3, 4, 6, 3]  # 16 blocks
    low = csnspec.lower(net)
    for block in low.blocks():
        c = convs(block)
        assert c["conv_a"].kernel == c["conv_c"].kernel == (1, 1, 1)
        assert c["conv_a"].groups == c["conv_c"].groups == 4
        assert c["conv_b"].kernel == (3, 3, 3) and is_depthwise(c["conv_b"])
        assert c.get("shortcut_conv") is None or c["shortcut_conv"].groups == 1
        assert set(c) <= {"conv_a", "conv_b", "conv_c", "shortcut_conv"}
    # Table 1 widths with expansion 4, and the default stem (conv1 then pool1)
    assert [st.out_shape[0] for st in low.stages] == [256, 512, 1024, 2048]
    assert [op.kind for op in low.stem.ops] == ["conv3d", "batchnorm", "relu", "maxpool"]


def test_ip_csn_152_blocks_have_the_extra_pointwise_conv_and_bn_without_relu():
    net = csnspec.parse(IP_CSN_152)
    assert (net.norm.eps, net.norm.momentum) == (1e-3, 0.1)
    low = csnspec.lower(net)
    blocks = list(low.blocks())
    assert len(blocks) == 50
    for block in blocks:
        names = kinds(block)
        i = names.index("conv_ip")
        # conv_a, BN, ReLU, then the 1x1x1 conv + BN straight into the depthwise 3x3x3 (Figure 2b)
        assert names[i - 3 : i + 3] == ["conv_a", "bn_a", "relu_a", "conv_ip", "bn_ip", "conv_b"]
        assert "relu_ip" not in names
        c = convs(block)
        ip = c["conv_ip"]
        assert ip.kernel == (1, 1, 1) and ip.groups == 1 and ip.in_channels == ip.out_channels
        assert c["conv_b"].kernel == (3, 3, 3) and is_depthwise(c["conv_b"])
    # the stride sits on the depthwise conv of each stage's first block, never on a 1x1x1
    for stage, stride in zip(low.stages, [(1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2)]):
        c = convs(stage.blocks[0])
        assert c["conv_b"].stride == stride
        assert c["conv_a"].stride == c["conv_ip"].stride == (1, 1, 1)
    assert [op.kind for op in low.head.ops] == ["global_avgpool", "linear"]  # dropout 0: no op
    assert low.output_shape == (400,)


def test_ip_csn_152_spelled_out_equals_its_defaults():
    short = "network ip-csn-152\ninput 3x32x224x224\nclasses 400\nnorm batchnorm eps=1e-3\nstages ip-csn x [3,8,36,3]\n"
    assert csnspec.parse(IP_CSN_152) == csnspec.parse(short)


def test_ip_relu_on_adds_the_relu():
    text = IP_CSN_152.replace("expansion=4", "expansion=4 ip-relu=on")
    block = next(csnspec.lower(csnspec.parse(text)).blocks())
    names = kinds(block)
    assert names[names.index("bn_ip") + 1] == "relu_ip"


def test_mixed_tiny_stages_are_what_each_line_says():
    net = csnspec.parse(MIXED_TINY)
    assert [st.family for st in net.stages] == [
        Family.BOTTLENECK_D,
        Family.BOTTLENECK_DG,
        Family.SIMPLE_G,
        Family.BOTTLENECK_D,
    ]
    assert [st.blocks for st in net.stages] == [2, 3, 2, 2]
    low = csnspec.lower(net)
    # stem: conv only (no maxpool once a stem is written), 32 channels, spatial stride 2
    assert [op.kind for op in low.stem.ops] == ["conv3d", "batchnorm", "relu"]
    assert low.stem.out_shape == (32, 16, 56, 56)
    # width x expansion channels, and the strides of each stage line
    assert [st.out_shape for st in low.stages] == [
        (64, 16, 56, 56),
        (128, 8, 28, 28),
        (128, 8, 14, 14),
        (256, 4, 7, 7),
    ]
    s1, s2, s3, s4 = (st.blocks[0] for st in low.stages)
    assert is_depthwise(convs(s1)["conv_b"]) and convs(s1)["conv_a"].groups == 1
    assert convs(s2)["conv_a"].groups == convs(s2)["conv_c"].groups == 2
    assert [(c.kernel, c.groups) for n, c in convs(s3).items() if n != "shortcut_conv"] == [
        ((3, 3, 3), 8),
        ((3, 3, 3), 8),
    ]
    # factorize=2+1d: 1x3x3 (spatial stride) + BN + ReLU, then 3x1x1 (temporal stride), same width
    c4 = convs(s4)
    assert "conv_b" not in c4
    assert (c4["conv_b_s"].kernel, c4["conv_b_s"].stride) == ((1, 3, 3), (1, 2, 2))
    assert (c4["conv_b_t"].kernel, c4["conv_b_t"].stride) == ((3, 1, 1), (2, 1, 1))
    assert c4["conv_b_s"].out_channels == c4["conv_b_t"].in_channels == c4["conv_b_t"].out_channels
    names = kinds(s4)
    assert names[names.index("conv_b_s") + 1 : names.index("conv_b_t")] == ["bn_b_s", "relu_b_s"]
    assert low.head.ops[-1].in_features == 256 and low.output_shape == (10,)


def test_resnet3d_26_has_no_expansion_and_26_layers():
    low = csnspec.lower(csnspec.parse(RESNET3D_26))
    for block in low.blocks():
        c = convs(block)
        assert c["conv_c"].out_channels == c["conv_a"].out_channels == block.params.width
        assert c["conv_b"].groups == 1
    assert [st.out_shape[0] for st in low.stages] == [64, 128, 256, 512]
    # depth = conv1 + 3 per bottleneck + fc (shortcut projections are not counted)
    assert 1 + 3 * len(list(low.blocks())) + 1 == 26


@pytest.mark.parametrize(
    "name, text",
    [
        ("bottleneck-dg-16-g4", DG_16_G4),
        ("ip-csn-152", IP_CSN_152),
        ("mixed-tiny", MIXED_TINY),
        ("resnet3d-26", RESNET3D_26),
    ],
)
def test_examples_match_the_shipped_specs(name, text):
    from conftest import ROOT

    files = {
        "bottleneck-dg-16-g4": "bottleneck-dg-16-g4",
        "ip-csn-152": "ipcsn152",
        "mixed-tiny": "mixed-tiny",
        "resnet3d-26": "resnet3d26",
    }
    shipped = csnspec.load(ROOT / "specs" / f"{files[name]}.csn")
    mine = csnspec.parse(text)
    assert mine.name == name
    # the shipped resnet3d-26 also sets the VMZ BatchNorm eps; nothing else differs
    assert mine == shipped.model_copy(update={"norm": mine.norm})


# -- language details -----------------------------------------------------------------------


def test_family_names_are_case_insensitive_and_aliases_resolve():
    base = "network n\ninput 3x8x112x112\nclasses 4\nstages {} x [1,1]\n"
    assert csnspec.parse(base.format("IR-CSN")).stages[0].family is Family.BOTTLENECK_D
    assert csnspec.parse(base.format("ip-csn")).stages[0].family is Family.BOTTLENECK_IP
    assert csnspec.parse(base.format("Bottleneck-d")).stages[0].family is Family.BOTTLENECK_D
    assert csnspec.parse(base.format("SIMPLE-g g=2")).stages[0].family is Family.SIMPLE_G


def test_stride_at_first_moves_the_stride_to_the_first_pointwise_conv():
    text = "network n\ninput 3x8x112x112\nclasses 4\nstages bottleneck stride-at=first x [1,1]\n"
    block = csnspec.lower(csnspec.parse(text)).stages[1].blocks[0]
    c = convs(block)
    assert c["conv_a"].stride == (2, 2, 2) and c["conv_b"].stride == (1, 1, 1)
    assert c["shortcut_conv"].stride == (2, 2, 2)


def test_simple_d_projection_and_its_absence():
    on = "network n\ninput 3x8x112x112\nclasses 4\nstages simple-D x [1,1]\n"
    block = csnspec.lower(csnspec.parse(on)).stages[1].blocks[0]  # 64 -> 128 channels
    c = convs(block)
    assert (c["conv_p"].kernel, c["conv_p"].in_channels, c["conv_p"].out_channels) == (
        (1, 1, 1),
        64,
        128,
    )
    assert is_depthwise(c["conv_a"]) and is_depthwise(c["conv_b"])
    off = on.replace("simple-D", "simple-D project=off").replace("[1,1]", "[1,1] widths=[64,64]")
    block = csnspec.lower(csnspec.parse(off)).stages[1].blocks[0]
    assert "conv_p" not in convs(block)


def test_stem_none_and_head_window():
    text = (
        "network n\ninput 3x8x32x32\nclasses 4\nstem none\nstages simple x [1] widths=[8]\n"
        "head avgpool 2x3x3, dropout 0.5, fc\n"
    )
    low = csnspec.lower(csnspec.parse(text))
    assert low.stem.ops == () and low.stem.out_shape == (3, 8, 32, 32)
    assert [op.kind for op in low.head.ops] == ["avgpool", "global_avgpool", "dropout", "linear"]
    assert low.head.ops[0].out_shape == (8, 7, 30, 30)
    assert low.head.ops[2].p == 0.5


def test_uneven_sizes_follow_pytorch_floor_arithmetic():
    # 7 -> 4 under stride 2, kernel 3, padding 1: floor((7 + 2 - 3) / 2) + 1
    text = "network n\ninput 3x7x7x7\nclasses 4\nstem none\nstage simple x 1 width=8 stride=2x2x2\n"
    low = csnspec.lower(csnspec.parse(text))
    assert low.stages[0].out_shape == (8, 4, 4, 4)


@pytest.mark.parametrize("name", ["x", "stage", "network", "head", "none", "fc", "simple"])
def test_names_that_are_words_of_the_language(name):
    text = f"network {name}\ninput 3x8x112x112\nclasses 4\nstages simple x [1]\n"
    assert csnspec.parse(text).name == name


def test_comments_blank_lines_crlf_and_no_final_newline():
    text = "\r\n# c\r\n\r\nnetwork n # name\r\n\r\ninput 3x8x112x112\r\nclasses 4\r\nstages simple x [1]"
    net = csnspec.parse(text)
    assert net.name == "n" and net.input == (3, 8, 112, 112)


# -- Table 1: output sizes at every stage ---------------------------------------------------

TABLE_1 = {  # layer: (T, H, W) for T frames at 224x224
    "conv1": lambda t: (t, 112, 112),
    "pool1": lambda t: (t, 56, 56),
    "conv2_x": lambda t: (t, 56, 56),
    "conv3_x": lambda t: (t // 2, 28, 28),
    "conv4_x": lambda t: (t // 4, 14, 14),
    "conv5_x": lambda t: (t // 8, 7, 7),
}


@pytest.mark.parametrize("family", ["simple", "bottleneck", "simple-D", "bottleneck-D", "ip-csn"])
@pytest.mark.parametrize("frames", [8, 32])
def test_table_1_output_sizes(family, frames):
    text = f"network n\ninput 3x{frames}x224x224\nclasses 400\nstages {family} x [2,2,2,2]\n"
    low = csnspec.lower(csnspec.parse(text))
    conv1 = next(op for op in low.stem.ops if op.kind == "conv3d")
    pool1 = next(op for op in low.stem.ops if op.kind == "maxpool")
    got = {"conv1": conv1.out_shape[1:], "pool1": pool1.out_shape[1:]}
    for name, stage in zip(["conv2_x", "conv3_x", "conv4_x", "conv5_x"], low.stages):
        got[name] = stage.out_shape[1:]
    assert got == {k: f(frames) for k, f in TABLE_1.items()}
    # pool5: global average to one vector of 512 (simple) or 2048 (bottleneck) features
    pool5 = next(op for op in low.head.ops if op.kind == "global_avgpool")
    assert pool5.out_shape == ((512,) if "simple" in family else (2048,))
    assert low.output_shape == (400,)
    # filter widths of Table 1
    inner = [64, 128, 256, 512]
    for stage, width in zip(low.stages, inner):
        assert stage.blocks[0].params.width == width
