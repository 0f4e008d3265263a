"""The baselines of issue 13 against their publishers: the parameter counts each prints (cited
below) and the parameters of each publisher's own model code, built here.

Specs: torchvision's r3d_18, mc3_18, r2plus1d_18 (torchvision/models/video/resnet.py); VMZ's
R(2+1)D-34 and -152 (pt/vmz/models/r2plus1d.py, Conv2Plus1D in pt/vmz/models/utils.py, on
torchvision's VideoResNet); PyTorchVideo's slow_r50, c2d_r50, i3d_r50
(pytorchvideo/models/hub/resnet.py on create_resnet) and r2plus1d_r50
(pytorchvideo/models/hub/r2plus1d.py).

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
| r2plus1d-r50 | 3x16x224x224 | 76.45 GFLOPs x 3 x 10 views | same table, R(2+1)D R50 16x4 | 57.534 |

torchvision's convention is csnspec's own (asserted below); the others are c13's to explain.
"""

from __future__ import annotations

import pytest
from conftest import ROOT

import csnspec
from csnspec.weights.metadata import read_pretrained_cfg

torch = pytest.importorskip("torch")
nn = torch.nn

from peer_imports import pytorchvideo_models, torchvision_video_resnet
from test_weights_peers import check_logits, import_via_cli, randomise

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
    ("r2plus1d-r50", "all", 28.11e6, 0.01e6, f"{PTV_ZOO}: R(2+1)D R50 16x4, Params (M) 28.11"),
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
            midplanes = (in_planes * out_planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * out_planes)
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
    if name == "r2plus1d-r50":
        return pytorchvideo_models("hub.r2plus1d").r2plus1d_r50()
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


# -- weights import: the publishers' models, random weights and BN statistics, give the same
#    logits as the generated model after `csnspec weights import` (tiny but real models) -------

HEAD = "network peer\ninput 3x{t}x32x32\nclasses 5\n"


def tiny_video_resnet(tv, block, makers, stem: list, classes: int = 5) -> nn.Module:
    """torchvision's VideoResNet at an eighth of its widths (8, 16, 32, 64), one block per
    stage: its own __init__ and forward but for the widths, its own _make_layer, blocks and
    conv builders (where the midplanes and stride rules live); `stem` lists the stem's
    (in, out, kernel, stride) convs, each with BN and ReLU, and "pool" for VMZ's max-pool."""
    model = tv.VideoResNet.__new__(tv.VideoResNet)
    nn.Module.__init__(model)
    layers = []
    for conv in stem:
        if conv == "pool":
            layers.append(nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
            continue
        cin, cout, k, s = conv
        pad = tuple(v // 2 for v in k)
        layers += [nn.Conv3d(cin, cout, k, s, pad, bias=False), nn.BatchNorm3d(cout), nn.ReLU()]
    model.stem = nn.Sequential(*layers)
    model.inplanes = 8
    for i, (planes, stride) in enumerate(((8, 1), (16, 2), (32, 2), (64, 2)), start=1):
        setattr(model, f"layer{i}", model._make_layer(block, makers[i - 1], planes, 1, stride))
    model.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
    model.fc = nn.Linear(64 * block.expansion, classes)
    for m in model.modules():  # VideoResNet's own conv init
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


def tiny_torchvision(kind: str):
    """(model, source, spec text): torchvision's r3d / mc3 / r2plus1d (BasicBlock and
    torchvision's midplanes), or VMZ's R(2+1)D bottleneck (its own midplanes, a stem max-pool,
    BN eps 1e-3), at the widths of `tiny_video_resnet`."""
    tv = torchvision_video_resnet()
    if tv is None:
        pytest.skip("torchvision is not installed")
    basic_stem = [(3, 8, (3, 7, 7), (1, 2, 2))]
    r2plus1d_stem = [(3, 6, (1, 7, 7), (1, 2, 2)), (6, 8, (3, 1, 1), (1, 1, 1))]
    source, norm = "torchvision", ""
    if kind == "r3d":
        model = tiny_video_resnet(tv, tv.BasicBlock, [tv.Conv3DSimple] * 4, basic_stem)
        stages = "stages simple x [1,1,1,1]"
    elif kind == "mc3":
        makers = [tv.Conv3DSimple] + [tv.Conv3DNoTemporal] * 3
        model = tiny_video_resnet(tv, tv.BasicBlock, makers, basic_stem)
        kernels = "[3x3x3,1x3x3,1x3x3,1x3x3]"
        stages = (
            f"stages simple kernel-a={kernels} kernel-b={kernels} x [1,1,1,1] "
            "strides=[1x1x1,1x2x2,1x2x2,1x2x2]"
        )
    elif kind == "r2plus1d":
        model = tiny_video_resnet(tv, tv.BasicBlock, [tv.Conv2Plus1D] * 4, r2plus1d_stem)
        stages = "stages simple factorize=2+1d mid=matched-block x [1,1,1,1]"
    else:  # VMZ's r2plus1d_152, Bottleneck blocks with VMZ's Conv2Plus1D
        with torch.device("meta"):
            vmz_conv = type(vmz_r2plus1d(tv, 152).layer1[0].conv2[0])
        model = tiny_video_resnet(tv, tv.Bottleneck, [vmz_conv] * 4, [*r2plus1d_stem, "pool"])
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.eps = 1e-3
        source, norm = "vmz", "norm batchnorm eps=1e-3\n"
        stages = "stages bottleneck factorize=2+1d mid=matched x [1,1,1,1]"
    stem = ", ".join(
        "maxpool 1x3x3 stride=1x2x2"
        if c == "pool"
        else f"conv {'x'.join(map(str, c[2]))} out={c[1]}"
        + (" stride=1x2x2" if c[3] != (1, 1, 1) else "")
        for c in model_stem(kind, basic_stem, r2plus1d_stem)
    )
    widths = "widths=[8,16,32,64]"
    stages = stages.replace(" x [1,1,1,1]", " x [1,1,1,1] " + widths)
    return model, source, f"{HEAD.format(t=4)}{norm}stem {stem}\n{stages}\n"


def model_stem(kind, basic_stem, r2plus1d_stem) -> list:
    if kind in ("r3d", "mc3"):
        return basic_stem
    return r2plus1d_stem + (["pool"] if kind.startswith("vmz") else [])


def tiny_pytorchvideo(kind: str):
    """(model, source, spec text): PyTorchVideo's i3d_r50 / slow_r50 / c2d_r50 / r2plus1d_r50 builders
    with 8 stem channels (every width scales with it), 5 classes, a 32x32 clip."""
    resnet = pytorchvideo_models("resnet")
    if kind == "r2plus1d":
        model = pytorchvideo_models("r2plus1d").create_r2plus1d(
            stem_dim_out=8, model_num_class=5, head_pool_kernel_size=(2, 1, 1), head_activation=None
        )
        spec = (
            f"{HEAD.format(t=8)}stem conv 1x7x7 out=8 stride=1x2x2\n"
            "stages bottleneck factorize=1+2d x [3,4,6,3] widths=[8,16,32,64] "
            "strides=[1x2x2,1x2x2,2x2x2,2x2x2]\nhead avgpool 2x1x1, fc\n"
        )
        return model, "pytorchvideo", spec
    options = {
        "i3d": {
            "stem_conv_kernel_size": (5, 7, 7),
            "stage1_pool": nn.MaxPool3d,
            "stage_conv_a_kernel_size": (
                (3, 1, 1),
                [(3, 1, 1), (1, 1, 1)],
                [(3, 1, 1), (1, 1, 1)],
                [(1, 1, 1), (3, 1, 1)],
            ),
            "head_pool_kernel_size": (2, 1, 1),
        },
        "slow": {"stem_conv_kernel_size": (1, 7, 7), "head_pool_kernel_size": (4, 1, 1)},
        "c2d": {
            "stem_conv_kernel_size": (1, 7, 7),
            "stage1_pool": nn.MaxPool3d,
            "stage_conv_a_kernel_size": ((1, 1, 1),) * 4,
            "head_pool_kernel_size": (2, 1, 1),
        },
    }[kind]
    model = resnet.create_resnet(stem_dim_out=8, model_num_class=5, **options)
    kernel_a = {
        "i3d": "[3x1x1,3x1x1/1x1x1,3x1x1/1x1x1,1x1x1/3x1x1]",
        "slow": "[1x1x1,1x1x1,3x1x1,3x1x1]",
        "c2d": "1x1x1",
    }[kind]
    stem = {"i3d": "5x7x7", "slow": "1x7x7", "c2d": "1x7x7"}[kind]
    pools = " pools=[2x1x1,none,none,none]" if kind in ("i3d", "c2d") else ""
    window = {"i3d": "2x1x1", "slow": "4x1x1", "c2d": "2x1x1"}[kind]
    spec = (
        f"{HEAD.format(t=4)}stem conv {stem} out=8 stride=1x2x2, maxpool 1x3x3 stride=1x2x2\n"
        f"stages bottleneck kernel-a={kernel_a} kernel-b=1x3x3 x [3,4,6,3] "
        f"widths=[8,16,32,64] strides=[1x1x1,1x2x2,1x2x2,1x2x2]{pools}\n"
        f"head avgpool {window}, dropout 0.5, fc\n"
    )
    return model, "pytorchvideo", spec


@pytest.mark.parametrize(
    "publisher,kind",
    [
        ("torchvision", "r3d"),
        ("torchvision", "mc3"),
        ("torchvision", "r2plus1d"),
        ("torchvision", "vmz-r2plus1d-152"),
        ("pytorchvideo", "i3d"),
        ("pytorchvideo", "slow"),
        ("pytorchvideo", "c2d"),
        ("pytorchvideo", "r2plus1d"),
    ],
)
def test_imported_weights_give_the_publishers_logits(publisher, kind, tmp_path):
    build = tiny_torchvision if publisher == "torchvision" else tiny_pytorchvideo
    model, source, text = build(kind)
    model = randomise(model, seed=13)
    t = csnspec.parse(text).input[1]
    x = torch.randn(2, 3, t, 32, 32, generator=torch.Generator().manual_seed(5))
    # Random BN statistics can leave logits in the tens, where float32's own rounding across
    # the network exceeds 1e-5: the classifier is scaled so that they are of order one, and a
    # 1e-5 match means the same thing for every model.
    fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        scale = model(x).abs().max()
        fc.weight /= scale
        fc.bias /= scale
        reference = model(x)
    assert 0.5 < reference.abs().max() < 2
    checkpoint = tmp_path / "peer.pth"
    state = model.state_dict()
    torch.save({"model_state": state} if source == "pytorchvideo" else state, checkpoint)
    net, tensors, out = import_via_cli(tmp_path, source, checkpoint, text)
    assert len(tensors) == len(state)
    if source == "pytorchvideo":
        # PyTorchVideo's model zoo (docs/source/model_zoo.md) samples a 64-frame window:
        # Slow R50 4x16, C2D/I3D/Slow R50 8x8, R(2+1)D R50 16x4; the clip here is t frames
        assert (t, read_pretrained_cfg(out)["sampling_rate"]) in ((4, 16), (8, 8))
        assert read_pretrained_cfg(out)["frames"] == t
    check_logits(csnspec.lower(net), out, tensors, reference, x, tmp_path)


def test_vmz_caffe2_r2plus1d_blobs(tmp_path):
    """VMZ's model zoo ships R(2+1)D as Caffe2 pickles: the stem's `conv1_middle` (1x7x7) and
    `conv1` (3x1x1), each factorized conv j of block n as `comp_n_conv_j_middle` (spatial, with
    `comp_n_spatbn_j_middle`) then `comp_n_conv_j` (temporal, with `comp_n_spatbn_j`): VMZ's
    video_model.py add_conv(is_decomposed=True), as ig65m-pytorch's convert.py reads them."""
    import pickle

    model, _, text = tiny_torchvision("vmz-r2plus1d-152")
    model = randomise(model, seed=7)
    blobs = {}

    def put(module, name):
        if isinstance(module, nn.BatchNorm3d):
            for field, attr in (("s", "weight"), ("b", "bias"), ("rm", "running_mean")):
                blobs[f"{name}_{field}"] = getattr(module, attr).detach().numpy().copy()
            blobs[f"{name}_riv"] = module.running_var.detach().numpy().copy()
        else:
            blobs[f"{name}_w"] = module.weight.detach().numpy().copy()

    put(model.stem[0], "conv1_middle")
    put(model.stem[1], "conv1_middle_spatbn_relu")
    put(model.stem[3], "conv1")
    put(model.stem[4], "conv1_spatbn_relu")
    for n, block in enumerate(b for i in range(1, 5) for b in getattr(model, f"layer{i}")):
        put(block.conv1[0], f"comp_{n}_conv_1")
        put(block.conv1[1], f"comp_{n}_spatbn_1")
        pair = block.conv2[0]  # Conv2Plus1D: conv, BN, ReLU, conv
        put(pair[0], f"comp_{n}_conv_2_middle")
        put(pair[1], f"comp_{n}_spatbn_2_middle")
        put(pair[3], f"comp_{n}_conv_2")
        put(block.conv2[1], f"comp_{n}_spatbn_2")
        put(block.conv3[0], f"comp_{n}_conv_3")
        put(block.conv3[1], f"comp_{n}_spatbn_3")
        if block.downsample is not None:
            put(block.downsample[0], f"shortcut_projection_{n}")
            put(block.downsample[1], f"shortcut_projection_{n}_spatbn")
    blobs["last_out_L5_w"] = model.fc.weight.detach().numpy().copy()
    blobs["last_out_L5_b"] = model.fc.bias.detach().numpy().copy()
    checkpoint = tmp_path / "r2plus1d.pkl"
    with checkpoint.open("wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    net, tensors, out = import_via_cli(tmp_path, "vmz", checkpoint, text)
    assert tensors["stem.conv2.weight"].shape == (8, 6, 3, 1, 1)
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = model(x)
    check_logits(csnspec.lower(net), out, tensors, reference, x, tmp_path)
