"""Inference with a generated PyTorch model for `csnspec eval` and after training."""

from __future__ import annotations

import numpy as np


def load_into(model, weights: dict[str, np.ndarray]) -> None:
    """Load op-name-keyed arrays into `model`; a clear error names what does not fit."""
    import torch

    from ..schema import check_fit

    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    check_fit(weights, expected, "the weights do not fit the spec")
    model.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
    )


def predictor(module, low, classes: int, weights, device: str = "auto", max_views: int = 64):
    """A function (N, 3, T, H, W) float32 -> (N, classes) logits, model in eval mode.

    `weights` may be a PyTorch state dict or Flax-named (converted through the spec's IR)."""
    import torch

    from ..weights.convert import flax_to_torch, framework_of
    from .devices import torch_device

    dev = torch_device(device)
    model = module.build(num_classes=classes)
    if weights is not None:
        if framework_of(weights) == "flax":
            weights = flax_to_torch(weights, low)
        load_into(model, weights)
    model.to(dev).eval()

    @torch.no_grad()
    def predict(x: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(x), max_views):
            chunk = torch.from_numpy(x[i : i + max_views]).to(dev)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                out.append(model(chunk).float().cpu().numpy())
        return np.concatenate(out)

    return predict
