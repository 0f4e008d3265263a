"""Fast depthwise 3D convolution kernels, written to be pasted verbatim into generated modules.

Each kernel file has a header of imports, then the line `# csnspec: inline-begin`; the text after that
line is self-contained (it uses only the header's imports) and is what a code generator inlines.
`torch_depthwise` holds the dispatcher `depthwise_conv3d`, the module `DepthwiseConv3d` and the eager CPU
implementation; `triton_depthwise` the CUDA kernels (torch text first, then Triton text, in one module);
`jax_depthwise` the Flax/JAX counterpart; `torch_convs` and `jax_convs` dense-conv helpers (a strided
1x1x1 conv as a subsample then a stride-1 conv; for XLA, a 3D conv as 2D convs per time tap).
"""

from __future__ import annotations

from importlib import resources

INLINE_MARKER = "# csnspec: inline-begin"
KERNELS = (
    "torch_depthwise",
    "triton_depthwise",
    "jax_depthwise",
    "torch_convs",
    "jax_convs",
)


def inline_source(name: str) -> str:
    """The inlinable text of kernel file `name` (everything after the marker line)."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel source {name!r}; choose one of {', '.join(KERNELS)}")
    text = resources.files(__package__).joinpath(f"{name}.py").read_text(encoding="utf-8")
    _, marker, body = text.partition(INLINE_MARKER + "\n")
    if not marker:
        raise RuntimeError(f"{name}.py has no line {INLINE_MARKER!r}")
    return body.lstrip("\n")


def header_imports(name: str) -> list[str]:
    """The import lines above the marker of kernel file `name` (what the inlined text needs)."""
    text = resources.files(__package__).joinpath(f"{name}.py").read_text(encoding="utf-8")
    head = text.partition(INLINE_MARKER)[0]
    return [line for line in head.splitlines() if line.startswith(("import ", "from "))]


def inline_module(*names: str, module_name: str = "csnspec_inline_kernels"):
    """A module built the way a generated module holds the kernels: header imports, then each text.

    `inline_module("torch_depthwise", "triton_depthwise")` is what a generated PyTorch module carries.
    """
    import linecache
    import sys
    import types

    imports = []
    for name in names:
        imports += [line for line in header_imports(name) if line not in imports]
    source = "\n".join(imports) + "\n\n" + "\n\n".join(inline_source(name) for name in names)
    module = types.ModuleType(module_name)
    module.__file__ = f"<{module_name}>"
    # TorchScript reads a class's source through linecache, and looks modules up in sys.modules
    linecache.cache[module.__file__] = (len(source), None, source.splitlines(True), module.__file__)
    sys.modules[module_name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own text
    return module
