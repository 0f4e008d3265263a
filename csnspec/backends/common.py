"""What every backend prints with: safe identifiers and numbers, the header facts, and the
layout of statements as `ruff format` lays them out.

Defence in depth: the spec IR already validates network names, but a `Network` can be built
with `model_construct` (no validation), so nothing from a spec reaches a template unless it
passes the checks here again. Backend-neutral: no torch, no jax.
"""

from __future__ import annotations

import hashlib
import keyword
import math
import re
from dataclasses import dataclass

from ..errors import CsnError
from ..ops import LoweredNetwork

# The spec IR's own alphabet for network names (csnspec.spec.NAME_RE), restated here so the
# backends do not trust a caller that skipped validation. ASCII only: no look-alike letters.
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}\Z", re.ASCII)
_ATTR_RE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z", re.ASCII)  # op names: "conv_a", "bn1"


def check_network_name(name) -> str:
    """The network name if it is safe to print in generated code; CsnError otherwise."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise CsnError(
            f"network name {ascii(name)[:80]} cannot be used in generated code",
            hint="a network name starts with a letter and has at most 64 ASCII letters, "
            "digits, '-' or '_'",
        )
    if name.startswith("__") or keyword.iskeyword(module_stem(name)):
        raise CsnError(f"network name {name!r} is reserved in Python")
    return name


def module_stem(name: str) -> str:
    """The module (file) name of a network: `ir-csn-50` -> `ir_csn_50`."""
    return name.replace("-", "_")


def class_name(name: str) -> str:
    """The CamelCase class name of a network: `ir-csn-50` -> `IrCsn50`, `a-50-2b` -> `A50_2b`."""
    out = ""
    for part in re.split(r"[-_]+", check_network_name(name)):
        if not part:
            continue
        if out and out[-1].isdigit() and part[0].isdigit():
            out += "_"  # keep `50` and `2plus1d` apart
        out += part[0].upper() + part[1:]
    return check_identifier(out)


def check_identifier(text) -> str:
    """`text` if it is a plain ASCII Python identifier (not a keyword, not a dunder)."""
    if (
        not isinstance(text, str)
        or not text.isascii()
        or not text.isidentifier()
        or keyword.iskeyword(text)
        or text.startswith("__")
    ):
        raise CsnError(f"{ascii(text)[:80]} is not a safe identifier for generated code")
    return text


def check_attr_path(name) -> tuple[str, ...]:
    """The parts of an op's dotted name ("layer2.0.conv_b"), each an attribute or an index."""
    parts = tuple(name.split(".")) if isinstance(name, str) else ()
    if not parts or not all(p.isdecimal() and p.isascii() or _ATTR_RE.match(p) for p in parts):
        raise CsnError(f"op name {ascii(name)[:80]} cannot be used in generated code")
    for p in parts:
        if not p.isdecimal():
            check_identifier(p)
    return parts


def num(value) -> str:
    """Python source for a number from the IR: ints as digits, floats with repr."""
    if type(value) is int:
        return str(value)
    if type(value) is float and math.isfinite(value):
        return repr(value)
    raise CsnError(f"{ascii(value)[:80]} is not a number that can be printed in generated code")


def dims(values) -> str:
    """A tuple literal of ints: (1, 3, 3)."""
    return "(" + ", ".join(num(v) for v in values) + ")"


def shape_text(shape) -> str:
    """A per-clip shape as text: 64x8x56x56."""
    return "x".join(num(v) for v in shape)


# -- header facts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """The facts every generated module states at its top."""

    network: str
    version: str
    spec_sha256: str
    input_shape: str
    classes: int
    flops: int
    params: int
    bn_params: int
    interactions: int
    activations: int


def header(low: LoweredNetwork) -> Header:
    from .. import __version__, analyse, format_spec

    check_network_name(low.spec.name)  # both: a LoweredNetwork can be built by hand too
    total = analyse(low).total
    digest = hashlib.sha256(format_spec(low.spec).encode("utf-8")).hexdigest()
    return Header(
        network=check_network_name(low.name),
        version=__version__,
        spec_sha256=digest,
        input_shape=shape_text(low.input_shape),
        classes=int(low.output_shape[0]),
        flops=total.flops,
        params=total.params,
        bn_params=total.bn_params,
        interactions=total.interactions,
        activations=total.activations,
    )


def thousands(n: int) -> str:
    """12,345,678."""
    return f"{int(n):,}"


# -- layout ---------------------------------------------------------------------------------

LINE = 88  # ruff's default; the output is formatted under it and under the repo's 100


def wrap(head: str, args, indent: int = 0, tail: str = "") -> str:
    """`head(args)tail` on one line if it fits, else one argument per line (magic comma)."""
    pad = " " * indent
    one = f"{pad}{head}({', '.join(args)}){tail}"
    if len(one) <= LINE or not args:
        return one
    inner = " " * (indent + 4)
    return "\n".join([f"{pad}{head}(", *(f"{inner}{a}," for a in args), f"{pad}){tail}"])


def commented(stmt: str, comment: str | None, indent: int) -> str:
    """A statement with a trailing comment, or the comment on the line above if too long."""
    pad = " " * indent
    if not comment:
        return pad + stmt
    if len(pad + stmt) + 4 + len(comment) <= LINE:
        return f"{pad}{stmt}  # {comment}"
    return f"{pad}# {comment}\n{pad}{stmt}"


def docstring(summary: str, detail: str, indent: int) -> str:
    """A one-line docstring `summary: detail.` if it fits, else summary and a detail line."""
    one = f"{summary}: {detail}."
    if indent + len(one) + 6 <= LINE:
        return one
    pad = " " * indent
    words, lines = f"{detail[0].upper()}{detail[1:]}.".split(" "), [""]
    for word in words:  # the detail wrapped at the line length
        if lines[-1] and indent + len(lines[-1]) + 1 + len(word) > LINE:
            lines.append(word)
        else:
            lines[-1] = f"{lines[-1]} {word}" if lines[-1] else word
    body = f"\n{pad}".join(lines)
    return f"{summary}.\n\n{pad}{body}\n{pad}"
