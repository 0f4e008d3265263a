"""The device a run computes on, picked once per backend, with one clear error when the asked
device is not there."""

from __future__ import annotations

from ..errors import CsnError


def torch_device(name: str, local_rank: int = 0):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise CsnError(
            "--device cuda: this PyTorch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'})",
            hint="use --device cpu, or --device auto to take a GPU when there is one",
        )
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def jax_devices(name: str) -> list:
    import jax

    backend = {"auto": None, "cpu": "cpu", "cuda": "gpu"}[name]
    try:
        return jax.local_devices(backend=backend)
    except RuntimeError as err:
        raise CsnError(
            f"--device {name}: jax has no such device ({str(err).splitlines()[0]})",
            hint="use --device cpu, or install jax with CUDA support",
        ) from None


def device_name(cfg) -> str:
    """What `cfg.device` resolves to for `cfg.backend`, as printed (e.g. 'cpu', 'cuda:0')."""
    if cfg.backend == "torch":
        return str(torch_device(cfg.device))
    devices = jax_devices(cfg.device)
    return f"{devices[0].platform} x{len(devices)}" if len(devices) > 1 else devices[0].platform
