"""X3D-XS/S/M/L (`specs/x3d-*.csn`) against what their publishers print and against
PyTorchVideo's real `create_x3d` (installed here with --no-deps), parameter for parameter,
and its weights imported into the generated model, logit for logit.

Published figures, per clip (one view), Kinetics-400:

| model | clip      | PyTorchVideo docs/source/model_zoo.md | PySlowFast MODEL_ZOO.md ("X3D models") |
|-------|-----------|----------------------------------------|----------------------------------------|
| XS    | 4x160x160 | 0.91 GFLOPs, 3.79 M params             | 0.60 GFLOPs, 3.8 M params              |
| S     | 13x160²   | 2.96 GFLOPs, 3.79 M params             | 1.96 GFLOPs, 3.8 M params              |
| M     | 16x224²   | 6.72 GFLOPs, 3.79 M params             | 4.73 GFLOPs, 3.8 M params              |
| L     | 16x312²   | (no row)                               | 18.37 GFLOPs, 6.2 M params             |

(facebookresearch/pytorchvideo docs/source/model_zoo.md, Kinetics-400 table, "Flops (G) x
views" and "Params (M)"; facebookresearch/SlowFast MODEL_ZOO.md, "X3D models" table,
"parameters (M)" and "FLOPs (G)".) PySlowFast's FLOPs are the multiply-adds of the convs,
csnspec's own count without the classifier: with the fc (0.82 M multiply-adds) XS would print
0.61 (605.26 M), without it 0.60 (604.44 M); S, M and L print the same either way. (PySlowFast
applies X3D's fc to a 5-D (N, T, H, W, C) tensor, a matmul the fvcore handlers of its day did
not count.) PyTorchVideo's 0.91 / 2.96 / 6.72 follow another convention (its zoo counts with
fvcore in train mode): reproducing them is `stats --convention`'s job. Parameters include
BatchNorm's affine parameters (PyTorch's `sum(p.numel())`).
"""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT
from peer_imports import pytorchvideo_models
from test_weights_peers import check_logits, import_via_cli, randomise
from torch import nn

import csnspec
from csnspec.analysis import op_cost
from csnspec.weights.layouts import PYTORCHVIDEO_X3D, target_shapes

# spec -> (create_x3d kwargs as pytorchvideo/models/hub/x3d.py builds it, PySlowFast GFLOPs,
#          PySlowFast params (M), PyTorchVideo zoo params (M) or None where it has no row)
PUBLISHED = {
    "x3d-xs": ({"input_clip_length": 4, "input_crop_size": 160}, "0.60", "3.8", "3.79"),
    "x3d-s": ({"input_clip_length": 13, "input_crop_size": 160}, "1.96", "3.8", "3.79"),
    "x3d-m": ({"input_clip_length": 16, "input_crop_size": 224}, "4.73", "3.8", "3.79"),
    "x3d-l": (
        {"input_clip_length": 16, "input_crop_size": 312, "depth_factor": 5.0},
        "18.37",
        "6.2",
        None,
    ),
}


def create_x3d(**kwargs) -> nn.Module:
    """PyTorchVideo's create_x3d (its package imports torchvision, stood in: peer_imports)."""
    return pytorchvideo_models("x3d").create_x3d(**kwargs)


@pytest.fixture(scope="module")
def reports():
    return {name: csnspec.stats(csnspec.load(ROOT / "specs" / f"{name}.csn")) for name in PUBLISHED}


@pytest.mark.parametrize("name", PUBLISHED)
def test_flops_and_params_are_the_published_ones(name, reports):
    _, gflops, slowfast_params, zoo_params = PUBLISHED[name]
    total = reports[name].total
    params = total.params + total.bn_params
    fc = sum(row.cost.flops for row in reports[name].ops if row.kind == "linear")
    assert f"{(total.flops - fc) / 1e9:.2f}" == gflops
    assert f"{params / 1e6:.1f}" == slowfast_params
    if zoo_params is not None:
        assert f"{params / 1e6:.2f}" == zoo_params


# X3D-S and X3D-M are X3D-XS's network on longer, larger clips: the same parameters
@pytest.mark.parametrize("name", ["x3d-xs", "x3d-l"])
def test_params_equal_pytorchvideo_create_x3d(name, reports):
    kwargs = PUBLISHED[name][0]
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = create_x3d(**kwargs)
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    bn_params = sum(p.numel() for m in bn for p in m.parameters())
    total = reports[name].total
    assert total.bn_params == bn_params
    assert total.params == sum(p.numel() for p in model.parameters()) - bn_params
    # and tensor for tensor: every weight of the generated model has PyTorchVideo's shape
    net = csnspec.load(ROOT / "specs" / f"{name}.csn")
    low = csnspec.lower(net)
    names, unsupported = PYTORCHVIDEO_X3D.modules(low, net.classes)
    assert not unsupported
    theirs = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ours = target_shapes(low)
    for key, shape in ours.items():
        op, field = key.rsplit(".", 1)
        assert theirs[f"{names[op]}.{field}"] == shape, key
    assert len(ours) == len(theirs)


# -- weights import: PyTorchVideo's model, random weights, the same logits --------------------

# 2 stages of 2 blocks (SE in the first of each, a strided projection without BN in stage 1,
# one with BN in stage 2), a 4x32x32 clip: the whole X3D structure in a second.
SMALL_SPEC = """network x3d-small
input 3x4x32x32
classes 7
stem conv 1x3x3 out=8 stride=1x2x2 norm=off, conv 5x1x1 out=8 groups=8
stages x3d x [2,2] widths=[8,16] strides=[1x2x2,1x2x2]
head conv 1x1x1 out=36, avgpool 4x4x4, conv 1x1x1 out=32 norm=off, dropout 0.5, fc
"""


def small_x3d() -> nn.Module:
    """create_x3d cut to SMALL_SPEC: its stage loop is fixed at 4 stages, so the model is
    built whole (stem width 8 = round_width(4, 2.0)) and its last two stages dropped."""
    model = create_x3d(
        input_clip_length=4,
        input_crop_size=32,
        model_num_class=7,
        stem_dim_in=4,
        depth_factor=1.0,  # stage depths [1, 2, 5, 3]
        head_dim_out=32,
        head_activation=None,  # logits, not softmax
    )
    blocks = model.blocks
    stage1, stage2 = blocks[1], blocks[2]
    # create_x3d's depth 1 for stage 1: add a second block like stage 1's, without SE
    assert len(stage1.res_blocks) == 1 and len(stage2.res_blocks) == 2
    from pytorchvideo.models.x3d import create_x3d_res_block

    stage1.res_blocks.append(
        create_x3d_res_block(dim_in=8, dim_inner=18, dim_out=8, conv_stride=(1, 1, 1), se_ratio=0.0)
    )
    head = blocks[5]
    head.pool.pre_conv = nn.Conv3d(16, 36, kernel_size=1, bias=False)
    head.pool.pre_norm = nn.BatchNorm3d(36)
    head.pool.pool = nn.AvgPool3d((4, 4, 4), stride=1)
    head.pool.post_conv = nn.Conv3d(36, 32, kernel_size=1, bias=False)
    model.blocks = nn.ModuleList([blocks[0], stage1, stage2, head])
    return model


def test_pytorchvideo_x3d_weights_give_the_same_logits(tmp_path):
    model = randomise(small_x3d(), seed=13)
    with torch.no_grad():  # SE convs have biases; random ones, so a mis-mapped bias shows
        for m in model.modules():
            if isinstance(m, nn.Conv3d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=torch.Generator().manual_seed(3)))
    checkpoint = tmp_path / "x3d.pyth"
    torch.save({"model_state": model.state_dict()}, checkpoint)
    net, tensors, out = import_via_cli(tmp_path, "pytorchvideo", checkpoint, SMALL_SPEC)
    low = csnspec.lower(net)
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(x)
    assert reference.abs().max() > 0.1  # logits of order one: a 1e-5 match means something
    assert tensors["layer1.0.se.reduce.bias"].equal(
        model.state_dict()["blocks.1.res_blocks.0.branch2.norm_b.1.block.0.bias"]
    )
    check_logits(low, out, tensors, reference, x, tmp_path)


def test_squeeze_excitation_counts_as_two_convs_with_bias():
    # fvcore's SqueezeExcitation on C channels reduced to R: conv C -> R and R -> C, 1x1x1,
    # with bias, on the pooled (C, 1, 1, 1) map. X3D-XS layer1.0: C = int(2.25 * 24) = 54,
    # R = round_width(54, 0.0625) = 8 (pytorchvideo/layers/utils.py: 3.375 -> at least 8)
    low = csnspec.lower(csnspec.load(ROOT / "specs" / "x3d-xs.csn"))
    (se,) = [op for op in low.ops() if op.name == "layer1.0.se"]
    c, r = 54, 8
    cost = op_cost(se)
    assert (se.channels, se.reduced) == (c, r)
    assert cost.params == c * r + r + r * c + c
    assert cost.flops == c * r + r * c
    assert cost.interactions == r * (c * (c - 1) // 2) + c * (r * (r - 1) // 2)
    # SE in blocks 1, 3, 5, ... of every stage (create_x3d_res_stage: `(idx + 1) % 2`)
    with_se = [b.name for b in low.blocks() if any(op.kind == "squeeze_excite" for op in b.ops)]
    assert with_se[:4] == ["layer1.0", "layer1.2", "layer2.0", "layer2.2"]
    assert len(with_se) == 2 + 3 + 6 + 4


def test_avgpool_alone_before_head_convs_is_the_whole_map_window():
    # create_x3d sizes its head window to the final map (4x5x5 for XS at 4x160x160), so at the
    # shipped clip `avgpool` alone is the same network; at another clip it stays global
    text = (ROOT / "specs" / "x3d-xs.csn").read_text()
    alone = csnspec.parse(text.replace("avgpool 4x5x5,", "avgpool,"))
    assert csnspec.lower(alone).head.ops == csnspec.lower(csnspec.parse(text)).head.ops
    small = csnspec.lower(alone.with_input((3, 4, 64, 64)))
    (pool,) = [op for op in small.head.ops if op.kind == "avgpool"]
    assert pool.kernel == (4, 2, 2) and pool.out_shape == (432, 1, 1, 1)
