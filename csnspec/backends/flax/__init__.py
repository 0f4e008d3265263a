"""The Flax backend: a lowered network as one standalone Flax NNX module (jax, flax, numpy only).

Layout is channels-last (N, T, H, W, C) throughout; `from_torch_layout` in the generated module
turns a PyTorch clip batch (N, C, T, H, W) into it. Attribute paths equal the IR op names
(`layer2.0.conv_b` is `model.layer2[0].conv_b`), so weight conversion maps name to name.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from ...ops import LoweredNetwork
from . import context

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def render(low: LoweredNetwork, depthwise: str | None = None) -> str:
    """The source text of the generated Flax module (deterministic: same IR, same bytes)."""
    if not isinstance(low, LoweredNetwork):
        raise TypeError(f"render() takes a LoweredNetwork, not {type(low).__name__}")
    return _ENV.get_template("module.py.j2").render(**context.build(low, depthwise))
