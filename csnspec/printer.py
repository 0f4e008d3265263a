"""Spec IR to canonical text (`csnspec fmt`): parsing the output gives back the same IR.

The printer omits what equals a default, writes one `stages` line when every stage shares its
family and block options, and `stage` lines otherwise.
"""

from __future__ import annotations

from .build import DEFAULT_STAGE_STRIDE, DEFAULT_STEM, DEFAULT_WIDTH
from .spec import BLOCK_OPTIONS, Network, Norm, Stage


def _dims(d) -> str:
    return "x".join(str(int(v)) for v in d)


def _num(x: float) -> str:
    # repr gives the shortest text that reads back as the same float
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") and "e" not in text else text


def _cycle(values) -> str:
    """An alternating option's value: `3x1x1/1x1x1`, or one value."""
    return "/".join(_dims(v) if isinstance(v, tuple) else _num(v) for v in values)


def _block_options(stage: Stage, after_counts: bool = False, stages=None) -> list[str]:
    """The block options that differ from their defaults, as written in a spec; with `stages`
    (a `stages` line), an alternating option that differs between them as a per-stage list."""
    out = []
    for option in BLOCK_OPTIONS:
        value = getattr(stage, option.field)
        if option.after_counts != after_counts or value is None:
            continue
        if option.cycles:
            values = [getattr(st, option.field) for st in stages or [stage]]
            if any(v != values[0] for v in values):
                out.append(f"{option.key}=[" + ",".join(_cycle(v) for v in values) + "]")
            elif value != option.default_for(stage.family):
                out.append(f"{option.key}={_cycle(value)}")
            continue
        if value == option.default_for(stage.family):
            continue
        if isinstance(value, bool):
            value = "on" if value else "off"
        elif isinstance(value, float):
            value = _num(value)
        out.append(f"{option.key}={value}")
    return out


# What may differ between the stages of one `stages` line besides blocks, width and stride.
_PER_STAGE = {opt.field: None for opt in BLOCK_OPTIONS if opt.cycles} | {"pool": None}


def _stem(net: Network) -> str | None:
    layers = [layer.model_dump() for layer in net.stem]
    default = [
        {**d, "padding": tuple(k // 2 for k in d["kernel"])}
        | ({"groups": 1, "norm": True} if d["kind"] == "conv" else {})
        for d in DEFAULT_STEM
    ]
    if layers == default:
        return None
    if not layers:
        return "stem none"
    items = []
    for layer in net.stem:
        words = [layer.kind, _dims(layer.kernel)]
        if layer.kind == "conv":
            words.append(f"out={layer.out}")
        if layer.stride != (1, 1, 1):
            words.append(f"stride={_dims(layer.stride)}")
        if tuple(layer.padding) != tuple(k // 2 for k in layer.kernel):
            words.append(f"padding={_dims(layer.padding)}")
        if layer.kind == "conv" and layer.groups != 1:
            words.append(f"groups={layer.groups}")
        if layer.kind == "conv" and not layer.norm:
            words.append("norm=off")
        items.append(" ".join(words))
    return "stem " + ", ".join(items)


def _head_convs(convs) -> list[str]:
    return [f"conv {_dims(c.kernel)} out={c.out}" + ("" if c.norm else " norm=off") for c in convs]


def _stages(net: Network) -> list[str]:
    stages = net.stages
    first = stages[0]
    common = {"blocks": 1, "width": 1, "stride": (1, 1, 1), **_PER_STAGE}
    shared = all(
        stage.model_copy(update=common) == first.model_copy(update=common) for stage in stages
    )
    if shared:
        n = len(stages)
        words = ["stages", first.family.value, *_block_options(first, stages=stages), "x"]
        words.append("[" + ",".join(str(stage.blocks) for stage in stages) + "]")
        widths = [stage.width for stage in stages]
        strides = [tuple(stage.stride) for stage in stages]
        if widths != [DEFAULT_WIDTH * 2**i for i in range(n)]:
            words.append("widths=[" + ",".join(map(str, widths)) + "]")
        if strides != [(1, 1, 1)] + [DEFAULT_STAGE_STRIDE] * (n - 1):
            words.append("strides=[" + ",".join(_dims(s) for s in strides) + "]")
        if any(stage.pool for stage in stages):
            pools = [_dims(st.pool) if st.pool else "none" for st in stages]
            words.append("pools=[" + ",".join(pools) + "]")
        words += _block_options(first, after_counts=True, stages=stages)
        return [" ".join(words)]
    lines = []
    for stage in stages:
        words = [
            "stage",
            stage.family.value,
            *_block_options(stage),
            "x",
            str(stage.blocks),
            f"width={stage.width}",
        ]
        words += _block_options(stage, after_counts=True)
        if stage.stride != (1, 1, 1):
            words.append(f"stride={_dims(stage.stride)}")
        if stage.pool:
            words.append(f"pool={_dims(stage.pool)}")
        lines.append(" ".join(words))
    return lines


def format_spec(net: Network) -> str:
    """The canonical text of a spec, ending with a newline."""
    lines = [f"network {net.name}", f"input {_dims(net.input)}", f"classes {net.classes}"]
    if net.norm != Norm():
        lines.append(f"norm batchnorm eps={_num(net.norm.eps)} momentum={_num(net.norm.momentum)}")
    stem = _stem(net)
    if stem:
        lines.append(stem)
    lines += _stages(net)
    head = net.head
    if head.window is not None or head.dropout or head.convs or head.post_convs:
        items = _head_convs(head.convs)
        items.append("avgpool" + (f" {_dims(head.window)}" if head.window else ""))
        items += _head_convs(head.post_convs)
        if net.head.dropout:
            items.append(f"dropout {_num(net.head.dropout)}")
        items.append("fc")
        lines.append("head " + ", ".join(items))
    return "\n".join(lines) + "\n"
