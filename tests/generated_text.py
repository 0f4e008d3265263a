"""Reading generated modules in tests: their own code apart from the inlined kernels."""

from __future__ import annotations

KERNELS = "\n# -- depthwise convolutions (inlined from csnspec.kernels) "
NETWORK = "\n# -- the network "


def own_code(text: str) -> str:
    """The generated module without the inlined kernel text (csnspec.kernels owns that, and
    formats it as the repo does, at line length 100)."""
    if KERNELS not in text:
        return text
    return text[: text.index(KERNELS)] + text[text.index(NETWORK) :]
