"""Check results and diffs as text: a table for people, GitHub workflow commands, JUnit XML and
JSON for machines. Numbers in tables are exact integers with separators, because a regression
of a few hundred elements must not round away."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from typing import Any

from tabulate import tabulate

from costmodel.budget.compare import (
    LABELS,
    Change,
    CheckResult,
    ModelResult,
    RecordDiff,
    Row,
    format_pct,
)
from costmodel.budget.lock import Record

CHECK_SCHEMA = "costmodel-check/1"
DIFF_SCHEMA = "costmodel-diff/1"


def render_check(result: CheckResult, fmt: str = "table", top: int = 5) -> str:
    if fmt == "json":
        return json.dumps(check_json(result, top), indent=2)
    if fmt == "junit":
        return junit(result, top)
    if fmt == "github":
        return github(result, top)
    return check_table(result, top)


def _summary(result: CheckResult) -> str:
    failed = sum(not m.ok for m in result.models)
    against = (f"baseline {_rel(result.baseline)}, tolerance {format_pct(result.tolerance * 100)}"
               if result.baseline else "no baseline")
    count = f"{len(result.models)} model{'s' if len(result.models) != 1 else ''}"
    verdict = f"FAIL, {failed} of {count}" if failed else f"ok, {count}"
    updated = f"; baseline {_rel(result.baseline or '')} updated" if result.updated else ""
    return f"costmodel check: {verdict} ({against}){updated}"


def check_table(result: CheckResult, top: int = 5) -> str:
    blocks = [_summary(result)] + [model_block(m, top) for m in result.models]
    return "\n\n".join(blocks)


def model_block(model: ModelResult, top: int = 5) -> str:
    """One model's verdict, its reasons, and what moved."""
    diff = model.diff
    record = diff.after or diff.before
    inputs = _inputs(record) if record else ""
    target = _rel(model.target) if model.target else ""
    lines = [f"{'ok  ' if model.ok else 'FAIL'}  {model.name}  ({target}{inputs})"]
    for finding in model.findings:
        where = f"  [{_rel(finding.file)}:{finding.line}]" if finding.file and finding.line else ""
        lines.append(f"  - {finding.message}{where}")
    for note in model.notes:
        lines.append(f"  note: {note}")
    better = [f"{LABELS[key]} {change.before:,} -> {change.after:,} ({change.delta:+,}, "
              f"{_pct(change)})"
              for key, change in sorted(diff.totals.items(), key=lambda kv: kv[0] != "mac")
              if change.before is not None and change.after is not None and change.delta < 0]
    if better:
        lines.append(f"  improved: {'; '.join(better)}")
    parts = ["\n".join(lines)]
    if model.limits:
        body = [[c.limit.key, f"{c.value:,}", f"{c.limit.value:,}",
                 f"{c.limit.value - c.value:+,}", "ok" if c.ok else "EXCEEDED"]
                for c in model.limits]
        parts.append(_indent(tabulate(body, ["Limit", "Value", "Max", "Headroom", ""],
                                      disable_numparse=True,
                                      colalign=("left", "right", "right", "right", "left"))))
    parts.extend(diff_tables(diff, top, only_moved=True))
    return "\n\n".join(parts)


def diff_tables(diff: RecordDiff, top: int | None, only_moved: bool,
                labels: tuple[str, str] = ("before", "after")) -> list[str]:
    """The totals, then the op types and modules that moved most (or all rows)."""
    if diff.before is None or diff.after is None:
        if only_moved:
            return []
        side = 1 if diff.after is not None else 0
        body = [[LABELS[k], _num(c.after if side else c.before)] for k, c in diff.totals.items()]
        return [_indent(tabulate(body, ["Total", labels[side]], disable_numparse=True,
                                 colalign=("left", "right")))]
    if only_moved and not any(c.delta for c in diff.totals.values()) and not any(
            r.moved for r in diff.op_types + diff.modules):
        return ["  unchanged from the baseline"]
    body = [[LABELS[k], _num(c.before), _num(c.after), f"{c.delta:+,}", _pct(c)]
            for k, c in diff.totals.items()]
    headers = ["Total", *(x.capitalize() for x in labels), "Delta", "%"]
    tables = [_indent(tabulate(body, headers, disable_numparse=True,
                               colalign=("left", "right", "right", "right", "right")))]
    for title, rows in (("Op type", diff.op_types), ("Module", diff.modules)):
        shown = diff.moved_most(rows, top) if only_moved else (
            rows if top is None or top <= 0 else diff.moved_most(rows, top))
        shown = [r for r in shown if r.name != "View"]  # zero-cost views, as in `analyze`
        if shown:
            heading = f"{title}s that moved most" if only_moved else f"{title}s"
            tables.append(_indent(_rows_table(shown, title, labels), heading))
    return tables


def _rows_table(rows: list[Row], title: str, labels: tuple[str, str]) -> str:
    headers = [title, f"MAC {labels[0]}", f"MAC {labels[1]}", "MAC delta", "%",
               "Mult-Adds delta", "%", "Params delta"]
    body = []
    for row in rows:
        mac, madds = row.changes["mac"], row.changes["madds"]
        params = row.changes.get("params", Change(0, 0))
        body.append([row.name or "(model)", _num(mac.before), _num(mac.after), f"{mac.delta:+,}",
                     _pct(mac), f"{madds.delta:+,}", _pct(madds), f"{params.delta:+,}"])
    return tabulate(body, headers, disable_numparse=True,
                    colalign=("left",) + ("right",) * (len(headers) - 1))


def _indent(text: str, heading: str | None = None) -> str:
    lines = ([heading] if heading else []) + text.splitlines()
    return "\n".join("  " + line for line in lines)


def _num(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _pct(change: Change) -> str:
    pct = change.pct
    return "new" if pct is None else f"{pct:+.2f}%"


def _inputs(record: Record) -> str:
    shapes = ", ".join("x".join(map(str, i["shape"])) + f" {i['dtype']}" for i in record.inputs)
    return f", {shapes}" if shapes else ""


def _rel(path: str) -> str:
    """A path relative to the working directory where it lies inside it (as GitHub wants)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def check_json(result: CheckResult, top: int = 5) -> dict[str, Any]:
    return {
        "schema": CHECK_SCHEMA, "ok": result.ok, "exit_code": result.exit_code,
        "baseline": result.baseline, "tolerance_pct": float(result.tolerance * 100),
        "updated": result.updated,
        "models": [{
            "name": m.name, "target": m.target, "ok": m.ok, "seconds": round(m.seconds, 3),
            "findings": [{"kind": f.kind, "message": f.message, "file": f.file, "line": f.line}
                         for f in m.findings],
            "limits": [{"key": c.limit.key, "scope": c.limit.scope, "part": c.limit.part,
                        "metric": c.limit.metric, "max": c.limit.value, "value": c.value,
                        "ok": c.ok} for c in m.limits],
            "notes": m.notes,
            **diff_json(m.diff, top),
        } for m in result.models],
    }


def diff_json(diff: RecordDiff, top: int | None, only_moved: bool = True) -> dict[str, Any]:
    def change(c: Change) -> dict[str, Any]:
        pct = c.pct
        return {"before": c.before, "after": c.after, "delta": c.delta,
                "pct": None if pct is None else round(pct, 4)}

    def rows(items: list[Row]) -> list[dict[str, Any]]:
        shown = diff.moved_most(items, top) if only_moved or (top and top > 0) else items
        return [{"name": r.name, **{k: change(c) for k, c in r.changes.items()}}
                for r in shown]

    return {"totals": {k: change(c) for k, c in diff.totals.items()},
            "op_types": rows(diff.op_types), "modules": rows(diff.modules)}


def junit(result: CheckResult, top: int = 5) -> str:
    """One <testcase> per model; a failed check is a <failure> whose text is the report."""
    failures = sum(not m.ok for m in result.models)
    seconds = f"{sum(m.seconds for m in result.models):.3f}"
    suites = ET.Element("testsuites", name="costmodel", tests=str(len(result.models)),
                        failures=str(failures), errors="0", time=seconds)
    suite = ET.SubElement(suites, "testsuite", name="costmodel check",
                          tests=str(len(result.models)), failures=str(failures), errors="0",
                          skipped="0", time=seconds)
    for model in result.models:
        case = ET.SubElement(suite, "testcase", classname="costmodel", name=model.name,
                             time=f"{model.seconds:.3f}")
        text = model_block(model, top)
        if model.ok:
            ET.SubElement(case, "system-out").text = text
        else:
            failure = ET.SubElement(case, "failure", message=model.findings[0].message,
                                    type=model.findings[0].kind)
            failure.text = text
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def github(result: CheckResult, top: int = 5) -> str:
    """Workflow commands: an ::error per finding, at its file and line, then the report folded
    into a group so the log stays readable."""
    lines = []
    for model in result.models:
        for finding in model.findings:
            props = {"title": f"costmodel check: {model.name}"}
            if finding.file:
                props = {"file": _rel(finding.file),
                         **({"line": str(finding.line)} if finding.line else {}), **props}
            lines.append(_command("error", props, finding.message))
    lines.append(_command("notice", {"title": "costmodel check"}, _summary(result)))
    lines.append("::group::costmodel check report")
    lines.append(check_table(result, top))
    lines.append("::endgroup::")
    return "\n".join(lines)


def _command(name: str, props: dict[str, str], message: str) -> str:
    """`::name key=value,...::message`, escaped as the runner expects."""
    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    joined = ",".join(f"{k}={prop(v)}" for k, v in props.items())
    return f"::{name} {joined}::{data(message)}"


def render_diff(diffs: list[RecordDiff], fmt: str = "table", top: int | None = None,
                labels: tuple[str, str] = ("A", "B")) -> str:
    """`costmodel diff`: every model's totals, op types and modules side by side."""
    if fmt == "json":
        return json.dumps({"schema": DIFF_SCHEMA, "a": labels[0], "b": labels[1],
                           "models": [{"name": d.name, "in_a": d.before is not None,
                                       "in_b": d.after is not None,
                                       **diff_json(d, top, only_moved=False)}
                                      for d in diffs]}, indent=2)
    blocks = [f"A = {labels[0]}\nB = {labels[1]}"]
    for d in diffs:
        head = d.name
        if d.before is None or d.after is None:
            head += f"  (only in {'B' if d.before is None else 'A'})"
        tables = diff_tables(d, top, only_moved=False, labels=("A", "B"))
        blocks.append("\n\n".join([head, *tables]))
    return "\n\n".join(blocks)
