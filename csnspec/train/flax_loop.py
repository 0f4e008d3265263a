"""The Flax NNX training loop: the same recipe as the PyTorch loop (SGD + momentum, weight decay,
warm-up + half-cosine, cross-entropy) with optax, the batch sharded over all local devices,
a thread pool decoding clips, and checkpoints of the flattened model and optimiser state."""

from __future__ import annotations

import time

import numpy as np

from ..data.dataset import TrainClips
from ..data.loader import BatchPlan, threaded_batches
from ..errors import CsnError
from . import checkpoint
from .run import MetricsLog, Run, StepLog, note_skipped, write_summary
from .schedule import lr_at, lr_fn

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


def make_optimizer(model, run: Run):
    import optax
    from flax import nnx

    cfg = run.cfg
    tx = optax.chain(
        optax.add_decayed_weights(cfg.weight_decay),  # as torch's SGD: g + wd * p, then momentum
        optax.sgd(lr_fn(cfg.lr, run.total_steps, run.warmup), momentum=cfg.momentum),
    )
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


def train(run: Run, resume: bool = False) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from tqdm import tqdm

    from ..weights.convert import from_nnx

    cfg = run.cfg
    devices = jax.local_devices(backend={"auto": None, "cpu": "cpu", "cuda": "gpu"}[cfg.device])
    if cfg.batch % len(devices):
        raise CsnError(f"--batch {cfg.batch} does not split over {len(devices)} devices")
    mesh = Mesh(np.array(devices), ("data",))
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    replicated = NamedSharding(mesh, PartitionSpec())

    model = run.module().build(num_classes=len(run.index.classes), seed=cfg.seed)
    model.train()
    optimizer = make_optimizer(model, run)
    start, seen = 0, dict(run.index.skipped)
    if resume and run.checkpoint.exists():
        arrays, meta = checkpoint.load(run.checkpoint)
        if meta.get("backend") != "flax":
            raise CsnError(f"{run.checkpoint}: a {meta.get('backend')} checkpoint, not flax")
        restore_state(model, arrays, "model.")
        restore_state(optimizer, arrays, "optim.")
        checkpoint.set_host_rng_state(meta["host_rng"])
        start, seen = meta["step"], {**seen, **meta.get("skipped", {})}
    state = nnx.state((model, optimizer))
    nnx.update((model, optimizer), jax.device_put(state, replicated))

    @nnx.jit
    def step_fn(model, optimizer, x, y):
        def loss_fn(model):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(
                logits.astype(jnp.float32), y
            ).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    plan = BatchPlan(len(run.index), cfg.batch, cfg.seed, start, run.total_steps)
    data = TrainClips(run.index, cfg.clip_options(), cfg.seed)
    metrics = MetricsLog(run.dir / "metrics.jsonl", start)
    bar = tqdm(
        total=run.total_steps,
        initial=start,
        disable=not cfg.progress,
        dynamic_ncols=True,
        desc=f"train {run.net.name}",
    )
    n_dev = len(devices)
    loss_value, clips, t0 = float("nan"), 0, time.perf_counter()
    log = StepLog(metrics, bar, t0)
    for step, batch in enumerate(threaded_batches(data, plan, max(1, cfg.workers)), start):
        note_skipped(seen, batch.skipped)
        usable = len(batch) - len(batch) % n_dev  # shards must be equal; drop the remainder
        loss = None
        if usable:
            x = jax.device_put(batch.x[:usable].transpose(0, 2, 3, 4, 1), batch_sharding)
            y = jax.device_put(batch.y[:usable].astype(np.int32), batch_sharding)
            loss = step_fn(model, optimizer, x, y)
        clips += usable
        log.count(usable)
        done = step + 1
        lr = lr_at(step, cfg.lr, run.total_steps, run.warmup)
        if done % cfg.log_every == 0 or done == run.total_steps:
            loss_value = float(loss) if loss is not None else float("nan")
            log.write(done, step // plan.steps_per_epoch, loss_value, lr)
        bar.update(1)
        if done % cfg.ckpt_every == 0 or done == run.total_steps:
            save_checkpoint(run, model, optimizer, done, seen)
    bar.close()
    metrics.close()
    wall = time.perf_counter() - t0
    checkpoint.save(
        run.dir / "model.safetensors",
        from_nnx(model),
        {"backend": "flax", "classes": run.index.classes, "spec": run.net.name},
    )
    summary = {
        "backend": "flax",
        "device": str(devices[0].platform),
        "devices": n_dev,
        "steps": run.total_steps,
        "resumed_from": start,
        "final_loss": loss_value,
        "clips": clips,
        "wall_s": round(wall, 3),
        "clips_per_s": round(clips / max(wall, 1e-9), 2),
        "skipped": dict(sorted(seen.items())),
    }
    write_summary(run, summary)
    return summary


def save_checkpoint(run: Run, model, optimizer, step: int, seen: dict) -> None:
    arrays = {**flat_state(model, "model."), **flat_state(optimizer, "optim.")}
    meta = {
        "backend": "flax",
        "step": step,
        "seed": run.cfg.seed,
        "epoch": step // (len(run.index) // run.cfg.batch),
        "host_rng": checkpoint.host_rng_state(),
        "skipped": seen,
    }
    checkpoint.save(run.checkpoint, arrays, meta)
