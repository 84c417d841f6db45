"""The roofline figure: every op at its arithmetic intensity and predicted FLOP/s."""

from __future__ import annotations

from pathlib import Path

from costmodel.errors import CostModelError
from costmodel.latency.classes import CLASSES
from costmodel.latency.predict import Prediction
from costmodel.report.figures import pyplot, save


def plot_roofline(pred: Prediction, path: str | Path) -> Path:
    """Nodes on the device's roofline (log-log: FLOPs per MAC byte against FLOP/s reached),
    sized by predicted time, coloured by efficiency class. Ops with no FLOPs (pure data
    movement) sit on the left edge at the lowest FLOP/s shown."""
    plt = pyplot()
    import numpy as np

    p = pred.profile
    peak, bw = p.peak("float32"), p.memory_bandwidth
    nodes = [n for n in pred.nodes if n.mac_bytes > 0]
    if not nodes:
        raise CostModelError(f"{pred.model}: no op moves memory: nothing to plot")
    x = np.array([max(n.intensity, 1e-3) for n in nodes])
    y = np.array([max(n.flops / n.latency_s, peak * 1e-5) for n in nodes])
    size = np.array([n.latency_s for n in nodes])
    size = 10 + 600 * size / size.max()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ridge = peak / bw
    xs = np.logspace(np.log10(min(x.min(), ridge) / 2), np.log10(max(x.max(), ridge) * 2), 200)
    ax.plot(xs, np.minimum(peak, xs * bw), color="black", lw=1.5,
            label="roofline (peak, bandwidth)")
    colours = plt.get_cmap("tab10")
    for i, cls in enumerate(CLASSES):
        mask = np.array([n.efficiency_class == cls for n in nodes])
        if mask.any():
            ax.scatter(x[mask], y[mask], s=size[mask], alpha=0.55, color=colours(i), label=cls,
                       edgecolors="none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs / MAC byte)")
    ax.set_ylabel("FLOP/s reached (predicted)")
    ax.set_title(f"{pred.model} on {p.name}: {pred.total() * 1e3:.2f} ms predicted "
                 "(area ~ time)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return save(fig, path)
