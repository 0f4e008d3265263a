"""Check that a spec's generated PyTorch and Flax models compute the same function.

Both modules are rendered from one lowered network and imported; the PyTorch model is
initialised (every BatchNorm's affine parameters and running statistics, and the fc, drawn at
random, so that no BatchNorm is an identity) and its weights are converted to Flax with
`csnspec.weights.convert`. On one random float32 batch, on the CPU, `compare` checks

  eval   every block's output and the logits, with running statistics;
  train  the same with batch statistics, dropout off on both sides (the frameworks draw
         different masks, so train-mode dropout cannot match);
  stats  every BatchNorm's running mean and variance after that train-mode forward;
  grad   the gradient of a fixed random linear function of the logits wrt the input and every
         parameter, from one backward pass through the train-mode forward.

Running variance: PyTorch updates it with the unbiased batch variance, Flax with the biased
one. The stats check turns Flax's update into PyTorch's exactly (factor n / (n - 1), n the
values per channel) before comparing.

Tolerances: forward and stats max|t - f| <= 1e-4 * max(1, max|t|) per block; gradients
||t - f|| / ||t|| <= 1e-4 over the input, and over each block's parameters together.

Float32 noise: train-mode BatchNorm over few values per channel (tiny feature maps, batch 2)
can make the network's own float32 rounding error exceed those tolerances, whatever computes
it. So the PyTorch model also runs in float64, and each part reports `floor`, the distance of
PyTorch's own float32 result from that float64 one. A part past tolerance but within
NOISE_FACTOR x floor passes as `ok~` (within float32 noise); the table says so. The factor is
wide because PyTorch's CPU BatchNorm accumulates its sums in float64 and Flax's in float32, so
Flax's own rounding error is often ~10x PyTorch's; a real bug is off by orders more.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from .ops import BatchNorm, Dropout, LoweredNetwork

FORWARD_TOL = 1e-4
GRAD_TOL = 1e-4
NOISE_FACTOR = 30.0
KINK_MARGIN = 1e-5  # a ReLU input this close to 0 may fall on either side in float32
KINK_REDRAWS = 2  # new clips tried when only gradients disagree and a ReLU input is that close
CHAOS = 0.1  # a float32 floor past this: float32 itself is not meaningful there
CHECKS = ("eval", "train", "stats", "grad")


@dataclass(frozen=True, slots=True)
class Comparison:
    """One compared part (a block, the logits, the input gradient) under one check."""

    check: str
    name: str
    max_abs: float  # largest |torch - flax| over the part's tensors
    rel: float  # forward/stats: max_abs / max(1, max|torch|); grad: ||t - f|| / ||t||
    floor: float  # the same measure between PyTorch's float32 and float64 results
    worst: str  # the tensor with the largest relative difference on its own

    @property
    def tol(self) -> float:
        return GRAD_TOL if self.check in ("grad", "impl-grad") else FORWARD_TOL

    @property
    def status(self) -> str:
        if self.rel <= self.tol:
            return "ok"
        if self.rel <= NOISE_FACTOR * self.floor:
            return "ok~"
        return "FAIL"

    @property
    def ok(self) -> bool:
        return self.status != "FAIL"


@dataclass(slots=True)
class Result:
    network: str
    spec_text: str
    input_shape: tuple[int, ...]
    batch: int
    rows: list[Comparison] = field(default_factory=list)
    redraws: int = 0  # clips set aside because a ReLU input sat on its kink (see compare)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def failures(self) -> list[Comparison]:
        return [r for r in self.rows if not r.ok]

    def table(self) -> str:
        head = ("check", "part", "max |diff|", "relative", "f32 floor", "result", "worst tensor")
        body = [
            (
                r.check,
                r.name,
                f"{r.max_abs:.2e}",
                f"{r.rel:.2e}",
                f"{r.floor:.2e}",
                r.status,
                r.worst,
            )
            for r in self.rows
        ]
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        dims = "x".join(map(str, self.input_shape))
        lines = [
            (
                f"{self.network}: batch {self.batch} x {dims}, float32 on the CPU; tolerance "
                f"{FORWARD_TOL:g} (eval, train, stats), {GRAD_TOL:g} (grad)"
            )
        ]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in (head, *body)
        ]
        noisy = [r for r in self.rows if r.status == "ok~"]
        if noisy:
            lines.append(
                f"ok~: {len(noisy)} part(s) past tolerance but within {NOISE_FACTOR:g}x PyTorch's own "
                "float32 error (f32 floor): float32 cannot resolve them at this input and batch"
            )
        if self.redraws:
            lines.append(
                f"{self.redraws} earlier clip(s) set aside: only gradients disagreed and a ReLU input "
                f"lay within {KINK_MARGIN:g} of 0, where ReLU has no derivative"
            )
        chaotic = max((r.floor for r in self.rows), default=0.0)
        if chaotic > CHAOS:
            lines.append(
                f"inconclusive in part: PyTorch's own float32 result is off its float64 one by up to "
                f"{chaotic:.0%} here; a larger clip or batch gives BatchNorm more values per channel"
            )
        bad = self.failures()
        if bad:
            lines.append(
                f"FAIL: {len(bad)} part(s) past tolerance; first: {bad[0].check} {bad[0].name}"
            )
        elif noisy:
            lines.append("PyTorch and Flax agree, to float32 noise where past tolerance")
        else:
            lines.append("PyTorch and Flax agree")
        return "\n".join(lines)


def _at(model, dotted: str):
    for part in dotted.split("."):
        model = model[int(part)] if part.isdigit() else getattr(model, part)
    return model


# -- measures --------------------------------------------------------------------------------


def _forward_measure(pairs) -> tuple[float, float, str]:
    """(max |t - f|, max over tensors of max|t - f| / max(1, max|t|), worst tensor)."""
    max_abs, rel, worst = 0.0, 0.0, ""
    for name, t, f in pairs:
        d = np.abs(t.astype(np.float64) - f.astype(np.float64))
        m = float(d.max()) if d.size else 0.0
        r = m / max(1.0, float(np.abs(t).max()) if t.size else 1.0)
        max_abs = max(max_abs, m)
        if r >= rel:
            rel, worst = r, name
    return max_abs, (rel if math.isfinite(rel) else math.inf), worst


def _grad_measure(pairs) -> tuple[float, float, str]:
    """(max |t - f|, ||t - f|| / ||t|| over all tensors together, worst tensor on its own)."""
    diff2 = norm2 = max_abs = 0.0
    worst, worst_rel = "", -1.0
    for name, t, f in pairs:
        t64 = t.astype(np.float64).ravel()
        d = t64 - f.astype(np.float64).ravel()
        dn, tn = float(d @ d), float(t64 @ t64)
        diff2, norm2 = diff2 + dn, norm2 + tn
        max_abs = max(max_abs, float(np.abs(d).max()) if d.size else 0.0)
        r = math.sqrt(dn / tn) if tn > 0 else (0.0 if dn == 0 else math.inf)
        if r > worst_rel:
            worst, worst_rel = name, r
    rel = math.sqrt(diff2 / norm2) if norm2 > 0 else (0.0 if diff2 == 0 else math.inf)
    return max_abs, (rel if math.isfinite(rel) else math.inf), worst


# -- one run of each framework ---------------------------------------------------------------


@dataclass
class Outputs:
    """What one model computed, in Flax's layouts and names, as float arrays."""

    eval_out: dict  # part -> array (blocks NTHWC, "logits")
    train_out: dict
    stats: dict  # "<bn>.running_mean|running_var" -> array (PyTorch's meaning)
    grads: dict  # flax parameter name -> array, and "input" (NCTHW)


def _torch_run(model, low: LoweredNetwork, x, w, block_names, dtype) -> Outputs:
    import torch

    from .weights.convert import torch_to_flax

    model = model.to(dtype)
    seen: dict = {}

    def hooked(call):
        hooks = [
            _at(model, n).register_forward_hook(
                lambda m, i, o, n=n: seen.__setitem__(n, o.detach().clone())
            )
            for n in block_names
        ]
        try:
            return call()
        finally:
            for h in hooks:
                h.remove()

    def blocks(logits):
        out = {n: seen[n].numpy().transpose(0, 2, 3, 4, 1) for n in block_names}  # NCTHW -> NTHWC
        out["logits"] = logits.detach().numpy()
        return out

    model.eval()
    with torch.no_grad():
        eval_out = blocks(hooked(lambda: model(torch.from_numpy(x).to(dtype))))
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    xt = torch.from_numpy(x).to(dtype).requires_grad_(True)
    logits = hooked(lambda: model(xt))
    (logits * torch.from_numpy(w).to(dtype)).sum().backward()
    train_out = blocks(logits)
    sd = model.state_dict()
    stats = {k: sd[k].numpy() for k in sd if k.endswith((".running_mean", ".running_var"))}
    grads = torch_to_flax(
        {k: p.grad.numpy() for k, p in model.named_parameters()}, low, stats=False
    )
    grads["input"] = xt.grad.numpy()
    return Outputs(eval_out, train_out, stats, grads)


def _flax_run(model, module, low: LoweredNetwork, x, w, batch, before, jit: bool) -> Outputs:
    from flax import nnx

    from .weights.convert import from_nnx

    xf = module.from_torch_layout(x)

    def forward(m, x):
        return m(x, return_blocks=True)

    def loss(m, x):
        logits, blocks = m(x, return_blocks=True)
        return (logits * w).sum(), (logits, blocks)

    grad_fn = nnx.grad(loss, argnums=(0, 1), has_aux=True)
    if jit:
        forward, grad_fn = nnx.jit(forward), nnx.jit(grad_fn)

    def outputs(logits, blocks):
        return {**{k: np.asarray(v) for k, v in blocks.items()}, "logits": np.asarray(logits)}

    model.eval()
    eval_out = outputs(*forward(model, xf))
    model.train()
    for op in low.head.ops:
        if isinstance(op, Dropout):
            _at(model, op.name).deterministic = True
    (g_model, g_x), aux = grad_fn(model, xf)
    train_out = outputs(*aux)
    after = from_nnx(model)
    stats = {}
    for op in low.ops():
        if isinstance(op, BatchNorm):
            n = batch * math.prod(op.out_shape[1:])  # values per channel in the batch statistics
            keep = 1 - op.momentum
            old = before[f"{op.name}.running_var"]
            # Flax: keep * old + m * biased; PyTorch: keep * old + m * biased * n / (n - 1)
            var = keep * old + (after[f"{op.name}.var"] - keep * old) * (n / (n - 1))
            stats[f"{op.name}.running_mean"] = after[f"{op.name}.mean"]
            stats[f"{op.name}.running_var"] = var
    grads = {".".join(map(str, k)): np.asarray(v[...]) for k, v in nnx.to_flat_state(g_model)}
    grads["input"] = np.asarray(g_x).transpose(0, 4, 1, 2, 3)  # back to NCTHW
    return Outputs(eval_out, train_out, stats, grads)


# -- the comparison --------------------------------------------------------------------------


def _part(name: str, parts: list[str]) -> str:
    """The block (or stem, head) a tensor name belongs to."""
    for p in parts:
        if name.startswith(p + "."):
            return p
    return name.split(".", 1)[0]


def _rows(
    check: str, ref: dict, other: dict, f64: dict, parts: list[str], measure
) -> list[Comparison]:
    """One row per part: tensors grouped by the part they belong to, in forward order."""
    grouped: dict[str, list[str]] = {}
    for name in ref:
        grouped.setdefault(name if name in parts else _part(name, parts), []).append(name)
    order = {p: i for i, p in enumerate(parts)}
    rows = []
    for p in sorted(grouped, key=lambda p: order.get(p, len(order))):
        names = grouped[p]
        max_abs, rel, worst = measure([(n, ref[n], other[n]) for n in names])
        floor = measure([(n, f64[n], ref[n]) for n in names])[1]
        rows.append(Comparison(check, p, max_abs, rel, floor, worst))
    return rows


def compare(
    net,
    *,
    input_shape=None,
    seed: int = 0,
    batch: int = 2,
    jit: bool = True,
    impls: bool = True,
) -> Result:
    """Compare the generated models of spec `net` (a csnspec Network); see the module docstring.

    `input_shape` (C, T, H, W) replaces the spec's input clip; `batch` >= 2 so train-mode
    BatchNorm has a variance. `jit=False` runs the Flax model op by op (much slower: every
    op is dispatched, and compiled, on its own). Both models run their depthwise convs with
    "auto" (the fast paths); rows "impl" and "impl-grad" compare each fast path with the
    native call within one framework (`impls=False` leaves them out: they build and, in Flax,
    compile the model once more per implementation)."""
    import torch

    from .backends import load_module
    from .lowering import lower
    from .printer import format_spec
    from .weights.convert import flax_model, torch_to_flax

    if input_shape is not None:
        net = net.with_input(tuple(input_shape))
    low = lower(net)
    result = Result(low.name, format_spec(net), tuple(low.input_shape), batch)
    block_names = (["stem"] if low.stem.ops else []) + [b.name for b in low.blocks()]
    parts = ["input", *block_names, "head", "logits"]
    rng = np.random.default_rng(seed)

    tmod = load_module(low, "torch")
    fmod = load_module(low, "flax")

    torch.manual_seed(seed)
    tm = tmod.build()
    _randomise(tm, low, rng)
    before = {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}

    for draw in range(1 + KINK_REDRAWS):
        x = rng.standard_normal((batch, *low.input_shape)).astype(np.float32)
        w = rng.standard_normal((batch, low.output_shape[0])).astype(np.float32)
        # every draw starts from the same weights: a train step moves the running statistics
        model32, model64 = copy.deepcopy(tm), copy.deepcopy(tm)
        fm = flax_model(fmod.build, torch_to_flax(before, low), seed=seed)
        t = _torch_run(model32, low, x, w, block_names, torch.float32)
        t64 = _torch_run(model64, low, x, w, block_names, torch.float64)
        f = _flax_run(fm, fmod, low, x, w, batch, before, jit)

        rows = _rows("eval", t.eval_out, f.eval_out, t64.eval_out, parts, _forward_measure)
        rows += _rows("train", t.train_out, f.train_out, t64.train_out, parts, _forward_measure)
        rows += _rows("stats", t.stats, f.stats, t64.stats, parts, _forward_measure)
        rows += _rows("grad", t.grads, f.grads, t64.grads, parts, _grad_measure)
        result.rows = rows
        failed = {r.check for r in rows if r.status == "FAIL"}
        # A ReLU input within float32 rounding of 0 can be cut by one framework and passed
        # by the other, which changes that unit's gradient: ReLU has no derivative there, so
        # such a clip cannot test gradients. Draw another; a real bug fails every draw.
        if failed != {"grad"} or draw == KINK_REDRAWS:
            break
        if _closest_to_kink(copy.deepcopy(tm), x) > KINK_MARGIN:
            break
        result.redraws += 1
    if impls:
        # a fast path's float32 rounding is amplified as much as Flax's: the same floors apply
        floors = {
            "impl": max(r.floor for r in result.rows if r.check == "train" and r.name == "logits"),
            "impl-grad": max(r.floor for r in result.rows if r.check == "grad"),
        }
        result.rows += _impl_rows(tmod, fmod, low, before, x, w, seed, floors)
    return result


# -- each depthwise implementation against the native call ----------------------------------


def _fast_impls(module, names: str) -> list[str]:
    """The module's fast depthwise implementations that can run here ("auto" picks one of
    them; "native" is the reference), or none when the module has no depthwise conv."""
    impls = getattr(module, names, ())
    fast = [i for i in impls if i not in ("auto", "native")]
    if "triton" in fast and not module.torch.cuda.is_available():
        fast.remove("triton")
    return fast


def _impl_rows(
    tmod, fmod, low: LoweredNetwork, before, x, w, seed: int, floors
) -> list[Comparison]:
    """Rows "impl": each fast path's logits and gradients against the native call's, in the
    same framework, same weights and clip (train mode, where BatchNorm uses batch statistics);
    `floors`: PyTorch's float32-vs-float64 measure of the train logits and of the gradients."""
    import torch

    from .weights.convert import flax_model, torch_to_flax

    def torch_run(impl):
        model = tmod.build()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in before.items()})
        model.set_depthwise(impl)
        model.train()
        with torch.random.fork_rng():
            torch.manual_seed(seed)  # the same dropout masks for every implementation
            out = model(torch.from_numpy(x))
        (out * torch.from_numpy(w)).sum().backward()
        grads = {k: p.grad.numpy() for k, p in model.named_parameters()}
        return {"logits": out.detach().numpy()}, grads

    def flax_run(impl):
        from flax import nnx

        model = flax_model(fmod.build, torch_to_flax(before, low), seed=seed)
        model.set_depthwise(impl)
        model.train()

        @nnx.jit  # one compile for the whole step: run eagerly, every op compiles on its own
        def step(m, clip, weights):
            def loss(m):
                logits = m(clip)
                return (logits * weights).sum(), logits

            return nnx.grad(loss, has_aux=True)(m)

        grads, logits = step(model, fmod.from_torch_layout(x), w)
        flat = {".".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.to_flat_state(grads)}
        return {"logits": np.asarray(logits)}, flat

    rows = []
    for backend, module, names, run in (
        ("torch", tmod, "DEPTHWISE_IMPLS", torch_run),
        ("flax", fmod, "JAX_DEPTHWISE_IMPLS", flax_run),
    ):
        fast = _fast_impls(module, names)
        if not fast:
            continue
        ref_out, ref_grads = run("native")
        for impl in fast:
            out, grads = run(impl)
            for check, ref, got, measure in (
                ("impl", ref_out, out, _forward_measure),
                ("impl-grad", ref_grads, grads, _grad_measure),
            ):
                max_abs, rel, worst = measure([(n, ref[n], got[n]) for n in ref])
                name = f"{backend} {impl} vs native"
                rows.append(Comparison(check, name, max_abs, rel, floors[check], worst))
    return rows


def _closest_to_kink(model, x) -> float:
    """The smallest |input| of any ReLU in a float64 train-mode forward pass."""
    import torch

    closest = [math.inf]

    def pre(module, args):  # before the (in-place) ReLU overwrites its input
        closest[0] = min(closest[0], float(args[0].detach().abs().min()))

    model = model.to(torch.float64).train()
    hooks = [
        m.register_forward_pre_hook(pre) for m in model.modules() if isinstance(m, torch.nn.ReLU)
    ]
    try:
        with torch.no_grad():
            model(torch.from_numpy(x).to(torch.float64))
    finally:
        for h in hooks:
            h.remove()
    return closest[0]


def _randomise(model, low: LoweredNetwork, rng) -> None:
    """Draw every BatchNorm's affine parameters and running statistics, and the fc, at random."""
    import torch

    def put(tensor, values):
        tensor.copy_(torch.from_numpy(np.asarray(values, dtype=np.float32).reshape(tensor.shape)))

    with torch.no_grad():
        for op in low.ops():
            if isinstance(op, BatchNorm):
                bn, c = _at(model, op.name), op.channels
                put(bn.weight, rng.uniform(0.5, 1.5, c))
                put(bn.bias, rng.normal(0.0, 0.2, c))
                put(bn.running_mean, rng.normal(0.0, 0.2, c))
                put(bn.running_var, rng.uniform(0.5, 1.5, c))
        fc = low.head.ops[-1]
        layer = _at(model, fc.name)
        bound = 1.0 / math.sqrt(fc.in_features)  # PyTorch's default Linear init, not CSN's 0.01
        put(layer.weight, rng.uniform(-bound, bound, layer.weight.numel()))
        if layer.bias is not None:
            put(layer.bias, rng.uniform(-bound, bound, layer.bias.numel()))
