"""The baselines of issue 13 against their publishers: the parameter counts each prints (cited
below) and the parameters of each publisher's own model code, built here.

Specs: torchvision's r3d_18, mc3_18, r2plus1d_18 (torchvision/models/video/resnet.py); VMZ's
R(2+1)D-34 and -152 (pt/vmz/models/r2plus1d.py, Conv2Plus1D in pt/vmz/models/utils.py, on
torchvision's VideoResNet); PyTorchVideo's slow_r50, c2d_r50, i3d_r50
(pytorchvideo/models/hub/resnet.py on create_resnet).

What each publisher counts: torchvision's `num_params` and PyTorchVideo's "Params (M)" are
every parameter of the model (convs, BN affines, fc): csnspec's params + BN params. VMZ's
"params(M)" is convs and fc (csnspec's params): BN included, R(2+1)D-34 would print 63.7.

FLOPs as printed, for the conventions of `csnspec stats --convention` (helper c13); csnspec's
own count (multiply-adds of convs and fc, `csnspec stats`) beside each:

| spec | input | printed | source | csnspec |
|---|---|---|---|---|
| r3d-18 | 3x16x112x112 | 40.697 GFLOPS | torchvision R3D_18_Weights meta `_ops` | 40.697 |
| mc3-18 | 3x16x112x112 | 43.343 GFLOPS | torchvision MC3_18_Weights meta `_ops` | 43.343 |
| r2plus1d-18 | 3x16x112x112 | 40.519 GFLOPS | torchvision R2Plus1D_18_Weights meta `_ops` | 40.519 |
| r2plus1d-34 | 3x8x112x112 | 49.8 GFLOPs | VMZ tutorials/model_zoo.md, R(2+1)D-34 8x112x112 | 38.089 |
| r2plus1d-34 | 3x32x112x112 | 199.0 GFLOPs | same table, 32x112x112 | (4x: 152.356) |
| r2plus1d-152 | 3x32x112x112 | 329.1 GFLOPs | VMZ README.md / model_zoo.md, R(2+1)D-152 | 64.656 |
| slow-r50 | 3x8x224x224 | 54.52 GFLOPs x 3 x 10 views | PyTorchVideo docs/source/model_zoo.md, Slow R50 8x8 | 41.741 |
| c2d-r50 | 3x8x224x224 | 25.89 GFLOPs x 3 x 10 views | same table, C2D R50 8x8 | 19.493 |
| i3d-r50 | 3x8x224x224 | 37.53 GFLOPs x 3 x 10 views | same table, I3D R50 8x8 | 28.408 |

torchvision's convention is csnspec's own (asserted below); the others are c13's to explain.
"""

from __future__ import annotations

import pytest
from conftest import ROOT

import csnspec

torch = pytest.importorskip("torch")
nn = torch.nn

from peer_imports import pytorchvideo_models, torchvision_video_resnet  # noqa: E402

TV = "torchvision/models/video/resnet.py"
VMZ_ZOO = "VMZ tutorials/model_zoo.md (github.com/facebookresearch/VMZ)"
PTV_ZOO = "PyTorchVideo docs/source/model_zoo.md, Kinetics-400 table"

# spec, what the figure counts ("all": every parameter; "conv+fc"), the figure, its unit
# (the printed precision), the source
PRINTED = [
    ("r3d-18", "all", 33_371_472, 1, f"{TV}: R3D_18_Weights meta num_params"),
    ("mc3-18", "all", 11_695_440, 1, f"{TV}: MC3_18_Weights meta num_params"),
    ("r2plus1d-18", "all", 31_505_325, 1, f"{TV}: R2Plus1D_18_Weights meta num_params"),
    ("r2plus1d-34", "conv+fc", 63.6e6, 0.1e6, f"{VMZ_ZOO}: R(2+1)D-34, params(M) 63.6"),
    ("r2plus1d-152", "conv+fc", 118.0e6, 0.1e6, f"{VMZ_ZOO}: R(2+1)D-152, params(M) 118.0"),
    ("slow-r50", "all", 32.45e6, 0.01e6, f"{PTV_ZOO}: Slow R50 8x8, Params (M) 32.45"),
    ("c2d-r50", "all", 24.33e6, 0.01e6, f"{PTV_ZOO}: C2D R50 8x8, Params (M) 24.33"),
    ("i3d-r50", "all", 28.04e6, 0.01e6, f"{PTV_ZOO}: I3D R50 8x8, Params (M) 28.04"),
]


def spec(name: str):
    return csnspec.load(ROOT / "specs" / f"{name}.csn")


def counted(name: str, what: str = "all") -> int:
    total = csnspec.stats(spec(name)).total
    return total.params + (total.bn_params if what == "all" else 0)


@pytest.mark.parametrize("name,what,figure,unit,source", PRINTED, ids=[p[0] for p in PRINTED])
def test_parameters_equal_the_printed_figure(name, what, figure, unit, source):
    # the printed figure is the count rounded to its last printed digit
    assert round(counted(name, what) / unit) == round(figure / unit), source


@pytest.mark.parametrize(
    "name,gflops",
    # torchvision's weight metadata `_ops` (GFLOPS, 3 decimals): conv and fc multiply-adds
    [("r3d-18", 40.697), ("mc3-18", 43.343), ("r2plus1d-18", 40.519)],
)
def test_torchvision_ops_are_csnspec_multiply_adds(name, gflops):
    assert round(csnspec.stats(spec(name)).total.flops / 1e9, 3) == gflops


# -- the publishers' own model code ------------------------------------------------------------


def vmz_r2plus1d(tv, depth: int) -> nn.Module:
    """VMZ's r2plus1d_34 / r2plus1d_152 (pt/vmz/models/r2plus1d.py): torchvision's VideoResNet
    with VMZ's Conv2Plus1D, which recomputes midplanes from its own input and output widths,
    and for 152 the stem with a max-pool (R2Plus1dStem_Pool, `use_pool1=True`)."""

    class Conv2Plus1D(tv.Conv2Plus1D):
        def __init__(self, in_planes, out_planes, midplanes, stride=1, padding=1):
            midplanes = (in_planes * out_planes * 3 * 3 * 3) // (
                in_planes * 3 * 3 + 3 * out_planes
            )
            super().__init__(in_planes, out_planes, midplanes, stride, padding)

    def stem_pool():
        return nn.Sequential(*tv.R2Plus1dStem(), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))

    block, layers, stem = {
        34: (tv.BasicBlock, [3, 4, 6, 3], tv.R2Plus1dStem),
        152: (tv.Bottleneck, [3, 8, 36, 3], stem_pool),
    }[depth]
    model = tv.VideoResNet(block, [Conv2Plus1D] * 4, layers, stem)
    for m in model.modules():  # "We need exact Caffe2 momentum for BatchNorm scaling"
        if isinstance(m, nn.BatchNorm3d):
            m.eps = 1e-3
    return model


def publisher_model(name: str) -> nn.Module | None:
    """The publisher's model for a spec, or None where its code is not installed."""
    if name in ("slow-r50", "c2d-r50", "i3d-r50"):
        return getattr(pytorchvideo_models("hub.resnet"), name.replace("-", "_"))()
    tv = torchvision_video_resnet()
    if tv is None:
        return None
    if name.startswith("r2plus1d-") and name != "r2plus1d-18":
        return vmz_r2plus1d(tv, int(name.split("-")[1]))
    return getattr(tv, name.replace("-", "_"))()


@pytest.mark.parametrize("name", [p[0] for p in PRINTED])
def test_parameters_equal_the_publishers_model(name):
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = publisher_model(name)
    if model is None:
        pytest.skip("torchvision is not installed")
    assert sum(p.numel() for p in model.parameters()) == counted(name, "all")
