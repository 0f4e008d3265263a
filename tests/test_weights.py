"""`csnspec weights import`: safe reading, one error naming every problem, nothing written on
failure. (Equality with the peers' own outputs is in test_weights_peers.py.)"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from test_weights_peers import caffe2_blobs, mmaction_model, vmz_model

import csnspec
from csnspec.cli import main
from csnspec.errors import CsnError
from csnspec.weights import import_checkpoint, map_state, target_shapes

LAYERS = (1, 1, 1, 1)


def spec(family="ir-csn", classes=5, eps="1e-3", layers=LAYERS):
    return csnspec.parse(
        f"network tiny\ninput 3x4x32x32\nclasses {classes}\nnorm batchnorm eps={eps}\n"
        f"stages {family} x [{','.join(map(str, layers))}]\n"
    )


@pytest.fixture(scope="module")
def vmz_state():
    return vmz_model("ir-csn", LAYERS, classes=5).state_dict()


def error_of(state, net, source="vmz") -> str:
    with pytest.raises(CsnError) as err:
        map_state(state, csnspec.lower(net), source, filename="ckpt.pth")
    return str(err.value)


# -- the target: the IR's names and shapes --------------------------------------------------


def test_target_shapes_follow_the_ir():
    shapes = target_shapes(csnspec.lower(csnspec.load("specs/ipcsn152.csn")))
    assert shapes["stem.conv1.weight"] == (64, 3, 3, 7, 7)
    assert shapes["layer1.0.conv_ip.weight"] == (64, 64, 1, 1, 1)
    assert shapes["layer1.0.conv_b.weight"] == (64, 1, 3, 3, 3)  # depthwise: one channel each
    assert shapes["layer4.2.bn_c.num_batches_tracked"] == ()
    assert shapes["layer3.0.shortcut_conv.weight"] == (1024, 512, 1, 1, 1)
    assert shapes["head.fc.weight"] == (400, 2048)
    assert list(shapes)[-1] == "head.fc.bias"


def test_one_schema_for_analysis_import_and_conversion():
    # the parameter count of analysis is the schema's (BN statistics and counts aside), and the
    # importer's target and torch<->flax conversion read the very same names and shapes
    from csnspec.schema import state_dict_schema
    from csnspec.weights.convert import torch_shapes

    low = csnspec.lower(csnspec.parse(TINY))
    schema = state_dict_schema(low)
    total = csnspec.analyse(low).total
    weight_ops = {t.op for t in schema if t.role in ("conv", "fc")}
    params = [t for t in schema if t.op in weight_ops]
    bn_affine = [t for t in schema if t.op not in weight_ops and not t.is_statistic]
    assert sum(math.prod(t.shape) for t in params) == total.params
    assert sum(math.prod(t.shape) for t in bn_affine) == total.bn_params
    assert target_shapes(low) == {t.name: t.shape for t in schema} == torch_shapes(low)


def test_check_fit_names_every_problem():
    import numpy as np

    from csnspec.schema import check_fit

    expected = {"a.weight": (2, 3), "b.weight": (4,)}
    with pytest.raises(csnspec.CsnError) as info:
        check_fit({"a.weight": np.zeros((3, 2)), "c.bias": np.zeros(1)}, expected, "w do not fit n")
    assert str(info.value) == (
        "csnspec: error: w do not fit n: missing: b.weight; unexpected: c.bias; "
        "wrong shape: a.weight (3, 2) (expected (2, 3))"
    )
    check_fit({"a.weight": np.zeros((2, 3)), "b.weight": np.zeros(4)}, expected, "fits")


# -- problems, all named in one error --------------------------------------------------------


def test_missing_extra_and_misshaped_keys_are_listed_together(vmz_state):
    state = dict(vmz_state)
    del state["layer2.0.conv3.1.running_mean"]
    state["layer2.0.conv9.weight"] = torch.zeros(3)
    state["layer3.0.conv1.0.weight"] = torch.zeros(256, 512, 1, 1, 2)
    msg = error_of(state, spec())
    assert "wrong shape (1)" in msg and "missing from the checkpoint (1)" in msg
    assert (
        "layer3.0.conv1.0.weight: [256,512,1,1,2], but layer3.0.conv_a.weight is [256,512,1,1,1]"
        in msg
    )
    assert "layer2.0.conv3.1.running_mean  (for layer2.0.bn_c.running_mean, [512])" in msg
    assert "in the checkpoint but not in the spec (1):\n    layer2.0.conv9.weight  ([3])" in msg


def test_dense_weights_for_a_depthwise_conv_are_named(vmz_state):
    state = dict(vmz_state)
    state["layer1.0.conv2.0.weight"] = torch.zeros(64, 64, 3, 3, 3)
    msg = error_of(state, spec())
    assert (
        "layer1.0.conv2.0.weight: [64,64,3,3,3], but layer1.0.conv_b.weight is [64,1,3,3,3]" in msg
    )
    assert "dense conv" in msg and "groups=64" in msg


def test_class_count_mismatch_suggests_the_classes_line(vmz_state):
    msg = error_of(vmz_state, spec(classes=400))
    assert "fc.weight: [5,2048], but head.fc.weight is [400,2048]" in msg
    assert "write `classes 5`" in msg


def test_caffe2_class_count_is_read_from_the_blob_name(tmp_path):
    blobs = caffe2_blobs(vmz_model("ir-csn", LAYERS, classes=359))
    path = tmp_path / "ig65m.pkl"
    path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    with pytest.raises(CsnError, match=r"write `classes 359`") as err:
        import_checkpoint(path, spec(classes=400), "vmz")
    assert "last_out_L359_w: [359,2048], but head.fc.weight is [400,2048]" in str(err.value)


def test_caffe2_convolutional_prediction_is_a_linear_layer():
    blobs = caffe2_blobs(vmz_model("ir-csn", LAYERS, classes=5))
    state = {k: torch.from_numpy(v) for k, v in blobs.items()}
    state["last_out_L5_w"] = state["last_out_L5_w"].reshape(5, 2048, 1, 1, 1)  # a 1x1x1 conv
    imported = map_state(state, csnspec.lower(spec()), "vmz")
    assert imported.layout.name == "vmz-caffe2"
    assert imported.tensors["head.fc.weight"].equal(torch.from_numpy(blobs["last_out_L5_w"]))


def test_other_block_family_is_recognised(vmz_state):
    ip_state = vmz_model("ip-csn", LAYERS, classes=5).state_dict()
    msg = error_of(ip_state, spec("ir-csn"))
    assert "layer1.0.conv2.0.0.weight  ([64,64,1,1,1])" in msg
    assert "look like bottleneck-IP, the spec's are bottleneck-D" in msg


def test_family_an_implementation_lacks_is_refused(vmz_state):
    msg = error_of(vmz_state, spec("ip-csn"), source="pytorchvideo")
    assert "PyTorchVideo cannot hold spec tiny" in msg
    only = "(only bottleneck, bottleneck-G, bottleneck-D)"
    assert f"has no bottleneck-IP blocks {only}: layer1.0, layer2.0, layer3.0, layer4.0" in msg


def test_backbone_only_checkpoint_is_missing_the_classifier():
    state = mmaction_model("ir", LAYERS, classes=5).state_dict()
    backbone = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    msg = error_of(backbone, spec(), source="mmaction2")
    assert "cls_head.fc_cls.weight  (for head.fc.weight, [5,2048])" in msg
    assert "backbone only" in msg


def test_vmz_layout_that_cannot_be_told_apart(vmz_state):
    msg = error_of({"blocks.0.conv.weight": torch.zeros(1)}, spec())
    assert "cannot tell which VMZ layout" in msg and "--from pytorchvideo" in msg


# -- what is read, and how ------------------------------------------------------------------

EXECUTED = []


def _side_effect():
    EXECUTED.append(True)
    return {}


class Payload:
    def __reduce__(self):
        return (_side_effect, ())


def test_torch_checkpoints_never_run_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Payload()}, path)
    with pytest.raises(CsnError, match="never runs pickled code"):
        import_checkpoint(path, spec(), "vmz")
    assert not EXECUTED


def test_caffe2_pickles_build_numpy_arrays_and_nothing_else(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"blobs": {"conv1_w": Payload()}}, protocol=2))
    with pytest.raises(CsnError, match=r"refusing to load test_weights\._side_effect"):
        import_checkpoint(path, spec(), "vmz")
    assert not EXECUTED
    path.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.array([1, "x"], dtype=object)}}))
    with pytest.raises(CsnError, match="numpy array of Python objects"):
        import_checkpoint(path, spec(), "vmz")


def test_containers_and_data_parallel_prefixes_are_unwrapped(tmp_path, vmz_state):
    path = tmp_path / "wrapped.pth"
    torch.save({"epoch": 1, "model": {f"module.{k}": v for k, v in vmz_state.items()}}, path)
    imported = import_checkpoint(path, spec(), "vmz")
    assert imported.layout.name == "vmz"
    assert imported.tensors["stem.conv1.weight"].equal(vmz_state["stem.0.weight"])


def test_safetensors_input(tmp_path, vmz_state):
    from safetensors.torch import save_file

    path = tmp_path / "vmz.safetensors"
    save_file({k: v.contiguous() for k, v in vmz_state.items()}, path)
    imported = import_checkpoint(path, spec(), "vmz")
    assert len(imported.tensors) == len(vmz_state)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("weights.h5", b"", "unknown checkpoint format '.h5'"),
        ("nothing.pth", None, "no checkpoint file"),
        ("broken.pth", b"not a checkpoint", "not a readable PyTorch checkpoint"),
        ("broken.safetensors", b"\x00\x01", "not a readable safetensors file"),
    ],
)
def test_unreadable_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CsnError, match=message):
        import_checkpoint(path, spec(), "vmz")


def test_checkpoint_that_is_not_a_dict_of_tensors(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"state_dict": {"a": torch.zeros(1), "b": 3}}, path)
    with pytest.raises(
        CsnError, match=r"\['state_dict'\] of the checkpoint is not a dict of tensors: 'b'"
    ):
        import_checkpoint(path, spec(), "vmz")


# -- the command ----------------------------------------------------------------------------


def run_cli(tmp_path, state, net_text, source="vmz"):
    checkpoint = tmp_path / "in.pth"
    torch.save(state, checkpoint)
    spec_path = tmp_path / "net.csn"
    spec_path.write_text(net_text)
    out = tmp_path / "out.safetensors"
    argv = ["weights", "import", "--from", source, str(checkpoint), "--spec", str(spec_path)]
    return main([*argv, "-o", str(out)]), out


TINY = (
    "network tiny\ninput 3x4x32x32\nclasses 5\nnorm batchnorm eps=1e-3\nstages ir-csn x [1,1,1,1]\n"
)


def test_cli_writes_a_strict_state_dict(tmp_path, vmz_state, capsys):
    from safetensors import safe_open

    code, out = run_cli(tmp_path, vmz_state, TINY)
    assert code == 0
    stdout = capsys.readouterr().out
    assert f"{out}: {len(vmz_state)} tensors" in stdout and "VMZ (PyTorch)" in stdout
    with safe_open(out, "pt") as f:
        assert set(f.keys()) == set(target_shapes(csnspec.lower(csnspec.parse(TINY))))
        assert f.metadata()["csnspec.source"] == "vmz"


def test_cli_error_writes_nothing_and_keeps_the_old_file(tmp_path, vmz_state, capsys):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous")
    state = dict(vmz_state)
    del state["fc.bias"]
    code, _ = run_cli(tmp_path, state, TINY)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"{tmp_path / 'in.pth'}: error: the VMZ (PyTorch) checkpoint does not fit"
    )
    assert "fc.bias  (for head.fc.bias, [5])" in err
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pth", "net.csn", "out.safetensors"]


def test_cli_notes_a_batchnorm_eps_the_implementation_does_not_use(tmp_path, vmz_state, capsys):
    code, _ = run_cli(tmp_path, vmz_state, TINY.replace("eps=1e-3", "eps=1e-5"))
    assert code == 0
    assert "note: VMZ (PyTorch) builds BatchNorm with eps=1e-3" in capsys.readouterr().err


def test_architecture_the_weights_cannot_show_is_noted():
    state = vmz_model("ip-csn", LAYERS, classes=5).state_dict()
    net = csnspec.parse(
        "network tiny\ninput 3x4x32x32\nclasses 5\nnorm batchnorm eps=1e-3\n"
        "stages ip-csn x [1,1,1,1] ip-relu=on stride-at=first\n"
    )
    notes = map_state(state, csnspec.lower(net), "vmz").notes
    assert len(notes) == 2
    assert "stages 1, 2, 3, 4 of the spec stride the first 1x1x1 conv" in notes[0]
    assert "no ReLU after the extra 1x1x1 conv" in notes[1] and "`ip-relu=on`" in notes[1]


def test_cli_bad_spec_is_a_spec_error(tmp_path, vmz_state, capsys):
    code, out = run_cli(tmp_path, vmz_state, TINY.replace("ir-csn", "ir-cnn"))
    assert code == 2 and not out.exists()
    assert "net.csn:5:" in capsys.readouterr().err


def test_weights_needs_an_action(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["weights"])
    assert exc.value.code == 2
    assert "ACTION" in capsys.readouterr().err


def test_command_module_does_not_import_torch():
    code = "import sys, csnspec.cli; csnspec.cli.parser(); print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
