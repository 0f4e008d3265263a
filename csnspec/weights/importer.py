"""Map a public CSN checkpoint onto a spec's generated model: names, shapes, class count.

Every tensor the lowered IR needs is looked up under the name the chosen layout gives it and
checked against the IR's shape; every checkpoint key must be used. All problems are reported
together, by name, in one CsnError, and nothing is written unless the whole mapping fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CsnError
from ..ops import Conv3d, Linear, LoweredNetwork
from .layouts import (
    BN_FIELDS,
    C2_HEAD,
    SOURCES,
    Layout,
    detect,
    param_ops,
    target_shapes,
)


@dataclass
class Imported:
    """The generated model's tensors (IR names, forward order) and how they were found."""

    tensors: dict
    layout: Layout
    filled: list[str] = field(default_factory=list)  # keys the checkpoint lacks, set to zero
    notes: list[str] = field(default_factory=list)  # differences worth knowing, not errors
    cfg: dict | None = None  # the preprocessing the weights expect (weights.metadata)

    @property
    def parameters(self) -> int:
        """Learned values: weights, biases, BN affines (not the BN statistics)."""
        stats = ("running_mean", "running_var", "num_batches_tracked")
        return sum(t.numel() for k, t in self.tensors.items() if not k.endswith(stats))


def map_state(
    state: dict,
    low: LoweredNetwork,
    source: str,
    filename: str = "<checkpoint>",
    *,
    allow_nonfinite: bool = False,
):
    """The Imported tensors of `state` (a flat {key: tensor} dict from `source`) for `low`.

    Tensors that are not real floats (step counters aside), or hold NaN or inf unless
    `allow_nonfinite`, are refused by their checkpoint names (weights.io.checked_values)."""
    import torch

    from .io import checked_values

    layout, state = _layout_of(source, state, filename)
    classes = _checkpoint_classes(layout, state, low) or low.spec.classes
    names, unsupported = layout.modules(low, classes)
    if unsupported:
        lines = [f"{reason}: {', '.join(where)}" for reason, where in unsupported.items()]
        raise CsnError(
            f"{layout.title} cannot hold spec {low.name}:\n  " + "\n  ".join(lines),
            filename=filename,
            hint="import into a spec with the implementation's blocks"
            " (e.g. `stages ir-csn x [3,8,36,3]`)",
        )
    mapping = _Mapping(layout, low, state)
    mapping.run(names)
    if mapping.missing or mapping.shapes or mapping.unused:
        raise mapping.error(filename)
    by_source = {mapping.sources[k]: t for k, t in mapping.tensors.items() if k in mapping.sources}
    checked, value_notes = checked_values(by_source, filename, allow_nonfinite=allow_nonfinite)
    tensors = {}
    for k, t in mapping.tensors.items():
        t = checked.get(mapping.sources.get(k), t)
        tensors[k] = t.to(torch.long) if k.endswith(".num_batches_tracked") else t
    notes = _notes(layout, low) + value_notes
    return Imported(tensors, layout, mapping.filled, notes)


def _notes(layout: Layout, low: LoweredNetwork) -> list[str]:
    """What the spec says differently from the implementation, where the weights cannot tell:
    the names and shapes all fit, but the outputs will not match the implementation's."""
    spec, notes = low.spec, []
    if layout.eps != spec.norm.eps:
        notes.append(
            f"{layout.title} builds BatchNorm with eps={_num(layout.eps)} but the spec says "
            f"eps={_num(spec.norm.eps)}; outputs will differ slightly "
            f"(write `norm batchnorm eps={_num(layout.eps)}` to match)"
        )
    stages = [i + 1 for i, st in enumerate(spec.stages) if st.stride_at == "first"]
    if stages:
        notes.append(
            f"{layout.title} strides the 3x3x3 conv, but stages {_list(stages)} of the spec "
            "stride the first 1x1x1 conv (`stride-at=first`)"
        )
    stages = [i + 1 for i, st in enumerate(spec.stages) if st.ip_relu]
    if stages:
        notes.append(
            f"{layout.title} has no ReLU after the extra 1x1x1 conv of ip blocks, but stages "
            f"{_list(stages)} of the spec do (`ip-relu=on`)"
        )
    return notes


def _layout_of(source: str, state: dict, filename: str) -> tuple[Layout, dict]:
    if source not in SOURCES:
        raise CsnError(f"unknown source '{source}'", hint="--from takes " + " | ".join(SOURCES))
    layout = detect(source, state)
    if layout is None:
        sample = ", ".join(list(state)[:3])
        raise CsnError(
            "cannot tell which VMZ layout this checkpoint uses (PyTorch `stem.0.weight`, ... "
            f"or Caffe2 `conv1_w`, ...); its first keys are {sample}",
            filename=filename,
            hint="is it from another implementation? try --from pytorchvideo or mmaction2",
        )
    if layout.name == "mmaction2" and not any(k.startswith("backbone.") for k in state):
        # a backbone-only checkpoint (the `pretrained=` files): the same names, unprefixed
        state = {k if k.startswith("cls_head.") else f"backbone.{k}": v for k, v in state.items()}
    return layout, state


class _Mapping:
    """One pass over the IR's tensors: what was found, and every problem, by name."""

    def __init__(self, layout: Layout, low: LoweredNetwork, state: dict):
        self.layout, self.low, self.state = layout, low, state
        self.tensors: dict = {}
        self.sources: dict[str, str] = {}  # IR key -> checkpoint key
        self.filled: list[str] = []
        self.missing: list[tuple[str, str, tuple]] = []  # (checkpoint key, IR key, shape)
        self.shapes: list[str] = []
        self.hints: list[str] = []
        self.unused: list[str] = []

    def run(self, names: dict[str, str]) -> None:
        import torch

        ops = {op.name: op for op in param_ops(self.low.ops())}
        used = set()
        for key, shape in target_shapes(self.low).items():
            op_name, fld = key.rsplit(".", 1)
            op = ops[op_name]
            src = self.layout.source_key(names[op_name], op, fld)
            if src is None or src not in self.state:
                if fld == "num_batches_tracked":  # a step counter; Caffe2, PyTorch < 0.4.1 lack it
                    self.tensors[key] = torch.zeros((), dtype=torch.long)
                    self.filled.append(key)
                else:
                    self.missing.append((src, key, shape))
                continue
            used.add(src)
            t = self.state[src]
            if isinstance(op, Linear) and t.dim() == 5 and t.shape[2:] == (1, 1, 1):
                t = t.reshape(t.shape[:2])  # Caffe2's convolutional prediction: a 1x1x1 conv
            if tuple(t.shape) != shape:
                self.shapes.append(f"{src}: {_dims(t.shape)}, but {key} is {_dims(shape)}")
                hint = _shape_hint(op, src, tuple(t.shape))
                if hint and hint not in self.hints:
                    self.hints.append(hint)
                continue
            self.sources[key] = src
            self.tensors[key] = t
        self.unused = [k for k in self.state if k not in used]

    def error(self, filename: str) -> CsnError:
        missing = [f"{src}  (for {key}, {_dims(shape)})" for src, key, shape in self.missing]
        unused = [f"{k}  ({_dims(self.state[k].shape)})" for k in self.unused]
        parts = [
            f"{title} ({len(lines)}):\n    " + "\n    ".join(lines)
            for title, lines in (
                ("wrong shape", self.shapes),
                ("missing from the checkpoint", missing),
                ("in the checkpoint but not in the spec", unused),
            )
            if lines
        ]
        hints = list(self.hints)
        family = _family_hint(self.layout, self.low, self.unused)
        if family:
            hints.append(family)
        if self.missing and all(key.startswith("head.") for _, key, _ in self.missing):
            hints.append("the checkpoint has no classifier: it holds a backbone only")
        return CsnError(
            f"the {self.layout.title} checkpoint does not fit spec {self.low.name}:\n  "
            + "\n  ".join(parts),
            filename=filename,
            hint="\nhint: ".join(hints) or None,
        )


def _checkpoint_classes(layout: Layout, state: dict, low: LoweredNetwork) -> int | None:
    if layout.name == "vmz-caffe2":  # the blob name says it: last_out_L400_w
        found = {int(m.group(1)) for k in state if (m := C2_HEAD.match(k))}
        return found.pop() if len(found) == 1 else None
    t = state.get(layout.head.format(last=layout.last(low), classes=0) + ".weight")
    return int(t.shape[0]) if t is not None and t.dim() >= 2 else None


def _shape_hint(op, src: str, got: tuple) -> str | None:
    if isinstance(op, Linear) and len(got) == 2 and got[1] == op.in_features:
        return f"the checkpoint's classifier has {got[0]} classes: write `classes {got[0]}`"
    if isinstance(op, Conv3d) and op.groups > 1 and len(got) == 5 and got[1] == op.in_channels:
        return (
            f"{src} is a dense conv ({got[1]} input channels per filter) where the spec has a "
            f"grouped conv (groups={op.groups}, {op.in_channels // op.groups} per filter): "
            "the checkpoint's model was built without groups, or the spec's block family differs"
        )
    if isinstance(op, Conv3d) and op.groups == 1 and len(got) == 5 and got[1] < op.in_channels:
        return f"{src} is a grouped conv where the spec has a dense one: check the block family"
    return None


def _family_hint(layout: Layout, low: LoweredNetwork, unused: list[str]) -> str | None:
    """Which other block family the checkpoint's unused keys belong to, if any."""
    if not unused:
        return None
    families = {b.family for b in low.blocks()}
    best = None
    for family, table in layout.slots.items():
        if family in families:
            continue
        candidates = set()
        n = 0
        for s, stage in enumerate(low.stages, start=1):
            for b in range(len(stage.blocks)):
                for module in table.values():
                    candidates.update(_keys_of(layout, module.format(s=s, b=b, n=n)))
                n += 1
        hits = sum(1 for k in unused if k in candidates)
        if hits * 2 >= len(unused) and (best is None or hits > best[1]):
            best = (family, hits)
    if best is None:
        return None
    spec_families = ", ".join(sorted(f.value for f in families))
    return f"the checkpoint's blocks look like {best[0].value}, the spec's are {spec_families}"


def _keys_of(layout: Layout, module: str) -> list[str]:
    """Every key a conv, BN or linear module can have in this layout."""
    if layout.fields is None:
        return [f"{module}.{f}" for f in ("weight", "bias", *BN_FIELDS[2:])]
    suffixes = {*layout.fields.values(), *layout.bn_fields.values()}
    return [f"{module}_{f}" for f in suffixes]


def _list(items) -> str:
    return ", ".join(map(str, items))


def _num(x: float) -> str:
    """A BN eps as a spec writes it: 1e-5, 1e-3, 0.01."""
    if x >= 0.01:
        return f"{x:g}"
    mantissa, exponent = f"{x:.6e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _dims(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def import_checkpoint(
    checkpoint,
    net,
    source: str,
    out=None,
    *,
    class_names: list[str] | None = None,
    allow_nonfinite: bool = False,
    inputs=(),
) -> Imported:
    """Read `checkpoint`, map it onto spec `net` (a csnspec.spec.Network), and write `out`.

    `out` (a .safetensors path) is written atomically, and only if everything fits, with the
    source's preprocessing in its header (weights.metadata); `inputs` are files it must not
    replace (the checkpoint always counts as one).
    """
    from ..atomic import check_target
    from ..lowering import lower
    from .io import read_checkpoint, save_safetensors
    from .metadata import clip_of, header, pretrained_cfg

    inputs = (checkpoint, *inputs)
    if out is not None:
        check_target(out, inputs)  # before reading a large checkpoint
    state = read_checkpoint(checkpoint)
    low = lower(net)
    imported = map_state(
        state, low, source, filename=str(checkpoint), allow_nonfinite=allow_nonfinite
    )
    classes = low.spec.classes
    if class_names is not None and len(class_names) != classes:
        raise CsnError(
            f"{len(class_names)} class names for a classifier of {classes} classes",
            hint="give one name per class, in label order",
        )
    imported.cfg = pretrained_cfg(
        imported.layout.name,
        bn_eps=imported.layout.eps,
        num_classes=classes,
        class_names=class_names,
        **clip_of(imported.layout.name, low.input_shape[1]),
    )
    if out is not None:
        meta = {"format": "pt", "csnspec.network": net.name, "csnspec.source": imported.layout.name}
        save_safetensors(out, imported.tensors, {**meta, **header(imported.cfg)}, inputs=inputs)
    return imported
