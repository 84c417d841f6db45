"""Fusion in the reports: the `--by kernel` rows, the share of each op type's MAC a fusion
removes, the JSON fields and the header line (docs/fusion.md). Nothing here when the analysis
was not fused."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from costmodel.analysis import Analysis
from costmodel.cost import ZERO, Cost, is_concrete, to_int
from costmodel.formatting import exact, readable, si
from costmodel.views.fusion import Fusion, fusion_of

FIELDS = ("madds", "flops", "mac", "params")


def removed_pct(eager: Any, fused: Any) -> Any:
    """Percent of `eager` bytes a fusion removes (a formula's string when symbolic)."""
    if not (is_concrete(eager) and is_concrete(fused)):
        return str(100 * (eager - fused) / eager) if eager != 0 else 0.0
    return round(100.0 * (1 - float(fused) / float(eager)), 4) if eager else 0.0


def add_op_type_fields(analysis: Analysis, rows: list[dict[str, Any]],
                       label: Any) -> None:
    """Each by-op-type row gains its eager MAC bytes, the bytes of its kernels attributed to
    it, and the share of its MAC the fusion removes; `label(op)` is the row an op is in."""
    fusion = fusion_of(analysis)
    if fusion is None:
        return
    eager: dict[str, Any] = defaultdict(int)
    fused: dict[str, Any] = defaultdict(int)
    for op in analysis.ops():
        eager[label(op)] += op["cost"].mac_bytes
        fused[label(op)] += fusion.fused_bytes.get(op["name"], 0)
    for row in rows:
        key = row["op_type"]
        row.update(mac_bytes=to_int(eager[key]), mac_bytes_fused=to_int(fused[key]),
                   mac_removed_pct=removed_pct(eager[key], fused[key]))


def by_kernel(analysis: Analysis, weights_only: bool = False) -> list[dict[str, Any]]:
    """One row per kernel in execution order: its ops' costs (each op under its own kernel,
    the `kernel` node attribute) and the bytes the kernel moves once fused."""
    fusion = _required(analysis)
    costs: dict[int, Cost] = defaultdict(lambda: ZERO)
    eager: dict[int, Any] = defaultdict(int)
    for op in analysis.ops():
        index = op.get("kernel")
        if index is not None:
            costs[index] = costs[index] + analysis.node_cost(op, weights_only)
            eager[index] += op["cost"].mac_bytes
    return [{"kernel": k.index, "kind": k.kind, "types": k.label, "call": k.call,
             "module": k.module, "ops": len(k.ops),
             **{f: getattr(costs[k.index], f) for f in FIELDS},
             "mac_bytes": to_int(eager[k.index]), "bytes_read": k.bytes_read,
             "bytes_written": k.bytes_written, "mac_bytes_fused": k.mac_bytes}
            for k in fusion.kernels]


def kernel_table(rows: list[dict[str, Any]]) -> tuple[list[list[Any]], list[str]]:
    headers = ["Kernel", "Kind", "Types", "Module", "Ops", "Mult-Adds", "FLOPs", "MAC bytes",
               "Fused bytes", "MAC removed"]
    body = [[r["kernel"], r["kind"] + (f" {r['call'].rsplit('.', 1)[-1]}" if r["call"] else ""),
             r["types"], r["module"], r["ops"], si(r["madds"]), si(r["flops"]),
             si(r["mac_bytes"]), si(r["mac_bytes_fused"]),
             _p(removed_pct(r["mac_bytes"], r["mac_bytes_fused"]))] for r in rows]
    return body, headers


def kernel_labels(rows: list[dict[str, Any]]) -> tuple[list[list[Any]], list[str]]:
    """The labels of kernel rows when costs are formulas (tables put the costs under them)."""
    return [[r["kernel"], r["kind"], r["types"], r["ops"]] for r in rows], \
        ["Kernel", "Kind", "Types", "Ops"]


def json_fields(analysis: Analysis) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what totals gains, the top-level `fusion` object); both empty when not fused."""
    fusion = fusion_of(analysis)
    if fusion is None:
        return {}, {}
    totals = {"kernels": len(fusion.kernels), "mac_bytes_fused": exact(fusion.mac_bytes_fused)}
    block = {"mode": fusion.mode, "target": fusion.target, "kernels": [
        {"index": k.index, "kind": k.kind, "call": k.call, "types": k.label,
         "module": k.module, "ops": list(k.ops), "bytes_read": exact(k.bytes_read),
         "bytes_written": exact(k.bytes_written), "mac_bytes": exact(k.mac_bytes)}
        for k in fusion.kernels]}
    return totals, {"fusion": block}


def header_line(analysis: Analysis) -> str:
    """'fused (inductor, ...): 104 kernels (54 extern), MAC 383.94MB, 10.2% less than eager'."""
    fusion = fusion_of(analysis)
    if fusion is None:
        return ""
    eager = analysis.total().mac_bytes
    fused = fusion.mac_bytes_fused
    kinds = defaultdict(int)
    for k in fusion.kernels:
        kinds[k.kind] += 1
    split = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    head = f"fused ({fusion.mode}: {fusion.target}): {len(fusion.kernels)} kernels ({split}), MAC"
    if not (is_concrete(fused) and is_concrete(eager)):  # a formula: its ratio is no reading
        return f"{head} {readable(fused)} bytes"
    less = removed_pct(eager, fused)
    return f"{head} {si(fused)}B, {abs(less):.2f}% {'less' if less >= 0 else 'more'} than eager"


def _required(analysis: Analysis) -> Fusion:
    from costmodel.errors import CostModelError

    fusion = fusion_of(analysis)
    if fusion is None:
        raise CostModelError("--by kernel needs --fuse inductor or --fuse engine")
    return fusion


def _p(value: Any) -> str:
    return f"{value:.2f}%" if isinstance(value, float) else str(value)
