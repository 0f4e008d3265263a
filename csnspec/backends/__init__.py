"""Code generators: each backend prints a lowered network as one standalone Python module.

A backend is a module `csnspec.backends.<name>` with `render(low, depthwise=None) -> str`; both
print what `csnspec.backends.emit` decides from the lowered IR (`csnspec.ops`), and import
nothing heavier than jinja2. `load_module` renders and imports a module in memory.
"""

from __future__ import annotations

import hashlib
import importlib
import linecache
import sys
import types

from ..spec import Network

BACKENDS = ("torch", "flax")


def render(low, backend: str, *, depthwise: str | None = None) -> str:
    """The source text of the generated module for a lowered network.

    depthwise: the implementation the module's depthwise convs run by default ("auto" when
    None); see `emit.depthwise_choices(backend)`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    return importlib.import_module(f"{__name__}.{backend}").render(low, depthwise)


def module_name(net: Network) -> str:
    """The file name of a spec's generated module: its network name as a Python identifier."""
    from .common import module_stem
    from .emit import check_module_name

    return module_stem(check_module_name(net.name)) + ".py"


def load_module(low, backend: str, *, depthwise: str | None = None) -> types.ModuleType:
    """Render `low` for `backend` and import it in memory: no file is written.

    Each call executes a fresh module. It is registered in `sys.modules` as
    `csnspec_generated_<backend>_<module>_<first 12 hex digits of the source's sha256>`, so
    one source always gets one name (a later load of the same source replaces the entry, and
    different specs or options never collide), and its source is put in `linecache` under
    `<csnspec generated>/<that name>.py`, so that tracebacks, `inspect`, `torch.jit.script`
    and `torch.compile` can read it.
    """
    from .common import module_stem

    text = render(low, backend, depthwise=depthwise)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    name = f"csnspec_generated_{backend}_{module_stem(low.name)}_{digest}"
    filename = f"<csnspec generated>/{name}.py"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    try:
        exec(compile(text, filename, "exec"), module.__dict__)  # noqa: S102 - our own output
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
