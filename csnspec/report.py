"""Complexity reports as a text table, JSON or CSV (`csnspec stats`)."""

from __future__ import annotations

from .analysis import METRICS, Report

# column title, metric, scale, decimals
_COLUMNS = (
    ("GFLOPs", "flops", 1e9, 3),
    ("params (M)", "params", 1e6, 3),
    ("BN params (K)", "bn_params", 1e3, 1),
    ("interactions (G)", "interactions", 1e9, 4),
    ("activations (M)", "activations", 1e6, 2),
)


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def _convention(report: Report) -> str:
    conv = report.convention
    return f"; FLOPs and params as {conv.name} counts them: {conv.summary}" if conv else ""


def table(report: Report, by: str) -> str:
    """A fixed-width table with one row per part and a total."""
    head = ["name", "kind", "output"] + [c[0] for c in _COLUMNS]
    rows = [
        [r.name, r.kind, _shape(r.out_shape)]
        + [f"{getattr(r.cost, m) / s:,.{d}f}" for _, m, s, d in _COLUMNS]
        for r in report.rows(by)
    ]
    rows.append(
        ["total", "", _shape((len(report.ops) and report.ops[-1].out_shape) or ())]
        + [f"{getattr(report.total, m) / s:,.{d}f}" for _, m, s, d in _COLUMNS]
    )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = [f"{report.network}  (input {_shape(report.input_shape)}{_convention(report)})"]

    def fmt(cells):
        left = [str(c).ljust(w) for c, w in zip(cells[:3], widths[:3])]
        right = [str(c).rjust(w) for c, w in zip(cells[3:], widths[3:])]
        return "  ".join(left + right).rstrip()

    lines.append(fmt(head))
    lines.append("  ".join("-" * w for w in widths))
    lines += [fmt(r) for r in rows[:-1]]
    lines.append("  ".join("-" * w for w in widths))
    lines.append(fmt(rows[-1]))
    return "\n".join(lines) + "\n"


def as_json(report: Report, by: str) -> str:
    """Exact integer counts, per part and in total."""
    import json  # (here rather than at the top: `stats` prints a table by default)

    doc = {
        "network": report.network,
        "input": list(report.input_shape),
        "by": by,
        **({"convention": report.convention.name} if report.convention else {}),
        "rows": [
            {"name": r.name, "kind": r.kind, "output": list(r.out_shape), **r.cost.as_dict()}
            for r in report.rows(by)
        ],
        "total": report.total.as_dict(),
    }
    return json.dumps(doc, indent=2) + "\n"


def as_csv(report: Report, by: str) -> str:
    """One line per part and a total, exact integers."""
    import csv
    import io

    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["name", "kind", "output", *METRICS])
    for r in report.rows(by):
        w.writerow([r.name, r.kind, _shape(r.out_shape), *(getattr(r.cost, m) for m in METRICS)])
    w.writerow(["total", "", "", *(getattr(report.total, m) for m in METRICS)])
    return out.getvalue()


FORMATS = {"table": table, "json": as_json, "csv": as_csv}
