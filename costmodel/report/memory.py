"""`costmodel memory`'s outputs: the costmodel-memory/1 JSON, a table, the live-bytes timeline
as CSV, and the timeline as a figure."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from tabulate import tabulate

from costmodel.cost import is_concrete
from costmodel.formatting import exact, readable, si
from costmodel.report.figures import pyplot, save
from costmodel.views.memory import KINDS, SCHEMA, Memory

#: the contract's fields, in the order the table lists them
FIELDS = ("params_bytes", "grads_bytes", "optimizer_bytes", "saved_activation_bytes",
          "peak_activation_bytes", "peak_bytes")
LABELS = {"params_bytes": "Parameters", "buffers_bytes": "Buffers and constants",
          "inputs_bytes": "Inputs", "grads_bytes": "Gradients",
          "optimizer_bytes": "Optimizer states",
          "saved_activation_bytes": "Activations saved for backward",
          "peak_activation_bytes": "Peak activations", "peak_bytes": "Peak"}


def to_json(mem: Memory) -> dict[str, Any]:
    """The costmodel-memory/1 object (docs/memory.md)."""
    return {
        "schema": SCHEMA, "model": mem.model,
        **{k: exact(getattr(mem, k)) for k in FIELDS},
        "peak_at": mem.peak_at,
        "buffers_bytes": exact(mem.buffers_bytes), "inputs_bytes": exact(mem.inputs_bytes),
        "train": mem.train, "optimizer": mem.optimizer, "hints": mem.hints,
        **({"executed": True} if mem.executed else {}),
    }


def _bytes(value: Any) -> str:
    return f"{si(value)}B" if is_concrete(value) else readable(value)


def render(mem: Memory, fmt: str = "table") -> str:
    """The report as `table`, `markdown`, `json` or `csv` (the timeline, one row per op)."""
    if fmt == "json":
        return json.dumps(to_json(mem), indent=2)
    if fmt == "csv":
        return timeline_csv(mem)
    keys = ["params_bytes", "buffers_bytes", "inputs_bytes"]
    if mem.train:
        keys += ["grads_bytes", "optimizer_bytes", "saved_activation_bytes"]
    keys += ["peak_activation_bytes", "peak_bytes"]
    style = "github" if fmt == "markdown" else "simple"
    if all(is_concrete(getattr(mem, k)) for k in keys):
        rows = [[LABELS[k], _bytes(getattr(mem, k)), str(exact(getattr(mem, k)))]
                for k in keys]
        table = tabulate(rows, headers=["Memory", "Size", "Bytes"], tablefmt=style,
                         disable_numparse=True, colalign=["left", "right", "right"])
    else:  # formulas: too wide for a column each
        rows = [[LABELS[k], _bytes(getattr(mem, k))] for k in keys]
        table = tabulate(rows, headers=["Memory", "Bytes"], tablefmt=style,
                         disable_numparse=True, colalign=["left", "left"])
    what = "training step" if mem.train else "inference"
    if mem.train:
        what += f", optimizer {mem.optimizer}" if mem.optimizer else ", no optimizer state"
    title = f"{mem.model}  [{what}]"
    where = f"peak at {mem.peak_at['node']} (module {mem.peak_at['module'] or '(model)'})"
    if mem.hints:
        where += " at " + ", ".join(f"{k}={v}" for k, v in mem.hints.items())
    notes = "\n".join([*mem.notes, "Live tensors only: allocator fragmentation, kernel "
                        "workspaces and the framework's own memory are not counted "
                        "(docs/memory.md)."])
    head = f"## {title}" if fmt == "markdown" else title
    return "\n\n".join([head, table, f"{where}\n{notes}"])


def timeline_csv(mem: Memory) -> str:
    """Live bytes of each kind after every op (at the hints, for free dimensions)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "node", *KINDS])
    for i, name in enumerate(mem.ops):
        writer.writerow([i, name, *(mem.timeline[k][i] for k in KINDS)])
    return out.getvalue().rstrip("\n")


def plot_timeline(mem: Memory, path: str | Path) -> Path:
    """Live memory against op index, stacked by kind, above the static memory."""
    plt = pyplot()

    static = mem.static_at_hints
    steps = range(len(mem.ops))
    fig, ax = plt.subplots(figsize=(9, 4))
    layers = [[static / 2**20] * len(mem.ops)]
    labels = ["parameters, buffers, inputs, optimizer states"]
    for kind in KINDS:
        if any(mem.timeline[kind]):
            layers.append([b / 2**20 for b in mem.timeline[kind]])
            labels.append({"activations": "forward activations",
                           "backward": "backward temporaries and activation gradients",
                           "gradients": "parameter gradients"}[kind])
    ax.stackplot(steps, *layers, labels=labels,
                 colors=["#bfbfbf", "#3b6ea8", "#d9822b", "#5a9e4b"][:len(layers)])
    ax.set_xlabel("op index (execution order)")
    ax.set_ylabel("live memory (MiB)")
    ax.set_title(f"{mem.model}: live memory, peak at {mem.peak_at['node']}")
    ax.legend(loc="upper left", fontsize="small")
    ax.margins(x=0)
    fig.tight_layout()
    return save(fig, path, dpi=110)
