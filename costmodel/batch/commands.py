"""`costmodel batch`: check every input, then run, then report; the CLI only parses."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from costmodel.errors import CostModelError

from .rows import Output, counts, format_of, render_table
from .targets import expand
from .work import Options


def batch(targets: Sequence[str], from_file: str | None, options: Options,
          output: str | None, fmt: str | None, resume: bool, workers: int | None,
          scheduler: str | None, timeout: float | None, plot: str | None,
          progress: bool = True, debug: bool = False) -> list[dict[str, Any]]:
    """Every row (earlier ones of --resume included). Bad input (an unknown pattern, an
    output that cannot be written, an unreachable scheduler) is a CostModelError before any
    model is analysed."""
    from .engine import _dask, run

    _dask()  # the one-line error for a missing Dask comes first
    found = expand(targets, from_file)
    if plot is not None:
        _check_plot_path(plot)
    chosen = format_of(output, fmt)
    sink = Output(output, chosen, resume)
    start = time.perf_counter()
    try:
        run(found, options, sink, workers, scheduler, timeout, progress, quiet_logs=not debug)
    finally:
        sink.close()
    wall = time.perf_counter() - start
    wanted = {t.target for t in found}
    rows = [r for r in sink.rows() if r["target"] in wanted]
    by_status = counts(rows)
    print(f"costmodel: {len(rows)} model{'' if len(rows) == 1 else 's'} in {wall:.1f} s: "
          + ", ".join(f"{n} {s}" for s, n in by_status.items() if n)
          + (f" ({len(sink.previous)} from {output})" if sink.previous else ""),
          file=sys.stderr)
    if plot is not None:
        from .plot import plot_rows

        plot_rows(rows, plot)
    if chosen == "table":
        order = {t.target: i for i, t in enumerate(found)}
        print(render_table(sorted(rows, key=lambda r: order[r["target"]])))
    return rows


def _check_plot_path(path: str) -> None:
    """The figure is drawn at the end: make sure now that it can be written."""
    file = Path(path)
    if file.suffix.lower() not in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        raise CostModelError(f"{path}: --plot writes .png, .svg, .pdf or .jpg")
    if not file.parent.is_dir():
        raise CostModelError(f"{path}: cannot write the figure: no such folder "
                             f"{str(file.parent)!r}")
