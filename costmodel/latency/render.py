"""`costmodel predict` reports: tables, markdown, CSV and the costmodel-predict/1 JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from tabulate import tabulate

from costmodel.latency.predict import Prediction

SCHEMA = "costmodel-predict/1"
TOP = 10


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def to_json(pred: Prediction, by: str = "op-type", depth: int | None = None) -> dict[str, Any]:
    p = pred.profile
    data: dict[str, Any] = {
        "schema": SCHEMA, "model": pred.model, "profile": p.name, "device": p.device,
        "threads": p.threads,
        "totals": {k: pred.total(k) for k in ("latency_s", "compute_s", "memory_s",
                                               "overhead_s")},
        "by_op_type": [{"op_type": r.pop("label"), **r} for r in pred.by_op_type()],
        "nodes": [{"name": n.name, "latency_s": n.latency_s, "bound": n.bound,
                   "op_type": n.op_type, "module": n.module, "class": n.efficiency_class,
                   "flops": n.flops, "mac_bytes": n.mac_bytes, "compute_s": n.compute_s,
                   "memory_s": n.memory_s, "overhead_s": n.overhead_s,
                   "intensity": n.intensity} for n in pred.nodes],
    }
    if by == "module":
        data["by_module"] = [{"module": r.pop("label"), **r} for r in pred.by_module(depth)]
    return data


def _group_table(rows: list[dict[str, Any]], first: str, total: float, style: str) -> str:
    body = [[r["label"], r["count"], ms(r["latency_s"]), f"{100 * r['latency_s'] / total:.1f}%",
             ms(r["compute_s"]), ms(r["memory_s"]), ms(r["overhead_s"]), r["bound"]]
            for r in rows]
    headers = [first, "Count", "Latency ms", "%", "Compute ms", "Memory ms", "Overhead ms",
               "Bound"]
    return tabulate(body, headers=headers, tablefmt=style, disable_numparse=True,
                    colalign=["left"] + ["right"] * 6 + ["left"])


def _node_table(pred: Prediction, nodes: list[Any], style: str) -> str:
    total = pred.total()
    body = [[n.name, n.op_type, n.module, ms(n.latency_s),
             f"{100 * n.latency_s / total:.1f}%", f"{n.intensity:.2f}", n.bound] for n in nodes]
    headers = ["Node", "Type", "Module", "Latency ms", "%", "FLOPs/byte", "Bound"]
    return tabulate(body, headers=headers, tablefmt=style, disable_numparse=True,
                    colalign=["left"] * 3 + ["right"] * 3 + ["left"])


def header(pred: Prediction) -> str:
    p = pred.profile
    threads = f", {p.threads} thread{'s' if p.threads != 1 else ''}" if p.threads else ""
    kind = "calibrated" if p.measured else "datasheet"
    how = ("the sum over ops of the learned per-kernel predictions (the roofline's terms "
           "scaled to them)" if p.kernels is not None else
           "the sum over ops of max(compute, memory) + overhead")
    return (f"{pred.model} on {p.name} ({p.device}{threads}, {kind})\n"
            f"predicted {ms(pred.total())} ms, {how};\n"
            f"in all: compute {ms(pred.total('compute_s'))} ms, memory "
            f"{ms(pred.total('memory_s'))} ms, overhead {ms(pred.total('overhead_s'))} ms")


def render(pred: Prediction, fmt: str = "table", by: str = "op-type",
           depth: int | None = None) -> str:
    if fmt == "json":
        return json.dumps(to_json(pred, by, depth), indent=2)
    if fmt == "csv":
        return _csv(pred, by, depth)
    style = "github" if fmt == "markdown" else "simple"
    total = pred.total()
    parts = [header(pred)]
    if by == "node":
        parts.append(_node_table(pred, pred.nodes, style))
    else:
        rows = pred.by_module(depth) if by == "module" else pred.by_op_type()
        parts.append(_group_table(rows, "Module" if by == "module" else "Type", total, style))
        top = sorted(pred.nodes, key=lambda n: -n.latency_s)[:TOP]
        parts.append(f"Top {len(top)} nodes by predicted time\n\n"
                     + _node_table(pred, top, style))
    return "\n\n".join(parts)


def _csv(pred: Prediction, by: str, depth: int | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if by == "node":
        writer.writerow(["name", "op_type", "module", "class", "flops", "mac_bytes",
                         "compute_s", "memory_s", "overhead_s", "latency_s", "bound"])
        for n in pred.nodes:
            writer.writerow([n.name, n.op_type, n.module, n.efficiency_class, n.flops,
                             n.mac_bytes, n.compute_s, n.memory_s, n.overhead_s, n.latency_s,
                             n.bound])
    else:
        rows = pred.by_module(depth) if by == "module" else pred.by_op_type()
        keys = ["count", "flops", "mac_bytes", "compute_s", "memory_s", "overhead_s",
                "latency_s", "bound"]
        writer.writerow(["module" if by == "module" else "op_type", *keys])
        for r in rows:
            writer.writerow([r["label"], *(r[k] for k in keys)])
    return out.getvalue().rstrip("\n")
