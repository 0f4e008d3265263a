"""Code generators: each backend prints a lowered network as one standalone Python module.

A backend is a module `csnspec.backends.<name>` with `render(low) -> str`; it reads only the
lowered IR (`csnspec.ops`) and imports nothing heavier than jinja2.
"""

from __future__ import annotations

import importlib

from ..spec import Network

BACKENDS = ("torch", "flax")


def render(low, backend: str) -> str:
    """The source text of the generated module for a lowered network."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    return importlib.import_module(f"{__name__}.{backend}").render(low)


def module_name(net: Network) -> str:
    """The file name of a spec's generated module: its network name as a Python identifier."""
    from .common import check_network_name, module_stem

    return module_stem(check_network_name(net.name)) + ".py"
