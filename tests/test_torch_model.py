"""The generated PyTorch models equal their lowered IR: parameters, FLOPs and every op's shape.

FLOPs are measured by torch's own FlopCounterMode (2 FLOPs per multiply-add), independently of
csnspec's analysis. Each spec is built once, at a small clip, on torch's "meta" device: the
model's own code runs and every shape, parameter and FLOP count is exact, but no arithmetic is
done (a 152-layer network takes 15 s on this CPU otherwise). Real CPU runs are tested apart.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from conftest import SPECS
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import csnspec
from csnspec.analysis import op_cost
from csnspec.backends import load_module
from csnspec.ops import BatchNorm, Conv3d, GlobalAvgPool, Linear
from csnspec.weights.layouts import param_ops

CLIP = (
    3,
    4,
    32,
    32,
)  # every spec lowers at this size, or with a head window at its own (PyTorchVideo's)


def generated(path, clip=CLIP):
    net = csnspec.load(path)
    try:
        low = csnspec.lower(net.with_input(clip))
    except csnspec.CsnError:  # a head window made for the spec's own clip (PyTorchVideo's)
        low = csnspec.lower(net)
    return low, load_module(low, "torch")


@pytest.fixture(autouse=True, scope="module")
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


# A stride on the first 1x1x1 conv, simple-D's projection, a head window and dropout: options
# no spec in specs/ uses.
ODD = """network odd
input 3x4x32x32
classes 5
stem conv 1x3x3 out=16 stride=1x2x2
stage simple-D project=on x 2 width=32 stride=1x2x2
stage bottleneck-IP ip-relu=on x 2 width=16 stride-at=first stride=2x2x2
head avgpool 1x2x2, dropout 0.5, fc
"""


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_model_equals_the_ir(path):
    check_against_ir(*generated(path))


def test_optional_layers_equal_the_ir():
    low = csnspec.lower(csnspec.parse(ODD))
    module = load_module(low, "torch")
    check_against_ir(low, module)
    torch.manual_seed(0)
    model = module.build().train()
    model(torch.randn(2, *low.input_shape)).sum().backward()
    assert isinstance(model.head.dropout, nn.Dropout) and model.head.dropout.p == 0.5


def check_against_ir(low, module):
    with torch.device("meta"):
        model = module.build().eval()
    report = csnspec.analyse(low)
    mods = dict(model.named_modules())

    # state-dict keys are exactly the IR's op names plus torch's tensor names
    expected = set()
    for op in param_ops(low.ops()):  # a squeeze-excitation's convs included
        if isinstance(op, Conv3d):
            expected |= {f"{op.name}.weight"} | ({f"{op.name}.bias"} if op.bias else set())
        elif isinstance(op, BatchNorm):
            expected |= {
                f"{op.name}.{k}" for k in ("weight", "bias", "running_mean", "running_var")
            }
            expected.add(f"{op.name}.num_batches_tracked")
        elif isinstance(op, Linear):
            expected |= {f"{op.name}.weight"} | ({f"{op.name}.bias"} if op.bias else set())
    assert set(model.state_dict()) == expected

    # parameters: conv + fc, and BN's affine parameters apart
    weights = sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, (nn.Conv3d, nn.Linear))
        for p in m.parameters()
    )
    bn = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm3d) for p in m.parameters()
    )
    assert (weights, bn) == (report.total.params, report.total.bn_params)

    # every op with a module: its output shape (batch 1 prepended)
    shapes = {}

    def record(name):
        def hook(module, inputs, output):
            shapes[name] = tuple(output.shape)  # returns None: the output is left alone

        return hook

    hooks = [
        mods[op.name].register_forward_hook(record(op.name)) for op in low.ops() if op.kind != "add"
    ]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(torch.randn(1, *low.input_shape, device="meta"))
    for h in hooks:
        h.remove()
    assert out.shape == (1, *low.output_shape)
    for op in low.ops():
        if op.kind == "add":
            continue
        got = shapes[op.name]
        if isinstance(op, GlobalAvgPool):  # AdaptiveAvgPool3d keeps the 1x1x1 axes
            got = got[:2]
        assert got == (1, *op.out_shape), op.name

    # FLOPs per conv and fc layer, keyed by module path, and in total
    counts = counter.get_flop_counts()
    root = type(model).__name__
    for op in low.ops():
        if isinstance(op, (Conv3d, Linear)):
            measured = sum(counts[f"{root}.{op.name}"].values())
            assert measured == 2 * op_cost(op).flops, op.name
    assert counter.get_total_flops() == 2 * report.total.flops


@pytest.mark.parametrize("name", ["ircsn26", "simple-d-8"])
def test_forward_on_cpu(name):
    low, module = generated(next(p for p in SPECS if p.stem == name))
    torch.manual_seed(0)
    with torch.no_grad():
        out = module.build().eval()(torch.randn(2, *CLIP))
    assert out.shape == (2, *low.output_shape) and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def tiny():
    return generated(next(p for p in SPECS if p.stem == "mixed-tiny"))


def test_zero_init_of_the_last_bn_of_each_block(tiny):
    low, module = tiny
    plain = module.build().state_dict()
    zeroed = module.build(zero_init_last_bn=True).state_dict()
    bns = [op for op in low.ops() if isinstance(op, BatchNorm)]
    assert any(op.last for op in bns) and not all(op.last for op in bns)
    for op in bns:
        assert torch.equal(plain[f"{op.name}.weight"], torch.ones(op.channels))
        want = torch.zeros(op.channels) if op.last else torch.ones(op.channels)
        assert torch.equal(zeroed[f"{op.name}.weight"], want), op.name
        assert torch.equal(zeroed[f"{op.name}.bias"], torch.zeros(op.channels))


def test_init_follows_the_public_csn_code(tiny):
    _, module = tiny
    torch.manual_seed(0)
    model = module.build()
    fc = model.head.fc
    assert torch.equal(fc.bias, torch.zeros_like(fc.bias))
    assert 0.005 < fc.weight.std().item() < 0.02
    conv = model.layer1[0].conv_a  # fan_out = out_channels x kernel volume
    std = (2.0 / (conv.out_channels * 1)) ** 0.5
    assert 0.8 * std < conv.weight.std().item() < 1.2 * std


def test_num_classes_changes_only_the_fc(tiny):
    low, module = tiny
    a, b = module.build().state_dict(), module.build(num_classes=7).state_dict()
    assert a.keys() == b.keys()
    changed = {k for k in a if a[k].shape != b[k].shape}
    assert changed == {"head.fc.weight", "head.fc.bias"}
    assert b["head.fc.weight"].shape == (7, low.head.ops[-1].in_features)


def test_trains_on_cpu(tiny):
    _, module = tiny
    torch.manual_seed(0)
    model = module.build(num_classes=3).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(2, *CLIP), torch.tensor([0, 2])
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    before = model.head.fc.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.head.fc.weight)
    assert int(model.stem.bn1.num_batches_tracked) == 1


def test_channels_last_gives_the_same_logits(tiny):
    _, module = tiny
    torch.manual_seed(0)
    model = module.build().eval()
    fast = module.build(channels_last=True).eval()
    fast.load_state_dict(model.state_dict())
    x = torch.randn(2, *CLIP)
    with torch.no_grad():
        want = model(x)
        got = fast(x.to(memory_format=torch.channels_last_3d))
    assert fast.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_load_weights_round_trips_a_safetensors_file(tiny, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    _, module = tiny
    torch.manual_seed(0)
    model = module.build()
    path = tmp_path / "w.safetensors"
    safetensors.save_file(model.state_dict(), str(path))
    torch.manual_seed(1)
    again = module.build(weights=str(path))
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    with pytest.raises(RuntimeError, match="size mismatch"):
        module.load_weights(module.build(num_classes=4), str(path))
