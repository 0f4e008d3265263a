"""Mixed precision for the Flax trainer: the model keeps float32 ("master") weights, optimiser
state and BatchNorm statistics; each forward/backward runs on a copy whose parameters (and input
clip) are cast to bfloat16 or float16, so the gradients come back in float32 and are applied
there. float16 adds dynamic loss scaling with torch.amp.GradScaler's rules and defaults, written
here: optax has none, and flax's `training.dynamic_scale.DynamicScale` grows a step later than
GradScaler and would rescale after every micro-batch of an accumulated step.

Nothing here changes the generated modules: the cast copy is made inside the jitted step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

PRECISIONS = ("float32", "bf16", "fp16")

# torch.amp.GradScaler's defaults: start at 2**16, double after 2000 finite steps in a row,
# halve (and skip the step) on a non-finite gradient.
INIT_SCALE = 2.0**16
GROWTH_FACTOR = 2.0
BACKOFF_FACTOR = 0.5
GROWTH_INTERVAL = 2000


def resolve(amp: str, platform: str) -> str:
    """The precision a Flax run computes in, one of PRECISIONS: `auto` is bf16 on an accelerator
    (GPU, TPU) and float32 on the CPU, as the PyTorch trainer's; `off` is float32."""
    if amp == "auto":
        return "float32" if platform == "cpu" else "bf16"
    return "float32" if amp == "off" else amp


def compute_dtype(precision: str):
    """The dtype the forward/backward runs in (None: float32, nothing cast)."""
    import jax.numpy as jnp

    return {"float32": None, "bf16": jnp.bfloat16, "fp16": jnp.float16}[precision]


def cast_call(model, x, dtype):
    """`model(x)` computed in `dtype` (None: as it is).

    The model's parameters and `x` are cast in a copy of the model; gradients reach the float32
    parameters through the casts. BatchNorms of the copy normalise in `dtype` (flax promotes
    their input to the float32 of the running statistics otherwise, and the rest of the network
    with it) while their batch statistics are still computed in float32 (flax's
    `_compute_stats` promotes to at least float32); the updated float32 running statistics
    (and any other non-parameter state) are written back to `model`.
    """
    import jax
    from flax import nnx

    if dtype is None:
        return model(x)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    low = nnx.merge(graphdef, jax.tree.map(lambda p: p.astype(dtype), params), rest)
    for _, module in nnx.iter_modules(low):
        if isinstance(module, nnx.BatchNorm):
            module.dtype = dtype
    out = low(x.astype(dtype))
    nnx.update(model, nnx.state(low, nnx.Not(nnx.Param)))
    return out


class ScaleState(NamedTuple):
    """A dynamic loss scale: the scale (float32) and the finite steps since it last changed
    (GradScaler's growth tracker, int32)."""

    scale: object
    good_steps: object


def init_scale() -> ScaleState:
    import jax.numpy as jnp

    return ScaleState(jnp.float32(INIT_SCALE), jnp.int32(0))


def all_finite(tree):
    """Whether every element of every leaf of `tree` is finite (a traced bool)."""
    import jax
    import jax.numpy as jnp

    leaves = [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def next_scale(state: ScaleState, finite) -> ScaleState:
    """torch's `_amp_update_scale_`: halve the scale and restart the count after a non-finite
    gradient; after GROWTH_INTERVAL finite steps in a row, grow it (if the result is finite)
    and restart the count."""
    import jax.numpy as jnp

    count = jnp.where(finite, state.good_steps + 1, 0)
    grow = count >= GROWTH_INTERVAL
    grown = state.scale * GROWTH_FACTOR
    scale = jnp.where(
        finite,
        jnp.where(grow & jnp.isfinite(grown), grown, state.scale),
        state.scale * BACKOFF_FACTOR,
    )
    return ScaleState(scale.astype(jnp.float32), jnp.where(grow, 0, count).astype(jnp.int32))


def keep_if(ok, new, old):
    """`new` where `ok`, else `old`, leaf by leaf (a skipped step keeps the state it had)."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


def scale_arrays(state: ScaleState) -> dict[str, np.ndarray]:
    """The loss scale as checkpoint arrays (exact, so a resumed run continues with it)."""
    return {
        "amp.scale": np.asarray(state.scale, np.float32),
        "amp.good_steps": np.asarray(state.good_steps, np.int32),
    }


def scale_from(arrays: dict) -> ScaleState:
    """The loss scale a checkpoint holds; the initial one if it holds none."""
    import jax.numpy as jnp

    if "amp.scale" not in arrays:
        return init_scale()
    return ScaleState(jnp.float32(arrays["amp.scale"]), jnp.int32(arrays.get("amp.good_steps", 0)))
