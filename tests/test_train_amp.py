"""Mixed precision in the Flax trainer: bf16/fp16 compute over float32 weights, optimiser state and
BatchNorm statistics; fp16's dynamic loss scale follows torch.amp.GradScaler's rules (checked
against torch's own update kernel), skips non-finite steps and survives a resume."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from train_support import SPEC, jax_compile_cache

pytest.importorskip("flax")

import jax
import jax.numpy as jnp
from flax import nnx

from csnspec.train import checkpoint
from csnspec.train import flax_precision as fp


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    """Two steppers here compile the same step: the second reads the first's from disk."""
    with jax_compile_cache(tmp_path_factory.getbasetemp() / "jax-cache-amp"):
        yield


def numpy_init(key, shape, dtype):
    """Weights drawn by numpy from the key's data: no JAX kernel compiled per shape."""
    seed = int(np.asarray(jax.random.key_data(key)).sum())
    return jnp.asarray(np.random.default_rng(seed).normal(0, 0.3, shape), dtype)


class Small(nnx.Module):
    """conv -> BatchNorm -> relu -> mean -> fc on (N, T, H, W, C) clips: compiles in a blink."""

    def __init__(self, num_classes: int, *, rngs: nnx.Rngs):
        init = {"kernel_init": numpy_init, "rngs": rngs}
        self.conv = nnx.Conv(3, 4, kernel_size=(1, 3, 3), use_bias=False, **init)
        self.bn = nnx.BatchNorm(4, momentum=0.9, rngs=rngs)
        self.fc = nnx.Linear(4, num_classes, use_bias=False, **init)

    def __call__(self, x):
        return self.fc(nnx.relu(self.bn(self.conv(x))).mean(axis=(1, 2, 3)))


def small_stepper(amp: str, accum: int = 1, batch: int = 2):
    """A FlaxStepper on `Small` (the stepper needs only these parts of a run)."""
    from csnspec.lowering import lower
    from csnspec.parse import load
    from csnspec.train.config import build
    from csnspec.train.flax_loop import FlaxStepper

    cfg = build({"spec": str(SPEC), "train": "-", "backend": "flax", "amp": amp, "batch": batch,
                 "device": "cpu", "lr": 0.1, "accum": accum})  # fmt: skip
    module = SimpleNamespace(
        build=lambda num_classes, seed: Small(num_classes, rngs=nnx.Rngs(seed))
    )
    run = SimpleNamespace(
        cfg=cfg, low=lower(load(SPEC)), index=SimpleNamespace(classes=["a", "b", "c"]),
        module=lambda: module,
    )  # fmt: skip
    stepper = FlaxStepper(run)
    stepper.begin()
    return stepper


def clips(seed: int, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, 2, 6, 6), np.float32), rng.integers(0, 3, n)


def state_of(stepper) -> dict[str, np.ndarray]:
    arrays, _ = stepper.state()
    return {k: v for k, v in arrays.items() if not k.startswith("amp.")}


def test_auto_is_bf16_on_an_accelerator_and_float32_on_the_cpu():
    assert fp.resolve("auto", "cpu") == "float32" and fp.resolve("auto", "gpu") == "bf16"
    assert [fp.resolve(a, "cpu") for a in ("bf16", "fp16", "off")] == ["bf16", "fp16", "float32"]


def test_the_loss_scale_moves_as_torchs_grad_scaler(monkeypatch):
    """The same finite / non-finite sequence through torch's `_amp_update_scale_` (the kernel
    behind GradScaler.update) and `next_scale`: the same scales and counts at every step."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(fp, "GROWTH_INTERVAL", 3)
    flags = [True, True, True, True, False, True, True, True, True, True, True, False, False]
    scale, tracker = torch.tensor([fp.INIT_SCALE]), torch.tensor([0], dtype=torch.int32)
    ours = fp.init_scale()
    for finite in flags:
        found_inf = torch.tensor([0.0 if finite else 1.0])
        torch._amp_update_scale_(scale, tracker, found_inf, 2.0, 0.5, 3)
        ours = fp.next_scale(ours, jnp.bool_(finite))
        assert (float(ours.scale), int(ours.good_steps)) == (scale.item(), tracker.item())
    assert float(ours.scale) == 2.0**16 * 2 * 0.5 * 2 * 2 * 0.5 * 0.5  # it did move both ways
    # at the top of float32 the scale stops growing rather than overflow
    top = fp.ScaleState(jnp.float32(2.0**127), jnp.int32(2))
    assert float(fp.next_scale(top, jnp.bool_(True)).scale) == 2.0**127


def test_fp16_steps_skip_non_finite_gradients_and_resume_with_their_scale(tmp_path, monkeypatch):
    """With two micro-batches of two clips per step: their gradients are unscaled and summed."""
    monkeypatch.setattr(fp, "GROWTH_INTERVAL", 2)
    stepper = small_stepper("fp16", accum=2, batch=4)
    assert stepper.precision == "fp16" and float(stepper.loss_scale.scale) == 2.0**16
    start = state_of(stepper)
    x, y = clips(0, 4)
    bad = x.copy()
    bad[0, 0, 0, 0, 0] = np.nan  # a NaN reaches every gradient
    _, loss = stepper.step(bad, y, 0.1)
    after = state_of(stepper)
    assert not np.isfinite(float(loss))
    assert all(np.array_equal(start[k], after[k]) for k in start)  # weights, BN stats, momentum
    assert (float(stepper.loss_scale.scale), int(stepper.loss_scale.good_steps)) == (2.0**15, 0)
    reference = small_stepper("off", accum=2, batch=4)  # float32, the same first weights
    for s in (stepper, reference):
        _, loss = s.step(*clips(1, 4), 0.1)
        assert np.isfinite(float(loss))
    ours, theirs = state_of(stepper), state_of(reference)
    for k in ("model.conv.kernel", "model.fc.kernel", "model.bn.scale"):  # fp16's rounding only
        ours_moved, theirs_moved = ours[k] - start[k], theirs[k] - start[k]
        assert np.linalg.norm(ours_moved - theirs_moved) < 0.02 * np.linalg.norm(theirs_moved)
    stepper.step(*clips(2, 4), 0.1)
    moved = state_of(stepper)
    assert not np.array_equal(moved["model.conv.kernel"], start["model.conv.kernel"])
    assert not np.array_equal(moved["model.bn.mean"], start["model.bn.mean"])
    assert {str(v.dtype) for v in moved.values() if v.dtype.kind == "f"} == {"float32"}
    # two good steps in a row with an interval of 2: grown back
    assert (float(stepper.loss_scale.scale), int(stepper.loss_scale.good_steps)) == (2.0**16, 0)
    _, loss = stepper.step(*clips(3, 4), 0.1)
    assert int(stepper.loss_scale.good_steps) == 1
    path = tmp_path / "last.safetensors"
    checkpoint.save(path, *stepper.state())
    resumed = small_stepper("fp16", accum=2, batch=4)
    resumed.restore(*checkpoint.load(path))
    resumed.begin()
    assert (float(resumed.loss_scale.scale), int(resumed.loss_scale.good_steps)) == (2.0**16, 1)
    for s in (stepper, resumed):  # the next good step completes the interval in both
        s.step(*clips(4, 4), 0.1)
        assert (float(s.loss_scale.scale), int(s.loss_scale.good_steps)) == (2.0**17, 0)
    a, b = state_of(stepper), state_of(resumed)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_flax_bf16_steps_keep_float32_weights_statistics_and_optimiser():
    stepper = small_stepper("bf16")
    assert stepper.precision == "bf16" and stepper.loss_scale is None
    start = state_of(stepper)
    for i in range(3):
        _, loss = stepper.step(*clips(i), 0.1)
        assert np.isfinite(float(loss)) and loss.dtype == jnp.float32
    after = state_of(stepper)
    assert after.keys() == start.keys() and any(k.startswith("optim.") for k in after)
    assert all(after[k].dtype == start[k].dtype for k in after)  # float32 stays float32
    for name in ("model.conv.kernel", "model.bn.mean", "model.bn.var", "model.fc.kernel"):
        assert after[name].dtype == np.float32 and not np.array_equal(after[name], start[name])
    logits = stepper.predictor()(clips(5)[0])  # validation: float32 logits
    assert logits.dtype == np.float32 and logits.shape == (2, 3) and np.isfinite(logits).all()


def conv_dtypes(jaxpr) -> set[str]:
    """The operand dtypes of every convolution in a jaxpr, sub-jaxprs included."""
    from jax.extend.core import jaxprs_in_params

    found = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            found |= {str(v.aval.dtype) for v in eqn.invars}
        for sub in jaxprs_in_params(eqn.params):
            found |= conv_dtypes(sub)
    return found


def test_bf16_forward_and_backward_of_the_tiny_spec_convolve_in_bf16():
    """Traced on abstract weights (nothing computed): every convolution in the loss and gradient
    of the generated tiny model takes bf16 operands, and the gradients and BatchNorm statistics
    come back in float32."""
    from csnspec.backends import load_module
    from csnspec.lowering import lower
    from csnspec.parse import load

    module = load_module(lower(load(SPEC)), "flax")
    model = nnx.eval_shape(lambda: module.build(num_classes=6))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(model, x):
        return fp.cast_call(model, x, jnp.bfloat16).astype(jnp.float32).mean()

    def pure(params, rest, x):
        model = nnx.merge(graphdef, params, rest)
        value, grads = nnx.value_and_grad(loss)(model, x)
        return value, grads, nnx.state(model, nnx.BatchStat)

    x = jax.ShapeDtypeStruct((2, 8, 32, 32, 3), jnp.float32)
    closed, (_, grads, stats) = jax.make_jaxpr(pure, return_shape=True)(params, rest, x)
    assert conv_dtypes(closed.jaxpr) == {"bfloat16"}
    assert {str(g.dtype) for g in jax.tree.leaves(grads)} == {"float32"}
    assert {str(s.dtype) for s in jax.tree.leaves(stats)} == {"float32"}
