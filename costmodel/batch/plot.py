"""The collection on one figure: Mult-Adds against MAC bytes, log-log, one colour per family,
a filled marker for a complete count and a hollow one where some ops had no formula.

Models on a diagonal do the same work per byte moved; at equal Mult-Adds the ones further
right move more memory: the ShuffleNetV2 point, made across a whole collection.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from costmodel.errors import CostModelError
from costmodel.report.figures import pyplot, save

#: families beyond this many share the colour "other"
MAX_FAMILIES = 12


def plot_rows(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One point per analysed row (status ok or unsupported) with both numbers above 0."""
    points = [r for r in rows if r["status"] in ("ok", "unsupported")
              and (r.get("madds") or 0) > 0 and (r.get("mac_bytes") or 0) > 0]
    if not points:
        raise CostModelError(f"{path}: nothing to plot: no row has both Mult-Adds and MAC "
                             f"bytes above 0")
    plt = pyplot()
    common = [f for f, _ in Counter(r.get("family") or "other" for r in points)
              .most_common(MAX_FAMILIES)]
    colours = plt.get_cmap("tab20" if len(common) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(8, 6))
    for index, family in enumerate([*sorted(common), "other"]):
        mine = [r for r in points if (r.get("family") or "other") == family
                or (family == "other" and (r.get("family") or "other") not in common)]
        if not mine:
            continue
        colour = colours(index % colours.N) if family != "other" else "#9a9a9a"
        for status, face in (("ok", colour), ("unsupported", "none")):
            part = [r for r in mine if r["status"] == status]
            if part:
                ax.scatter([r["mac_bytes"] for r in part], [r["madds"] for r in part], s=22,
                           facecolors=face, edgecolors=colour, linewidths=1,
                           label=f"{family} ({len(part)})" if status == "ok"
                           else f"{family}, unsupported ops ({len(part)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MAC (memory access cost), bytes")
    ax.set_ylabel("Mult-Adds")
    failed = len(rows) - len(points)
    ax.set_title((title or "Mult-Adds against memory traffic") + f"\n{len(points)} models"
                 + (f" ({failed} not plotted: failed, or zero)" if failed else ""),
                 fontsize=10)
    ax.grid(which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2 if len(common) > 6 else 1)
    fig.tight_layout()
    return save(fig, path)
