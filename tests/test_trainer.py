"""The trainer's settings and recipes: defaults from the spec's input clip, the paper's preset,
config files that reproduce a run, and what clipping, freezing and the EMA do to the weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from train_support import SPEC, read_json, short_run, synth_data

from csnspec.cli import main
from csnspec.errors import CsnError
from csnspec.train import config

torch = pytest.importorskip("torch")


def test_scale_follows_the_crop_as_in_the_paper():
    # Tran et al. 2019, section 4.1: short side jittered in 256-320 for 224 crops.
    assert config.default_scale(224) == (256, 320)
    assert config.default_scale(112) == (128, 160)
    cfg = config.build({"spec": "s", "train": "t"}, spec_clip=(16, 112))
    assert (cfg.clip.frames, cfg.clip.crop) == (16, 112)
    assert (cfg.clip.scale_min, cfg.clip.scale_max, cfg.clip.test_scale) == (128, 160, 128)
    explicit = config.build({"spec": "s", "train": "t", "crop": 96, "scale": [100, 120]}, (8, 112))
    assert explicit.clip.crop == 96 and explicit.clip.scale_min == 100
    with pytest.raises(CsnError, match="--scale 100 120"):
        config.check(config.build({"spec": "s", "train": "t", "crop": 112, "scale": [100, 120]}))


def test_weights_metadata_beats_the_spec_and_flags_beat_both(caplog):
    pre = {"frames": 32, "crop": 224, "mean": [0.45, 0.45, 0.45]}
    cfg = config.build({"spec": "s", "train": "t"}, (8, 112), pre)
    assert (cfg.clip.frames, cfg.clip.crop, cfg.clip.scale_max) == (32, 224, 320)
    assert cfg.clip.mean == (0.45, 0.45, 0.45)
    cfg = config.build({"spec": "s", "train": "t", "frames": 8}, (8, 112), pre)
    assert cfg.clip.frames == 8 and "--frames 8 differs from the initial weights' 32" in caplog.text
    # MMAction2's names and its 0-255 ImageNet mean/std
    mm = {"clip_len": 32, "frame_interval": 2, "mean": [123.675, 116.28, 103.53],
          "std": [58.395, 57.12, 57.375]}  # fmt: skip
    cfg = config.build({"spec": "s", "train": "t"}, (8, 112), mm)
    assert (cfg.clip.frames, cfg.clip.rate, cfg.clip.crop) == (32, 2, 112)
    assert cfg.clip.mean == pytest.approx((0.485, 0.456, 0.406))
    assert cfg.clip.std == pytest.approx((0.229, 0.224, 0.225))


def test_the_csn_kinetics_recipe_is_section_4_1():
    base = {"spec": "s", "train": "t"}
    s = config.merge(config.recipe_settings("csn-kinetics"), base)
    cfg = config.build(s)
    assert (cfg.momentum, cfg.weight_decay) == (0.9, 1e-4)
    assert (cfg.epochs, cfg.warmup_epochs) == (45, 10)
    assert (cfg.clip.frames, cfg.clip.rate, cfg.clip.crop) == (8, 2, 224)
    assert (cfg.clip.scale_min, cfg.clip.scale_max) == (256, 320)
    assert (cfg.clip.clips, cfg.clip.crops) == (10, 1)  # 10 center-crop clips a video
    assert cfg.lr == pytest.approx(0.01)  # 0.01 per 8-clip batch
    wide = config.build(config.merge(config.recipe_settings("csn-kinetics"), {**s, "batch": 512}))
    assert wide.lr == pytest.approx(0.64)  # the paper's 64 GPUs x 8 clips
    cfg32 = config.build(config.merge(config.recipe_settings("csn-kinetics-32"), base))
    assert (cfg32.clip.frames, cfg32.clip.rate) == (32, 2)
    flags = config.merge(config.recipe_settings("csn-kinetics"), {**s, "lr": 0.1, "crop": 112})
    mine = config.build(flags)
    assert mine.lr == 0.1 and mine.clip.crop == 112 and mine.clip.scale_min == 256
    with pytest.raises(CsnError, match="unknown recipe 'csn'"):
        config.recipe_settings("csn")


def test_config_files_toml_and_yaml(tmp_path, capsys):
    (tmp_path / "a.toml").write_text("lr = 0.05\nweight-decay = 0\nscale = [36, 44]\n")
    (tmp_path / "a.yaml").write_text("lr: 0.05\nweight_decay: 0\nscale: [36, 44]\n")
    want = {"lr": 0.05, "weight_decay": 0, "scale": [36, 44]}
    assert config.read_config_file(tmp_path / "a.toml") == want
    assert config.read_config_file(tmp_path / "a.yaml") == want
    (tmp_path / "bad.toml").write_text("lr = = 1\n")
    (tmp_path / "typo.yaml").write_text("weight_deacy: 0\n")
    for name, words in (("bad.toml", "not a valid TOML file"), ("typo.yaml", "'weight_decay'")):
        code = main(["train", str(SPEC), "--train", "x.csv", "--config", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert code == 2 and f"{tmp_path / name}:" in err and words in err, err


def test_the_saved_config_reproduces_the_run(tmp_path_factory, tmp_path):
    data = synth_data(tmp_path_factory)
    (tmp_path / "run.toml").write_text(
        f'train = "{data / "train.csv"}"\nsteps = 3\nbatch = 4\nworkers = 0\nlr = 0.05\n'
        "progress = false\nseed = 5\n"
    )
    first, again = tmp_path / "first", tmp_path / "again"
    code = main(["train", str(SPEC), "--config", str(tmp_path / "run.toml"), "--out", str(first)])
    assert code == 0
    saved = first / "config.json"
    assert main(["train", "--config", str(saved), "--out", str(again)]) == 0
    a, b = weights(first / "model.safetensors"), weights(again / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert read_json(again / "config.json") == {**read_json(saved), "out": str(again)}


def weights(path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A few steps of training: the weights the runs below start from."""
    data = synth_data(tmp_path_factory)
    out = tmp_path_factory.mktemp("start")
    assert main(short_run(data, out / "run", "--scale", "36", "44")) == 0
    return data, out / "run" / "model.safetensors"


def test_frozen_bn_and_stages_do_not_move(start, tmp_path):
    data, init = start
    out = tmp_path / "run"
    args = ["--init", str(init), "--freeze-bn", "--freeze-stages", "1", "--lr", "0.5"]
    assert main(short_run(data, out, *args)) == 0
    a, b = weights(init), weights(out / "model.safetensors")
    frozen = [k for k in a if k.startswith(("stem.", "layer1.")) or ".bn" in k or "_bn." in k]
    assert "layer1.0.conv_b.weight" in frozen and "layer2.0.bn_a.running_var" in frozen
    assert all(np.array_equal(a[k], b[k]) for k in frozen)
    assert not np.array_equal(a["layer2.0.conv_b.weight"], b["layer2.0.conv_b.weight"])
    assert not np.array_equal(a["head.fc.weight"], b["head.fc.weight"])


def test_clipped_gradients_bound_the_step_and_the_ema_averages(start, tmp_path):
    data, init = start
    out = tmp_path / "run"
    args = ["--init", str(init), "--clip-grad", "1e-3", "--lr", "1", "--momentum", "0",
            "--weight-decay", "0", "--warmup", "1", "--ema", "0.25", "--accum", "2"]  # fmt: skip
    assert main(short_run(data, out, *args, steps=1)) == 0
    a, b = weights(init), weights(out / "model.safetensors")
    params = [k for k in a if not k.endswith(("running_mean", "running_var", "tracked"))]
    moved = np.sqrt(sum(np.sum((b[k].astype(np.float64) - a[k]) ** 2) for k in params))
    assert 0 < moved <= 1e-3 * (1 + 1e-5)  # one step of lr 1 on a gradient clipped to 1e-3
    ema = weights(out / "model_ema.safetensors")
    for k in params:
        np.testing.assert_allclose(ema[k], 0.25 * a[k] + 0.75 * b[k], rtol=1e-6, atol=1e-7)


def test_init_from_weights_of_another_spec_is_one_message(start, tmp_path, capsys):
    data, init = start
    other = tmp_path / "other.csn"
    other.write_text(SPEC.read_text().replace("width=32", "width=24"))
    assert main(short_run(data, tmp_path / "run", "--init", str(init))) == 0
    assert read_json(tmp_path / "run" / "init.json")["reinitialised"] == []  # same classes
    assert read_json(tmp_path / "run" / "config.json")["scale"] == [36, 44]  # from the weights
    args = short_run(data, tmp_path / "bad", "--init", str(init))
    args[1] = str(other)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{init}: the weights do not fit spec 'tiny-ircsn'" in err and "Traceback" not in err
    gone = tmp_path / "gone.safetensors"
    assert main(short_run(data, tmp_path / "none", "--init", str(gone))) == 2
    assert f"{gone}: no such weights file (--init)" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_tensorboard_event_files_hold_the_logged_scalars(start, tmp_path):
    """With `tensorboard` installed, every metrics line and validation also goes to
    RUN/tensorboard (read back with TensorBoard's own reader); metrics.jsonl is unchanged."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data, _ = start
    out = tmp_path / "run"
    extra = ["--log-every", "2", "--val", str(data / "test.csv"), "--val-clips", "1"]
    assert main(short_run(data, out, *extra)) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 4]
    loss = {e.step: e.value for e in events.Scalars("train/loss")}
    assert loss == pytest.approx({r["step"]: r["loss"] for r in rows if "loss" in r})
    (val,) = events.Scalars("val/video_top1")
    assert val.step == 4 and val.value == pytest.approx(rows[-1]["val"]["video_top1"])


class AutocastLog:
    """torch.autocast, recording the (device, dtype, enabled) of every use."""

    def __init__(self):
        self.calls, self.real = [], torch.autocast

    def __call__(self, device_type, dtype=None, enabled=True, **kw):
        self.calls.append((device_type, dtype, enabled))
        return self.real(device_type, dtype=dtype, enabled=enabled, **kw)


def autocast_run(data, tmp_path, monkeypatch, precision: str):
    """One step of the tiny spec on smaller clips with `--amp precision` (PyTorch's CPU bf16 and
    fp16 conv3d are ~10x slower than float32 here: hence the small clip, and float32 by
    default); the run folder and the log of autocast uses."""
    spec = tmp_path / "tinier.csn"
    spec.write_text(SPEC.read_text().replace("input 3x8x32x32", "input 3x4x16x16"))
    out = tmp_path / "run"
    amp = AutocastLog()
    monkeypatch.setattr(torch, "autocast", amp)
    args = short_run(data, out, "--amp", precision, "--scale", "18", "22", "--batch", "2", steps=1)
    args[1] = str(spec)
    assert main(args) == 0
    return out, amp


def test_bf16_autocast_on_the_cpu_trains_and_resumes(start, tmp_path, monkeypatch):
    """bf16 on the CPU when asked."""
    out, amp = autocast_run(start[0], tmp_path, monkeypatch, "bf16")
    assert amp.calls and set(amp.calls) == {("cpu", torch.bfloat16, True)}
    assert read_json(out / "config.json")["amp"] == "bf16"
    assert read_json(out / "summary.json")["precision"] == "bf16"
    assert main(["train", "--resume", str(out), "--steps", "2", "--no-progress"]) == 0
    summary = read_json(out / "summary.json")
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])
    assert len(amp.calls) >= 2 and set(amp.calls) == {("cpu", torch.bfloat16, True)}


def test_fp16_autocast_on_the_cpu_scales_the_loss_and_resumes_with_the_scale(
    start, tmp_path, monkeypatch
):
    """fp16 with torch.amp.GradScaler("cpu") when asked; the scaler's state is checkpointed and
    the resumed run starts from it."""
    from csnspec.train import checkpoint

    out, amp = autocast_run(start[0], tmp_path, monkeypatch, "fp16")
    assert amp.calls and set(amp.calls) == {("cpu", torch.float16, True)}
    assert read_json(out / "summary.json")["precision"] == "fp16"
    _, meta = checkpoint.load(out / "checkpoints" / "last.safetensors")
    assert meta["scaler"]["scale"] == 2.0**16 and meta["scaler"]["_growth_tracker"] == 1
    loaded = []
    real_load = torch.amp.GradScaler.load_state_dict
    monkeypatch.setattr(
        torch.amp.GradScaler,
        "load_state_dict",
        lambda self, state: loaded.append(dict(state)) or real_load(self, state),
    )
    assert main(["train", "--resume", str(out), "--steps", "2", "--no-progress"]) == 0
    assert loaded == [meta["scaler"]]
    _, meta = checkpoint.load(out / "checkpoints" / "last.safetensors")
    assert meta["scaler"]["_growth_tracker"] == 2  # counted on from the first run's
    assert np.isfinite(read_json(out / "summary.json")["final_loss"])


def test_sync_bn_converts_every_batchnorm_under_ddp_and_says_when_it_cannot(caplog):
    from csnspec.train.torch_loop import sync_batchnorm

    def model():
        return torch.nn.Sequential(
            torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4), torch.nn.Sequential(
                torch.nn.Conv3d(4, 4, 1), torch.nn.BatchNorm3d(4)))  # fmt: skip

    synced = sync_batchnorm(model(), world=2, cuda=True)
    kinds = [type(m) for m in synced.modules()]
    assert kinds.count(torch.nn.SyncBatchNorm) == 2 and torch.nn.BatchNorm3d not in kinds
    with pytest.raises(CsnError, match="--sync-bn: PyTorch's SyncBatchNorm runs on CUDA"):
        sync_batchnorm(model(), world=2, cuda=False)
    alone = model()
    assert sync_batchnorm(alone, world=1, cuda=False) is alone
    assert "--sync-bn: one process, nothing to synchronise" in caplog.text
    assert torch.nn.SyncBatchNorm not in [type(m) for m in alone.modules()]


def test_sync_bn_in_one_process_trains_and_says_so(start, tmp_path, caplog, monkeypatch):
    data, _ = start
    amp = AutocastLog()
    monkeypatch.setattr(torch, "autocast", amp)
    assert main(short_run(data, tmp_path / "run", "--sync-bn", steps=1)) == 0
    assert "--sync-bn: one process, nothing to synchronise" in caplog.text
    assert amp.calls and not any(on for _, _, on in amp.calls)  # --amp auto: float32 on the CPU
    assert read_json(tmp_path / "run" / "summary.json")["precision"] == "float32"
