"""`csnspec list`: the shipped models `csnspec.create_model` takes, with their complexity."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("list", help="list the shipped models (specs/) with their complexity")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..models import list_models, model_info

    rows = [model_info(name) for name in list_models()]
    header = ("name", "network", "input", "classes", "GFLOPs", "params (M)")
    table = [header] + [
        (
            r.name,
            r.network,
            "x".join(map(str, r.input)),
            str(r.classes),
            f"{r.flops / 1e9:.2f}",
            f"{r.params / 1e6:.2f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
    return 0
