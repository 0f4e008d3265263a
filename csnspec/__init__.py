"""csnspec: a compiler for channel-separated video networks.

>>> import csnspec
>>> net = csnspec.load("specs/ipcsn152.csn")      # the spec IR
>>> csnspec.stats(net).total.flops                 # multiply-adds per clip
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import CsnError
from .parse import load, parse

__all__ = [
    "CsnError",
    "__version__",
    "analyse",
    "create_model",
    "format_spec",
    "list_models",
    "load",
    "lower",
    "parse",
    "stats",
]


def lower(net):
    """The lowered, shape-annotated op tree of a spec (see `csnspec.ops`)."""
    from .lowering import lower as _lower

    return _lower(net)


def analyse(low):
    """The complexity report of a lowered network (see `csnspec.analysis`)."""
    from .analysis import analyse as _analyse

    return _analyse(low)


def stats(net):
    """The complexity report of a spec: per op, block, stage and the total."""
    return analyse(lower(net))


def format_spec(net) -> str:
    """The canonical text of a spec."""
    from .printer import format_spec as _format

    return _format(net)


def create_model(name_or_path_or_spec, **options):
    """A ready model of a shipped spec, a .csn file or a Network (see `csnspec.models`)."""
    from .models import create_model as _create

    return _create(name_or_path_or_spec, **options)


def list_models() -> list[str]:
    """The shipped models `create_model` takes."""
    from .models import list_models as _list

    return _list()
