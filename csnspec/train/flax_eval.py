"""Inference with a generated Flax model for `csnspec eval`: weights in either layout."""

from __future__ import annotations

import numpy as np


def predictor(module, low, classes: int, weights, device: str = "auto", max_views: int = 64):
    """A function (N, 3, T, H, W) float32 -> (N, classes) logits, model in eval mode.

    `weights` may be Flax-named (what the Flax loop writes) or a PyTorch state dict (what the
    PyTorch loop writes, or an imported public checkpoint); the latter is converted.
    """
    from flax import nnx

    from ..weights.convert import flax_model, framework_of, torch_to_flax

    flat = torch_to_flax(weights, low) if framework_of(weights) == "torch" else weights
    model = flax_model(module.build, flat, num_classes=classes)
    model.eval()
    forward = nnx.jit(lambda m, x: m(x))

    def predict(x: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(x), max_views):
            chunk = np.ascontiguousarray(x[i : i + max_views].transpose(0, 2, 3, 4, 1))
            out.append(np.asarray(forward(model, chunk), np.float32))
        return np.concatenate(out)

    return predict
