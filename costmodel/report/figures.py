"""What every figure shares: matplotlib without a display, and one way to write a figure (a
path that cannot be written is a one-line error, and the figure is closed either way)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costmodel.errors import CostModelError


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend: figures are files, never windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write `fig` to `path` and close it."""
    import matplotlib.pyplot as plt

    out = Path(path)
    try:
        fig.savefig(out, dpi=dpi)
    except (OSError, ValueError) as exc:  # an unwritable path, or an unknown file extension
        reason = getattr(exc, "strerror", None) or exc
        raise CostModelError(f"{out}: cannot write the figure: {reason}") from exc
    finally:
        plt.close(fig)
    return out
