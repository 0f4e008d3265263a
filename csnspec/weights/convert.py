"""Weights between the generated PyTorch and Flax models of one spec, checked against its IR.

Both sides are flat mappings name -> numpy array. PyTorch names are `<op>.weight|bias|
running_mean|running_var|num_batches_tracked`; Flax names are the generated model's state
paths, `<op>.kernel|bias|scale|mean|var`, where `<op>` is the IR op name on both sides.

    conv   weight (O, I/G, D, H, W)  <->  kernel (D, H, W, I/G, O)
    fc     weight (out, in)          <->  kernel (in, out)
    BN     weight, bias, running_mean, running_var  <->  scale, bias, mean, var

Flax keeps no `num_batches_tracked`; going to PyTorch it is 0 unless a stored value is given.
Both BatchNorms keep the running variance as each framework does (PyTorch: unbiased; Flax:
biased); the values convert unchanged, so a converted model evaluates identically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from ..errors import CsnError
from ..ops import BatchNorm, LoweredNetwork
from ..schema import check_fit, state_dict_schema

CONV_TO_FLAX = (2, 3, 4, 1, 0)  # (O, I/G, D, H, W) -> (D, H, W, I/G, O)
CONV_TO_TORCH = (4, 3, 0, 1, 2)
# torch field -> flax field (a conv's or linear's weight is a flax `kernel`, a BN's a `scale`)
FLAX_FIELD = {"weight": "kernel", "bias": "bias", "running_mean": "mean", "running_var": "var"}
STATS = {"running_mean", "running_var", "num_batches_tracked", "mean", "var"}
# safetensors metadata key carrying PyTorch's num_batches_tracked through a Flax file
NBT_KEY = "csnspec.num_batches_tracked"


def _pairs(low: LoweredNetwork):
    """(torch name, flax name, torch shape, role) for every tensor Flax keeps too."""
    for tensor in state_dict_schema(low):
        if tensor.field not in FLAX_FIELD:
            continue  # num_batches_tracked: Flax keeps none
        is_bn_weight = tensor.field == "weight" and tensor.role == "vector"
        flax_field = "scale" if is_bn_weight else FLAX_FIELD[tensor.field]
        yield tensor.name, f"{tensor.op}.{flax_field}", tensor.shape, tensor.role


def _flax_shape(shape, kind):
    if kind == "conv":
        return tuple(shape[i] for i in CONV_TO_FLAX)
    if kind == "fc":
        return shape[::-1]
    return shape


def torch_shapes(low: LoweredNetwork, stats: bool = True) -> dict[str, tuple[int, ...]]:
    """Every tensor of the generated PyTorch model's state_dict (without stats: parameters only)."""
    return {t.name: t.shape for t in state_dict_schema(low) if stats or not t.is_statistic}


def flax_shapes(low: LoweredNetwork, stats: bool = True) -> dict[str, tuple[int, ...]]:
    """Every parameter (and batch statistic) of the generated Flax model, by dotted state path."""
    return {
        f: _flax_shape(s, k)
        for _, f, s, k in _pairs(low)
        if stats or f.rsplit(".", 1)[1] not in STATS
    }


def _check(tensors: Mapping, expected: Mapping[str, tuple], side: str, low: LoweredNetwork) -> None:
    """Names and shapes exactly as the IR says, or one error listing every offending name."""
    check_fit(tensors, expected, f"{side} weights do not fit {low.name}")


def torch_to_flax(
    state_dict: Mapping, low: LoweredNetwork, stats: bool = True
) -> dict[str, np.ndarray]:
    """A PyTorch state_dict (numpy arrays) as the Flax model's flat state (`to_nnx_state` nests it).

    Without `stats`, only parameters are converted (e.g. gradients)."""
    expected = torch_shapes(low, stats)
    _check(state_dict, expected, "PyTorch", low)
    out = {}
    for t, f, _, kind in _pairs(low):
        if t not in expected:
            continue
        a = np.asarray(state_dict[t])
        out[f] = np.ascontiguousarray(
            a.transpose(CONV_TO_FLAX) if kind == "conv" else a.T if kind == "fc" else a
        )
    return out


def flax_to_torch(
    params: Mapping,
    low: LoweredNetwork,
    stats: bool = True,
    num_batches_tracked: int | Mapping[str, int] = 0,
) -> dict[str, np.ndarray]:
    """The Flax model's flat state as a PyTorch state_dict; `num_batches_tracked` is one count for
    every BatchNorm or a count per BatchNorm op name."""
    _check(params, flax_shapes(low, stats), "Flax", low)
    out = {}
    for t, f, _, kind in _pairs(low):
        if f not in params:
            continue
        a = np.asarray(params[f])
        out[t] = np.ascontiguousarray(
            a.transpose(CONV_TO_TORCH) if kind == "conv" else a.T if kind == "fc" else a
        )
    if stats:
        for op in low.ops():
            if isinstance(op, BatchNorm):
                n = (
                    num_batches_tracked
                    if isinstance(num_batches_tracked, int)
                    else num_batches_tracked.get(op.name, 0)
                )
                out[f"{op.name}.num_batches_tracked"] = np.asarray(n, dtype=np.int64)
    return out


# -- Flax models (imports flax lazily) -----------------------------------------------------


def to_nnx_state(flat: Mapping[str, np.ndarray]):
    """A flat Flax state as nested state for `nnx.update(model, state)`."""
    import jax.numpy as jnp
    from flax import nnx

    def key(name):
        return tuple(int(p) if p.isdigit() else p for p in name.split("."))

    return nnx.from_flat_state({key(n): jnp.asarray(a) for n, a in flat.items()})


def flax_model(build, flat: Mapping[str, np.ndarray], seed: int = 0, **kwargs):
    """The generated Flax model `build(**kwargs)` holding the weights `flat`, without running
    its initialisers (they cost a compile per parameter shape): the model is traced
    abstractly, then filled; dropout's random streams start from `seed`."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    model = nnx.eval_shape(lambda: build(**kwargs))
    nnx.update(model, to_nnx_state(flat))
    rest = []
    for path, var in nnx.to_flat_state(
        nnx.state(model, nnx.Not(nnx.Any(nnx.Param, nnx.BatchStat)))
    ):
        v = var.get_raw_value()
        if isinstance(v, jax.ShapeDtypeStruct):
            is_key = jnp.issubdtype(v.dtype, jax.dtypes.prng_key)
            rest.append((path, jax.random.key(seed) if is_key else jnp.zeros(v.shape, v.dtype)))
    if rest:
        nnx.update(model, nnx.from_flat_state(dict(rest)))
    missing = [
        ".".join(map(str, p))
        for p, var in nnx.to_flat_state(nnx.state(model))
        if isinstance(var.get_raw_value(), jax.ShapeDtypeStruct)
    ]
    if missing:
        raise CsnError(f"no values for {', '.join(missing)}")
    return model


def from_nnx(model, stats: bool = True) -> dict[str, np.ndarray]:
    """A Flax model's parameters (and batch statistics) as a flat mapping name -> numpy array."""
    from flax import nnx

    kinds = (nnx.Param, nnx.BatchStat) if stats else (nnx.Param,)
    state = nnx.state(model, nnx.Any(*kinds))
    return {".".join(map(str, path)): np.asarray(v[...]) for path, v in nnx.to_flat_state(state)}


# -- files ---------------------------------------------------------------------------------


def framework_of(names) -> str:
    """Which side a file's tensor names come from: 'torch' or 'flax'."""
    last = {n.rsplit(".", 1)[-1] for n in names}
    if last & {"kernel", "scale"} and not last & {"weight", "running_mean"}:
        return "flax"
    if last & {"weight", "running_mean"} and not last & {"kernel", "scale"}:
        return "torch"
    raise CsnError("cannot tell whether the weights are PyTorch's or Flax's; pass --to")


def convert_file(
    low: LoweredNetwork,
    src,
    dst,
    to: str | None = None,
    *,
    allow_nonfinite: bool = False,
    inputs=(),
) -> str:
    """Convert a safetensors file of one side to the other; returns the side written.

    PyTorch's num_batches_tracked rides through a Flax file in its metadata; fp16 and bf16
    files are read as float32 (weights.io.read_safetensors), and so is the output written."""
    from safetensors.numpy import save

    from ..atomic import check_target, write_bytes
    from .io import read_safetensors

    check_target(dst, (src, *inputs))
    from .metadata import KEY

    tensors, meta, _ = read_safetensors(src, allow_nonfinite=allow_nonfinite)
    carried = {KEY: meta[KEY]} if KEY in meta else {}  # the preprocessing stays with the weights
    side = framework_of(tensors) if to is None else {"flax": "torch", "torch": "flax"}[to]
    if side == "torch":
        counts = {
            n[: -len(".num_batches_tracked")]: int(a)
            for n, a in tensors.items()
            if n.endswith(".num_batches_tracked")
        }
        data = save(
            torch_to_flax(tensors, low),
            metadata={NBT_KEY: json.dumps(counts, sort_keys=True), **carried},
        )
        written = "flax"
    else:
        try:
            counts = {str(k): int(v) for k, v in json.loads(meta.get(NBT_KEY, "{}")).items()}
        except (ValueError, TypeError, AttributeError):
            raise CsnError(f"unreadable {NBT_KEY} metadata", filename=str(src)) from None
        data = save(
            flax_to_torch(tensors, low, num_batches_tracked=counts), metadata=carried or None
        )
        written = "torch"
    write_bytes(dst, data, inputs=(src, *inputs))
    return written
