"""The Flax NNX stepper under `fit`: the same update as the PyTorch one (weight decay added to the
gradient, momentum, the learning rate `fit` passes in, per-parameter multipliers for frozen
parameters and the head) with optax; the batch sharded over all local devices, so BatchNorm
statistics are those of the global batch; clips decoded by a thread pool; bf16 or fp16 compute
over float32 weights on request (`flax_precision`)."""

from __future__ import annotations

import numpy as np

from ..data.loader import threaded_batches
from ..errors import CsnError
from . import flax_precision as fp
from .finetune import InitNote, bn_ops, classifier_ops, frozen_ops, init_weights
from .run import Run

KEY_SUFFIX = "#key"  # marks a PRNG key stored as its raw key data


def flat_state(obj, prefix: str) -> dict[str, np.ndarray]:
    """An NNX object's whole state (params, batch stats, RNG keys, optimiser) as numpy."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    out = {}
    for path, var in nnx.to_flat_state(nnx.state(obj)):
        name = prefix + ".".join(map(str, path))
        value = var.get_value() if hasattr(var, "get_value") else var.value
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            out[name + KEY_SUFFIX] = np.asarray(jax.random.key_data(value))
        else:
            out[name] = np.asarray(value)
    return out


def restore_state(obj, arrays: dict[str, np.ndarray], prefix: str) -> None:
    """Put arrays written by `flat_state` back into `obj` (same structure, same dtypes)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    items = {}
    for path, var in nnx.to_flat_state(nnx.state(obj)):
        name = prefix + ".".join(map(str, path))
        value = var.get_value() if hasattr(var, "get_value") else var.value
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            data = arrays.get(name + KEY_SUFFIX)
            new = (
                None
                if data is None
                else jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
            )
        else:
            data = arrays.get(name)
            new = None if data is None else jnp.asarray(data, dtype=value.dtype)
        if new is None:
            raise CsnError(f"the checkpoint has no '{name}'")
        items[path] = new
    nnx.update(obj, nnx.from_flat_state(items))


def path_name(path) -> str:
    """A jax key path (or an nnx state path) as the dotted name the weights use."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                k = getattr(k, attr)
                break
        parts.append(str(k))
    return ".".join(p for p in parts if p not in ("value", "raw_value"))


def scale_by_lr(mult_of):
    """optax's `-lr * update`, with `lr` given at each step (one schedule, `fit`'s) and a
    multiplier per parameter (`mult_of(dotted name)`: 0 frozen, the head's, else 1)."""
    import jax
    import optax

    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None, *, lr, **extra):
        out = jax.tree_util.tree_map_with_path(
            lambda path, u: (-lr * mult_of(path_name(path))) * u, updates
        )
        return out, state

    return optax.GradientTransformationExtraArgs(init, update)


class FlaxStepper:
    rank, world, main = 0, 1, True

    def __init__(self, run: Run):
        import optax
        from flax import nnx
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        from .devices import jax_devices

        cfg = self.cfg = run.cfg
        self.run = run
        self.devices = jax_devices(cfg.device)
        n = len(self.devices)
        self.device_name = f"{self.devices[0].platform} x{n}" if n > 1 else self.devices[0].platform
        self.precision = fp.resolve(cfg.amp, self.devices[0].platform)
        self.loss_scale = fp.init_scale() if self.precision == "fp16" else None
        if cfg.batch % n:
            raise CsnError(f"--batch {cfg.batch} does not split over {n} devices")
        mesh = Mesh(np.array(self.devices), ("data",))
        self.batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self.model = run.module().build(num_classes=len(run.index.classes), seed=cfg.seed)
        self.frozen = frozen_ops(run.low, cfg.freeze_stages)
        self.bn_frozen = set(bn_ops(run.low)) if cfg.freeze_bn else set()
        heads = set(classifier_ops(run.low))
        fixed = self.frozen | self.bn_frozen

        def mult_of(name: str) -> float:
            op = name.rsplit(".", 1)[0]
            return 0.0 if op in fixed else cfg.head_lr_mult if op in heads else 1.0

        chain = [optax.clip_by_global_norm(cfg.clip_grad)] if cfg.clip_grad is not None else []
        chain += [
            optax.add_decayed_weights(cfg.weight_decay),  # as torch's SGD: g + wd * p
            optax.trace(decay=cfg.momentum),
            scale_by_lr(mult_of),
        ]
        self.optimizer = nnx.Optimizer(self.model, optax.chain(*chain), wrt=nnx.Param)
        self.ema_model = None

    def init_from(self, path) -> InitNote:
        from flax import nnx

        from ..weights.convert import from_nnx, to_nnx_state

        own = {k: v.shape for k, v in from_nnx(self.model).items()}
        fit, note = init_weights(path, self.run.low, "flax", own)
        nnx.update(self.model, to_nnx_state(fit))
        return note

    def begin(self) -> None:
        import jax
        import jax.numpy as jnp
        import optax
        from flax import nnx

        if self.cfg.ema is not None and self.ema_model is None:
            self.ema_model = nnx.clone(self.model)
        self.train_mode()
        state = nnx.state((self.model, self.optimizer))
        nnx.update((self.model, self.optimizer), jax.device_put(state, self.replicated))
        if self.loss_scale is not None:  # placed as the step returns it: one compilation
            self.loss_scale = jax.device_put(self.loss_scale, self.replicated)
        accum = self.cfg.accum
        dtype, scaled = fp.compute_dtype(self.precision), self.loss_scale is not None

        def loss_fn(model, x, y, scale):
            logits = fp.cast_call(model, x, dtype)
            loss = optax.softmax_cross_entropy_with_integer_labels(
                logits.astype(jnp.float32), y
            ).mean()
            return (loss * scale if scaled else loss), loss  # differentiated, reported

        @nnx.jit
        def step_fn(model, optimizer, x, y, lr, amp):
            grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
            scale = amp.scale if scaled else None
            if scaled:  # what a skipped step keeps (BatchNorm statistics included)
                before = jax.tree.map(jnp.copy, nnx.state((model, optimizer)))
            if accum == 1:
                (_, loss), grads = grad_fn(model, x, y, scale)
            else:
                xs = x.reshape(accum, -1, *x.shape[1:])
                ys = y.reshape(accum, -1)
                loss, grads = 0.0, None
                for i in range(accum):
                    (_, part), g = grad_fn(model, xs[i], ys[i], scale)
                    loss = loss + part / accum
                    g = jax.tree.map(lambda a: a / accum, g)
                    grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
            if scaled:
                grads = jax.tree.map(lambda g: g / scale, grads)
                finite = fp.all_finite(grads)
            optimizer.update(model, grads, lr=lr)
            if scaled:
                after = nnx.state((model, optimizer))
                nnx.update((model, optimizer), fp.keep_if(finite, after, before))
                amp = fp.next_scale(amp, finite)
            return loss, amp

        decay = self.cfg.ema

        @nnx.jit
        def ema_fn(ema_model, model):
            kinds = nnx.Any(nnx.Param, nnx.BatchStat)
            mixed = jax.tree.map(
                lambda e, p: decay * e + (1 - decay) * p,
                nnx.state(ema_model, kinds),
                nnx.state(model, kinds),
            )
            nnx.update(ema_model, mixed)

        # the step bound to this model and optimiser: nnx.jit would walk both object graphs on
        # every call (a fifth of the tiny spec's step); the graphs do not change between steps
        self.step_fn = nnx.cached_partial(step_fn, self.model, self.optimizer)
        self.ema_fn = ema_fn
        self.forward = nnx.jit(lambda m, x: fp.cast_call(m, x, dtype).astype(jnp.float32))

    def train_mode(self) -> None:
        """Train mode, except BatchNorms that are frozen (their statistics stay put)."""
        from flax import nnx

        self.model.train()
        fixed = self.frozen | self.bn_frozen
        if fixed:
            for path, module in nnx.iter_modules(self.model):
                if path_name(path) in fixed and hasattr(module, "use_running_average"):
                    module.use_running_average = True

    def batches(self, plan, dataset):
        for batch in threaded_batches(dataset, plan, max(1, self.cfg.workers)):
            yield batch.x, batch.y, batch.skipped

    def step(self, x, y, lr: float):
        import jax
        import jax.numpy as jnp

        # shards and micro-batches must be equal: drop the remainder
        usable = len(y) - len(y) % (len(self.devices) * self.cfg.accum)
        if not usable:
            return 0, None
        x = jax.device_put(x[:usable].transpose(0, 2, 3, 4, 1), self.batch_sharding)
        y = jax.device_put(y[:usable].astype(np.int32), self.batch_sharding)
        loss, self.loss_scale = self.step_fn(x, y, jnp.float32(lr), self.loss_scale)
        if self.ema_model is not None:
            self.ema_fn(self.ema_model, self.model)
        return usable, loss

    def weights(self, ema: bool = False) -> dict[str, np.ndarray]:
        from ..weights.convert import from_nnx

        return from_nnx(self.ema_model if ema else self.model)

    def state(self) -> tuple[dict, dict]:
        arrays = {**flat_state(self.model, "model."), **flat_state(self.optimizer, "optim.")}
        if self.ema_model is not None:
            arrays.update(flat_state(self.ema_model, "ema."))
        if self.loss_scale is not None:
            arrays.update(fp.scale_arrays(self.loss_scale))
        return arrays, {}

    def restore(self, arrays: dict, meta: dict) -> None:
        from flax import nnx

        restore_state(self.model, arrays, "model.")
        restore_state(self.optimizer, arrays, "optim.")
        if self.loss_scale is not None:
            self.loss_scale = fp.scale_from(arrays)
        if self.cfg.ema is not None and any(k.startswith("ema.") for k in arrays):
            self.ema_model = nnx.clone(self.model)
            restore_state(self.ema_model, arrays, "ema.")

    def predictor(self, ema: bool = False):
        model = self.ema_model if ema else self.model
        model.eval()

        def predict(x: np.ndarray) -> np.ndarray:
            return np.asarray(self.forward(model, np.ascontiguousarray(x.transpose(0, 2, 3, 4, 1))))

        return predict

    def finish(self) -> None:
        pass
