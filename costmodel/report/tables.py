"""Group a costed graph by op type, module or node, and render it as a table, markdown, JSON or
CSV. Tables print numbers with SI suffixes; JSON and CSV print exact integers (or sympy strings
for symbolic values)."""

from __future__ import annotations

import csv
import inspect
import io
import json
from collections import defaultdict
from typing import Any

import tabulate as tabulate_module
from tabulate import tabulate

from costmodel.analysis import Analysis
from costmodel.cost import ZERO, Cost, is_concrete
from costmodel.formatting import exact, readable, si
from costmodel.report.fusion import (
    add_op_type_fields,
    by_kernel,
    header_line,
    json_fields,
    kernel_labels,
    kernel_table,
)
from costmodel.train import phase_totals
from costmodel.views.kvcache import kv_cache_bytes
from costmodel.views.moe import summarize as moe_summary

SCHEMA = "costmodel/1"
_TAKES_PRESERVE = "preserve_whitespace" in inspect.signature(tabulate).parameters
FIELDS = ("madds", "flops", "mac", "params")
HEADERS = {"madds": "Mult-Adds", "flops": "FLOPs", "mac": "MAC", "mac_bytes": "MAC bytes",
           "params": "Params"}


def pct(part: Any, whole: Any) -> Any:
    if not (is_concrete(part) and is_concrete(whole)):
        return str(100 * part / whole) if whole != 0 else 0.0
    return round(100.0 * float(part) / float(whole), 4) if whole else 0.0


def op_type_of(op: dict[str, Any]) -> str:
    return op["op_type"] if op["supported"] else f"Unsupported: {op['target']}"


def by_op_type(analysis: Analysis, weights_only: bool = False) -> list[dict[str, Any]]:
    """The MobileNet-style table: one row per op type, largest Mult-Adds (then MAC) first."""
    whole = analysis.total(weights_only)
    groups: dict[str, list[Any]] = defaultdict(lambda: [0, ZERO])
    for op in analysis.ops():
        group = groups[op_type_of(op)]
        group[0] += 1
        group[1] = group[1] + analysis.node_cost(op, weights_only)
    rows = []
    backward = _backward_by(analysis, lambda op: [op_type_of(op)])
    for op_type, (count, cost) in groups.items():
        rows.append({
            "op_type": op_type, "count": count,
            "madds": cost.madds, "madds_pct": pct(cost.madds, whole.madds),
            "flops": cost.flops,
            "params": cost.params, "params_pct": pct(cost.params, whole.params),
            "mac": cost.mac, "mac_pct": pct(cost.mac, whole.mac),
            **_backward_fields(backward, op_type),
        })
    add_op_type_fields(analysis, rows, op_type_of)
    return sorted(rows, key=lambda r: _sort_key(r["madds"], r["mac"]), reverse=True)


def _backward_by(analysis: Analysis, groups: Any) -> dict[str, Cost] | None:
    """A training step's backward cost per group (`groups(op)` lists an op's), None for
    inference."""
    if not analysis.graph.graph.get("train"):
        return None
    sums: dict[str, Cost] = defaultdict(lambda: ZERO)
    for op in analysis.ops():
        if op.get("phase") == "backward":
            for group in groups(op):
                sums[group] = sums[group] + op["cost"]
    return sums


def _backward_fields(backward: dict[str, Cost] | None, group: str) -> dict[str, Any]:
    if backward is None:
        return {}
    cost = backward.get(group, ZERO)
    return {"backward_madds": cost.madds, "backward_flops": cost.flops,
            "backward_mac": cost.mac}


def _prefixes(op: dict[str, Any]) -> list[str]:
    """The op's module and every module above it, the root ("") first."""
    path = op["module"]
    parts = path.split(".") if path else []
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


def _sort_key(*values: Any) -> tuple[float, ...]:
    return tuple(float(v) if is_concrete(v) else float("inf") for v in values)


def by_module(analysis: Analysis, depth: int | None = None, weights_only: bool = False
              ) -> list[dict[str, Any]]:
    """A tree of modules in first-use order, each with the cost of everything inside it."""
    costs: dict[str, Cost] = defaultdict(lambda: ZERO)
    counts: dict[str, int] = defaultdict(int)
    order: list[str] = []
    for op in analysis.ops():
        for prefix in _prefixes(op):
            if prefix not in costs:
                order.append(prefix)
            costs[prefix] = costs[prefix] + analysis.node_cost(op, weights_only)
            counts[prefix] += 1
    modules = analysis.graph.graph["modules"]
    backward = _backward_by(analysis, _prefixes)
    rows = []
    for path in order:
        level = 0 if path == "" else path.count(".") + 1
        if depth is not None and level > depth:
            continue
        cost = costs[path]
        rows.append({"module": path, "class": modules.get(path, ""), "depth": level,
                     "count": counts[path], **{f: getattr(cost, f) for f in FIELDS},
                     **_backward_fields(backward, path)})
    return rows


def by_node(analysis: Analysis, weights_only: bool = False) -> list[dict[str, Any]]:
    rows = []
    for op in analysis.ops():
        cost = analysis.node_cost(op, weights_only)
        rows.append({
            "name": op["name"], "target": op["target"], "op_type": op_type_of(op),
            "module": op["module"], "input_shapes": [list(s) for s in op["input_shapes"]],
            "output_shape": list(op["output_shapes"][0]) if op["output_shapes"] else None,
            **{f: getattr(cost, f) for f in FIELDS},
            **({"phase": op["phase"], "differentiates": op.get("differentiates")}
               if "phase" in op else {}),
            **({"kernel": op["kernel"]} if "kernel" in op else {}),
        })
    return rows


def to_json(analysis: Analysis, weights_only: bool = False) -> dict[str, Any]:
    """The contract's schema (docs/cli.md)."""
    totals = analysis.total(weights_only)

    def clean(row: dict[str, Any]) -> dict[str, Any]:
        return {k: exact(v) if k in FIELDS or k.endswith("_pct") else _jsonable(v)
                for k, v in row.items()}

    moe = moe_summary(analysis)
    extra = {"moe": {k: _jsonable(v) for k, v in moe.as_dict().items()}} if moe else {}
    fused_totals, fusion = json_fields(analysis)
    return {
        "schema": SCHEMA,
        "model": analysis.model,
        "inputs": [s.describe() for s in analysis.inputs],
        "totals": {**{k: exact(v) for k, v in totals.as_dict().items()}, **fused_totals},
        "by_op_type": [clean(r) for r in by_op_type(analysis, weights_only)],
        "nodes": [clean(r) for r in by_node(analysis, weights_only)],
        "unsupported": [{"target": t, "count": c}
                        for t, c in sorted(analysis.unsupported().items())],
        "buffers": exact(analysis.buffer_elements),
        "kv_cache_bytes": exact(kv_cache_bytes(analysis)),
        "notes": analysis.notes,
        **({"executed": True} if analysis.executed else {}),
        **extra,
        **fusion,
        **_phases_json(analysis),
    }


def _phases_json(analysis: Analysis) -> dict[str, Any]:
    """A training step's totals per phase (forward, backward, optimizer)."""
    if not analysis.graph.graph.get("train"):
        return {}
    phases = phase_totals(analysis.ops())
    return {"train": True, "optimizer": analysis.graph.graph.get("optimizer"),
            "phases": {p: {k: exact(v) for k, v in c.as_dict().items()}
                       for p, c in phases.items()}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return exact(value)


def _rows(analysis: Analysis, by: str, depth: int | None, weights_only: bool
          ) -> list[dict[str, Any]]:
    if by == "op-type":
        return by_op_type(analysis, weights_only)
    if by == "module":
        return by_module(analysis, depth, weights_only)
    if by == "kernel":
        return by_kernel(analysis, weights_only)
    return by_node(analysis, weights_only)


def _display_rows(rows: list[dict[str, Any]], by: str) -> tuple[list[list[Any]], list[str]]:
    """Rows for a human: SI numbers, percentages, module names indented, views hidden."""
    if by == "op-type":
        headers = ["Type", "Count", "Mult-Adds", "%", "FLOPs", "Params", "%", "MAC", "%"]
        body = [[r["op_type"], r["count"], si(r["madds"]), _p(r["madds_pct"]), si(r["flops"]),
                 si(r["params"]), _p(r["params_pct"]), si(r["mac"]), _p(r["mac_pct"])]
                + ([si(r["backward_madds"]), si(r["backward_mac"])] if "backward_mac" in r
                   else []) for r in rows if r["op_type"] != "View"]
        if rows and "backward_mac" in rows[0]:
            headers += ["Bwd Mult-Adds", "Bwd MAC"]
        if rows and "mac_removed_pct" in rows[0]:  # --fuse: the share fusion removes
            headers.append("MAC removed")
            for line, row in zip(body, [r for r in rows if r["op_type"] != "View"]):
                line.append(_p(row["mac_removed_pct"]))
    elif by == "kernel":
        return kernel_table(rows)
    elif by == "module":
        headers = ["Module", "Class", "Ops", "Mult-Adds", "FLOPs", "MAC", "Params"]
        body = [["  " * r["depth"] + (r["module"].rsplit(".", 1)[-1] or "(model)"), r["class"],
                 r["count"], si(r["madds"]), si(r["flops"]), si(r["mac"]), si(r["params"])]
                + ([si(r["backward_madds"]), si(r["backward_mac"])] if "backward_mac" in r
                   else []) for r in rows]
        if rows and "backward_mac" in rows[0]:
            headers += ["Bwd Mult-Adds", "Bwd MAC"]
    else:
        headers = ["Node", "Op", "Type", "Module", "Output", "Mult-Adds", "FLOPs", "MAC",
                   "Params"]
        body = [[r["name"], r["target"].removeprefix("aten."), r["op_type"], r["module"],
                 "x".join(map(str, r["output_shape"] or [])), si(r["madds"]), si(r["flops"]),
                 si(r["mac"]), si(r["params"])]
                for r in rows if r["op_type"] != "View"]
    return body, headers


def _symbolic_rows(rows: list[dict[str, Any]], by: str) -> tuple[list[list[Any]], list[str]]:
    """Rows for a human when costs are formulas, too wide for a column each: the row's labels,
    then one line per non-zero cost under them."""
    if by == "op-type":
        headers = ["Type", "Count"]
        labels = [[r["op_type"], r["count"]] for r in rows]
    elif by == "kernel":
        labels, headers = kernel_labels(rows)
    elif by == "module":
        headers = ["Module", "Class", "Ops"]
        labels = [["  " * r["depth"] + (r["module"].rsplit(".", 1)[-1] or "(model)"),
                   r["class"], r["count"]] for r in rows]
    else:
        headers = ["Node", "Op", "Module", "Output"]
        labels = [[r["name"], r["target"].removeprefix("aten."), r["module"],
                   "x".join(map(str, r["output_shape"] or []))] for r in rows]
    body = []
    for row, label in zip(rows, labels):
        if row.get("op_type") == "View":
            continue
        costs = [(HEADERS[f], readable(row[f])) for f in FIELDS if row[f] != 0] or [("", "0")]
        for i, cost in enumerate(costs):
            body.append((label if i == 0 else [""] * len(label)) + list(cost))
    return body, [*headers, "", "Cost"]


def _p(value: Any) -> str:
    return f"{value:.2f}%" if isinstance(value, float) else str(value)


def render(analysis: Analysis, fmt: str = "table", by: str = "op-type",
           depth: int | None = None, weights_only: bool = False) -> str:
    """The whole report in one of: table, markdown, json, csv."""
    if fmt == "json":
        return json.dumps(to_json(analysis, weights_only), indent=2)
    rows = _rows(analysis, by, depth, weights_only)
    if fmt == "csv":
        return _csv(rows, analysis)
    symbolic = not analysis.total(weights_only).is_concrete
    body, headers = (_symbolic_rows if symbolic else _display_rows)(rows, by)
    style = "github" if fmt == "markdown" else "simple"
    colalign = ["left"] + ["right"] * (len(headers) - 1)
    if by == "module":
        colalign[1] = "left"
    elif by in ("node", "kernel"):
        colalign[1:4] = ["left"] * 3
    if symbolic:
        colalign[-2:] = ["left", "left"]
    # Keep the tree's indentation: tabulate 0.10 reads a keyword, 0.9 only the module global.
    keep = by == "module"
    options = {"preserve_whitespace": keep} if _TAKES_PRESERVE else {}
    tabulate_module.PRESERVE_WHITESPACE = keep
    try:
        table = tabulate(body, headers=headers, tablefmt=style, disable_numparse=True,
                         colalign=colalign, **options)
    finally:
        tabulate_module.PRESERVE_WHITESPACE = False
    parts = [_header(analysis, weights_only, fmt), table]
    parts.extend(_footer(analysis, by, fmt))
    return "\n\n".join(p for p in parts if p)


def _header(analysis: Analysis, weights_only: bool, fmt: str) -> str:
    t = analysis.total(weights_only)
    shapes = ", ".join("x".join(map(str, s.shape)) + f" {s.describe()['dtype']}"
                       for s in analysis.inputs)
    params = "weights (>= 2-D parameters)" if weights_only else "params"
    title = f"{analysis.model}  [{shapes}]"
    if t.is_concrete:
        line = (f"Mult-Adds {si(t.madds)}  FLOPs {si(t.flops)}  MAC {si(t.mac)} "
                f"({si(t.mac_bytes)}B)  {params} {si(t.params)}")
    else:  # formulas: one total a line
        totals = [("Mult-Adds", t.madds), ("FLOPs", t.flops), ("MAC", t.mac),
                  ("MAC bytes", t.mac_bytes), (params, t.params)]
        width = max(len(name) for name, _ in totals)
        line = "\n".join(f"{name:<{width}}  {readable(v)}" for name, v in totals)
        if fmt == "markdown":
            line = "\n".join(f"- {x}" for x in line.splitlines())
    cache = kv_cache_bytes(analysis)
    if cache != 0:  # decode steps: the cache a step reads, often more than the weights
        if t.is_concrete:
            line += f"  KV cache {si(cache)}B"
        else:
            width = max(9, len(params))
            bullet = "- " if fmt == "markdown" else ""
            line += f"\n{bullet}{'KV cache':<{width}}  {readable(cache)} bytes"
    moe = moe_summary(analysis)
    if moe is not None:
        line += ("\n\n" if fmt == "markdown" else "\n") + moe.describe()
    if analysis.graph.graph.get("train"):
        line += "\n" + _phase_line(analysis)
    if header_line(analysis):
        line += ("\n\n" if fmt == "markdown" else "\n") + header_line(analysis)
    return f"## {title}\n\n{line}" if fmt == "markdown" else f"{title}\n{line}"


def _phase_line(analysis: Analysis) -> str:
    """Training: how the step's cost splits between forward, backward and the optimizer."""
    phases = phase_totals(analysis.ops())
    optimizer = analysis.graph.graph.get("optimizer")
    parts = [f"{p} Mult-Adds {readable(c.madds)} FLOPs {readable(c.flops)} "
             f"MAC {readable(c.mac)}" for p, c in phases.items() if p != "optimizer"]
    if optimizer:
        step = phases["optimizer"]
        parts.append(f"optimizer ({optimizer}) FLOPs {readable(step.flops)} "
                     f"MAC {readable(step.mac)}")
    if all(c.is_concrete for c in phases.values()):
        return "training step: " + "; ".join(parts)
    return "training step:\n" + "\n".join(f"  {p}" for p in parts)  # formulas: a line each


def _footer(analysis: Analysis, by: str, fmt: str) -> list[str]:
    notes = []
    views = sum(1 for op in analysis.ops() if op["op_type"] == "View")
    if views and by != "module":
        notes.append(f"{views} views and other zero-cost ops are not shown.")
    unsupported = analysis.unsupported()
    if unsupported:
        listed = ", ".join(f"{t} x{c}" for t, c in sorted(unsupported.items()))
        notes.append(f"UNSUPPORTED (not counted): {listed}")
    notes.extend(analysis.notes)
    if not analysis.total().is_concrete:
        notes.append("Sizes are integers, so a strided size floor((H - 1)/k) + 1 is shown as "
                     "ceiling(H/k); JSON and CSV give the formulas as traced.")
    notes.append("Mult-Adds: multiply-accumulates of conv/linear/matmul/attention. "
                 "MAC: memory access cost, tensor elements read + written.")
    return ["\n".join(notes)]


def _csv(rows: list[dict[str, Any]], analysis: Analysis) -> str:
    out = io.StringIO()
    if not rows:
        return ""
    if analysis.executed:  # the costs hold for one input: say so above the header
        out.write("".join(f"# {note}\n" for note in analysis.notes if "--execute" in note))
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: exact(v) if k in FIELDS else v for k, v in row.items()})
    return out.getvalue()
