"""Starting a run from other weights (`--init`), and which tensors a recipe freezes.

Tensors are matched by name and shape through the spec's lowered IR: the classifier is
re-initialised when the class count differs; anything else that does not fit means the weights
belong to another spec, and that is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import CsnError
from ..ops import BatchNorm, Linear


@dataclass
class InitNote:
    """What `--init` did, tensor by tensor name."""

    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "init": self.source,
            "loaded": self.loaded,
            "reinitialised": self.reinitialised,
            "skipped": self.skipped,
        }

    def text(self) -> str:
        lines = [f"init from {self.source}: {len(self.loaded)} tensors loaded"]
        if self.reinitialised:
            lines.append(f"  re-initialised: {', '.join(self.reinitialised)}")
        if self.skipped:
            lines.append(f"  skipped (not in the spec): {', '.join(self.skipped)}")
        return "\n".join(lines)


def op_groups(low) -> dict[str, str]:
    """Op name -> 'stem', 'stage<N>' (1-based) or 'head'."""
    groups = {op.name: "stem" for op in low.stem.ops}
    for n, stage in enumerate(low.stages, 1):
        for block in stage.blocks:
            groups.update({op.name: f"stage{n}" for op in block.ops})
    groups.update({op.name: "head" for op in low.head.ops})
    return groups


def classifier_ops(low) -> list[str]:
    return [op.name for op in low.head.ops if isinstance(op, Linear)]


def bn_ops(low) -> list[str]:
    return [op.name for op in low.ops() if isinstance(op, BatchNorm)]


def op_of(tensor: str) -> str:
    return tensor.rsplit(".", 1)[0]


def frozen_ops(low, freeze_stages: int | None) -> set[str]:
    """The ops of the stem and the first N stages (MMAction2's `frozen_stages`: 0 = the stem)."""
    if freeze_stages is None:
        return set()
    keep = {"stem", *(f"stage{n}" for n in range(1, freeze_stages + 1))}
    return {name for name, group in op_groups(low).items() if group in keep}


def init_weights(path, low, backend: str, own: dict[str, tuple]) -> tuple[dict, InitNote]:
    """The tensors of `path` that fit the model (`own`: name -> shape, in `backend`'s naming),
    and the note of what was loaded, re-initialised and skipped."""
    from ..weights.convert import flax_to_torch, framework_of, torch_to_flax
    from .eval_run import load_weights

    weights = load_weights(path)
    if not weights:
        raise CsnError(f"{path}: holds no tensors")
    side = framework_of(weights)
    if side != backend:
        ckpt_low = _with_checkpoint_classes(low, weights, side, path)
        convert = torch_to_flax if side == "torch" else flax_to_torch
        try:
            weights = convert(weights, ckpt_low)
        except CsnError as err:
            raise CsnError(f"{path}: {err}") from None
    note = InitNote(str(path))
    fit = {}
    heads = set(classifier_ops(low))
    for name, shape in own.items():
        w = weights.get(name)
        if w is not None and tuple(np.shape(w)) == tuple(shape):
            fit[name] = w
            note.loaded.append(name)
        else:
            note.reinitialised.append(name)
    note.skipped = sorted(set(weights) - set(own))
    wrong = [
        n
        for n in note.reinitialised
        if op_of(n) not in heads and not n.endswith("num_batches_tracked")
    ]
    if wrong:
        shown = ", ".join(
            f"{n} {tuple(np.shape(weights[n]))} vs {tuple(own[n])}"
            if n in weights
            else f"{n} missing"
            for n in wrong[:5]
        )
        raise CsnError(
            f"{path}: the weights do not fit spec '{low.name}' ({shown}"
            + (" ..." if len(wrong) > 5 else "")
            + ")",
            hint="--init takes weights of the same spec (imported or trained); only the "
            "classifier may differ",
        )
    return fit, note


def _with_checkpoint_classes(low, weights, side: str, path):
    """The IR for the checkpoint's own class count, so that its tensors convert by name."""
    from ..lowering import lower

    fc = classifier_ops(low)[-1]
    w = weights.get(f"{fc}.weight" if side == "torch" else f"{fc}.kernel")
    if w is None:
        raise CsnError(f"{path}: no classifier '{fc}' in the weights; not weights of '{low.name}'")
    classes = w.shape[0] if side == "torch" else w.shape[-1]
    return lower(low.spec.with_input(classes=int(classes)))
