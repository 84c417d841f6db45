"""Figures: where the Mult-Adds go against where the memory traffic goes, by op type."""

from __future__ import annotations

from pathlib import Path

from costmodel.analysis import Analysis
from costmodel.cost import is_concrete
from costmodel.errors import CostModelError
from costmodel.report.figures import pyplot, save
from costmodel.report.tables import by_op_type


def plot_op_types(analysis: Analysis, path: str | Path, weights_only: bool = False) -> Path:
    """Horizontal bars: each op type's share of Mult-Adds, MAC and params, side by side.

    The figure makes the ShuffleNetV2 point at a glance: op types with no Mult-Adds
    (normalisation, activations, data movement) can carry much of the memory traffic.
    """
    plt = pyplot()

    rows = [r for r in by_op_type(analysis, weights_only) if r["op_type"] != "View"]
    if not all(is_concrete(r[k]) for r in rows for k in ("madds", "mac", "params")):
        raise CostModelError("cannot plot a symbolic analysis: substitute values first")
    rows.reverse()  # largest Mult-Adds on top
    labels = [f"{r['op_type']} ({r['count']})" for r in rows]
    series = [("Mult-Adds", "madds_pct", "#3b6ea8"), ("MAC (memory access)", "mac_pct", "#d9822b"),
              ("Params", "params_pct", "#8c8c8c")]
    height = 0.26
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.6))
    for i, (name, key, color) in enumerate(series):
        ys = [j + (1 - i) * height for j in range(len(rows))]
        ax.barh(ys, [float(r[key]) for r in rows], height=height, label=name, color=color)
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel("share of the model total (%)")
    ax.set_xlim(0, 100)
    total = analysis.total(weights_only)
    ax.set_title(f"{analysis.model}: where the work and the memory traffic go\n"
                 f"Mult-Adds {float(total.madds):.3g}, MAC {float(total.mac):.3g} elements",
                 fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save(fig, path)
