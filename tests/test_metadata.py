"""Imported weights carry their source's preprocessing in the safetensors header (issue 11 item 2).

Expected values are the peers' own, cited where they appear:
* VMZ PyTorch, pt/vmz/func/test.py: NormalizeVideo(mean=(0.43216, 0.394666, 0.37645),
  std=(0.22803, 0.22145, 0.216989)) on 0-1 frames; BN eps 1e-3 (pt/vmz/models/utils.py).
* MMAction2 configs/_base_/models/ircsn_r152.py: ImageNet mean [123.675, 116.28, 103.53],
  std [58.395, 57.12, 57.375] on 0-255; SampleFrames clip_len=32, frame_interval=2; Resize(-1, 256),
  ThreeCrop(crop_size=256) in configs/recognition/csn/ircsn_ig65m-pretrained-r152-bnfrozen_*.py.
"""

from __future__ import annotations

import io
import json

import pytest

torch = pytest.importorskip("torch")

from test_weights import LAYERS, spec
from test_weights_peers import mmaction_model, vmz_model

from csnspec.cli import main
from csnspec.errors import CsnError
from csnspec.weights import import_checkpoint
from csnspec.weights.metadata import KEY, clip_defaults, read_pretrained_cfg, resolve


def _import(tmp_path, source, model, classes=5, **kw):
    ckpt = tmp_path / f"{source}.pth"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / f"{source}.safetensors"
    import_checkpoint(ckpt, spec(classes=classes), source, out=out, **kw)
    return out


def test_vmz_weights_record_vmz_preprocessing(tmp_path):
    out = _import(tmp_path, "vmz", vmz_model("ir-csn", LAYERS, classes=5))
    cfg = read_pretrained_cfg(out)
    assert cfg["source"] == "vmz"
    assert cfg["mean"] == [0.43216, 0.394666, 0.37645]
    assert cfg["std"] == [0.22803, 0.22145, 0.216989]
    assert cfg["value_range"] == "0-1"
    assert cfg["bn_eps"] == 1e-3
    assert cfg["num_classes"] == 5 and cfg["class_names"] is None


def test_mmaction2_weights_record_imagenet_in_0_255(tmp_path):
    out = _import(tmp_path, "mmaction2", mmaction_model("ir", LAYERS, classes=5))
    cfg = read_pretrained_cfg(out)
    assert cfg["mean"] == [123.675, 116.28, 103.53] and cfg["value_range"] == "0-255"
    assert (cfg["frames"], cfg["sampling_rate"], cfg["crop"]) == (32, 2, 256)
    assert cfg["short_side_scale"] == 256
    clip = clip_defaults(cfg)
    # ImageNet's mean and std in 0-1 (torchvision's Normalize): 0.485, 0.456, 0.406 / 0.229, ...
    assert clip["mean"] == pytest.approx((0.485, 0.456, 0.406))
    assert clip["std"] == pytest.approx((0.229, 0.224, 0.225), abs=1e-3)
    assert clip["test_scale"] == 256 and clip["rate"] == 2


def test_class_names_are_recorded_through_the_cli(tmp_path, capsys):
    ckpt = tmp_path / "vmz.pth"
    torch.save(vmz_model("ir-csn", LAYERS, classes=5).state_dict(), ckpt)
    spec_path = tmp_path / "tiny.csn"
    spec_path.write_text(
        "network tiny\ninput 3x4x32x32\nclasses 5\nnorm batchnorm eps=1e-3\n"
        "stages ir-csn x [1,1,1,1]\n"
    )
    names = tmp_path / "classes.json"
    names.write_text(json.dumps(["a", "b", "c", "d", "e"]))
    out = tmp_path / "w.safetensors"
    argv = ["weights", "import", "--from", "vmz", str(ckpt), "--spec", str(spec_path)]
    assert main([*argv, "-o", str(out), "--class-names", str(names)]) == 0
    assert read_pretrained_cfg(out)["class_names"] == ["a", "b", "c", "d", "e"]
    names.write_text(json.dumps(["a", "b"]))
    assert main([*argv, "-o", str(tmp_path / "x.safetensors"), "--class-names", str(names)]) == 2
    assert "2 class names for a classifier of 5 classes" in capsys.readouterr().err


def test_conversion_keeps_the_record(tmp_path):
    from csnspec.lowering import lower
    from csnspec.weights.convert import convert_file

    out = _import(tmp_path, "vmz", vmz_model("ir-csn", LAYERS, classes=5))
    low = lower(spec())
    convert_file(low, out, tmp_path / "flax.safetensors")
    assert read_pretrained_cfg(tmp_path / "flax.safetensors") == read_pretrained_cfg(out)


def test_files_without_a_record_and_broken_records(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, plain)
    assert read_pretrained_cfg(plain) is None
    broken = tmp_path / "broken.safetensors"
    save_file({"w": torch.zeros(1)}, broken, metadata={KEY: "{not json"})
    with pytest.raises(CsnError, match=f"unreadable {KEY}") as err:
        read_pretrained_cfg(broken)
    assert str(err.value).startswith(f"{broken}: error:")
    record = {"source": "x", "mean": [0, 0, 0], "std": [1, 0, 1], "value_range": "0-1"}
    save_file({"w": torch.zeros(1)}, broken, metadata={KEY: json.dumps(record)})
    with pytest.raises(CsnError, match="'std' must be three finite numbers above 0"):
        read_pretrained_cfg(broken)


def test_an_explicit_flag_wins_with_a_warning_naming_both():
    err = io.StringIO()
    assert resolve(None, 32, "--frames", stream=err) == 32
    assert resolve(16, 32, "--frames", stream=err) == 16
    assert resolve(16, None, "--frames", stream=err) == 16
    assert resolve((0.45, 0.45, 0.45), [0.45, 0.45, 0.45], "--mean", stream=err) == (0.45,) * 3
    lines = err.getvalue().splitlines()
    assert len(lines) == 1
    assert "--frames 16" in lines[0] and "32" in lines[0] and "metadata" in lines[0]
