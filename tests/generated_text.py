"""Reading generated modules in tests: their own code apart from the inlined kernels."""

from __future__ import annotations

KERNELS = "\n# -- depthwise convolutions (inlined from csnspec.kernels) "
CONVS = "\n# -- dense convolutions (inlined from csnspec.kernels) "
NETWORK = "\n# -- the network "


def own_code(text: str) -> str:
    """The generated module without the inlined kernel texts (csnspec.kernels owns them, and
    formats them as the repo does, at line length 100)."""
    starts = [text.index(m) for m in (KERNELS, CONVS) if m in text]
    if not starts:
        return text
    return text[: min(starts)] + text[text.index(NETWORK) :]
