"""Search plots as PNG, in the shapes of the paper's Figures 6 and 7: FLOPs against channel
interactions for every search, and accuracy against FLOPs and against interactions (log scale)
for trained searches. Points are coloured by block family; the Pareto front is ringed."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_bytes


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_all(
    records: list[dict], on_front: set, out_dir: Path, title: str, log=print
) -> list[Path]:
    plt = _pyplot()
    if plt is None:
        log("matplotlib is not installed: no plots (pip install 'csnspec[search]')")
        return []
    ok = [r for r in records if r.get("status") == "ok"]
    paths = [
        _scatter(
            plt,
            ok,
            on_front,
            out_dir / "flops_vs_interactions.png",
            title,
            x=("flops", 1e9, "GFLOPs (multiply-adds per clip)", False),
            y=("interactions", 1e9, "channel interactions (G pairs, log scale)", True),
        )
    ]
    trained = [r for r in ok if "accuracy" in r.get("metrics", {})]
    if trained:
        paths.append(
            _scatter(
                plt,
                trained,
                on_front,
                out_dir / "accuracy_vs_flops.png",
                title,
                x=("flops", 1e9, "GFLOPs (multiply-adds per clip)", False),
                y=("accuracy", 0.01, "video top-1 (%)", False),
            )
        )
        paths.append(
            _scatter(
                plt,
                trained,
                on_front,
                out_dir / "accuracy_vs_interactions.png",
                title,
                x=("interactions", 1e9, "channel interactions (G pairs, log scale)", True),
                y=("accuracy", 0.01, "video top-1 (%)", False),
            )
        )
    return paths


def _grouping(records):
    """Colour by block family; where stages mix families in many ways, mixed ones share one."""
    if len({r["families"] for r in records}) <= 8:
        return lambda r: r["families"]
    return lambda r: "mixed families" if "/" in r["families"] else r["families"]


def _value(r: dict, metric: str) -> float:
    return float(r["metrics"][metric] if metric in r.get("metrics", {}) else r["cost"][metric])


def _scatter(plt, records, on_front, path: Path, title, *, x, y) -> Path:
    import io

    (xm, xs, xl, xlog), (ym, ys, yl, ylog) = x, y
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    group = _grouping(records)
    families = sorted({group(r) for r in records})
    markers = "so^Dv<>ph*"
    size = 28 if len(records) <= 2000 else 4
    for i, fam in enumerate(families):
        pts = [r for r in records if group(r) == fam]
        ax.scatter(
            [_value(r, xm) / xs for r in pts],
            [_value(r, ym) / ys for r in pts],
            label=fam,
            marker=markers[i % len(markers)],
            s=size,
            alpha=0.8,
            rasterized=True,
        )
    front = sorted((r for r in records if r["key"] in on_front), key=lambda r: _value(r, xm))
    if front:
        ax.scatter(
            [_value(r, xm) / xs for r in front],
            [_value(r, ym) / ys for r in front],
            facecolors="none",
            edgecolors="black",
            s=90,
            linewidths=1.2,
            label="Pareto front",
        )
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for axis, log in ((ax.xaxis, xlog), (ax.yaxis, ylog)):
        if log:
            (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
            axis.set_major_formatter(plain)
            lo, hi = ax.get_xlim() if axis is ax.xaxis else ax.get_ylim()
            # Label the minor ticks too where the axis spans about a decade, or nothing would be.
            axis.set_minor_formatter(plain if hi / max(lo, 1e-12) < 20 else NullFormatter())
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_title(f"{title}: {len(records)} candidates")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path
