"""Lint findings as a table for people, markdown for a pull request, JSON for scripts (the
`costmodel-lint/1` contract) and GitHub workflow commands for CI annotations."""

from __future__ import annotations

import json
from typing import Any

from tabulate import tabulate

from costmodel.budget.render import _command
from costmodel.formatting import si
from costmodel.lint.rules import LintResult
from costmodel.lint.settings import RULES

SCHEMA = "costmodel-lint/1"


def render(result: LintResult, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(to_json(result), indent=2)
    if fmt == "github":
        return github(result)
    return table(result, markdown=fmt == "markdown")


def summary(result: LintResult) -> dict[str, dict[str, int]]:
    """Per rule that ran: how many findings, and their MAC at stake in all."""
    return {rule: {"count": sum(f.rule == rule for f in result.findings),
                   "mac_excess": sum(f.mac_excess for f in result.findings if f.rule == rule)}
            for rule in result.settings.rules}


def to_json(result: LintResult) -> dict[str, Any]:
    analysis = result.analysis
    return {
        "schema": SCHEMA,
        "model": analysis.model,
        "inputs": [s.describe() for s in analysis.inputs],
        "totals": {"madds": int(result.total.madds), "mac": int(result.total.mac)},
        "rules": list(result.settings.rules),
        "fail_on": list(result.settings.fail_on),
        "thresholds": vars(result.settings.thresholds),
        "findings": [{"rule": f.rule, "module": f.module, "nodes": f.nodes,
                      "message": f.message, "mac_excess": f.mac_excess, "madds": f.madds,
                      "mac": f.mac, "details": f.details} for f in result.findings],
        "summary": summary(result),
        "failed": bool(result.failed),
    }


def _title(result: LintResult) -> str:
    shapes = ", ".join("x".join(map(str, s.shape)) + f" {s.describe()['dtype']}"
                       for s in result.analysis.inputs)
    mac = result.total.mac
    at_stake = sum(f.mac_excess for f in result.findings)
    count = len(result.findings)
    verdict = " FAIL" if result.failed else ""
    return (f"costmodel lint: {result.analysis.model}  [{shapes}]{verdict}\n"
            f"{count} finding{'s' if count != 1 else ''}, MAC at stake {si(at_stake)} "
            f"({at_stake / mac:.1%} of the model's MAC {si(mac)})")


def table(result: LintResult, markdown: bool = False) -> str:
    fmt = "github" if markdown else "simple"
    total = result.total.mac
    rows = [[rule, RULES[rule], s["count"], si(s["mac_excess"]), f"{s['mac_excess'] / total:.1%}"]
            for rule, s in summary(result).items()]
    head = ["Rule", "Guideline", "Findings", "MAC at stake", "% of MAC"]
    parts = [_title(result), tabulate(rows, head, tablefmt=fmt, disable_numparse=True)]
    if result.findings:
        rows = [[f.rule, f.module or "(model)", si(f.mac_excess), f"{f.mac_excess / total:.2%}",
                 f.message] for f in result.findings]
        head = ["Rule", "Module", "MAC at stake", "% of MAC", "Finding"]
        parts.append(tabulate(rows, head, tablefmt=fmt, disable_numparse=True))
    text = "\n\n".join(parts)
    if markdown:
        title, _, rest = text.partition("\n")
        text = f"## {title}\n\n{rest}"
    return text


def github(result: LintResult) -> str:
    """A ::warning per finding (::error for the rules --fail-on names), then the report."""
    lines = []
    for f in result.findings:
        level = "error" if f.rule in result.settings.fail_on else "warning"
        title = f"costmodel lint {f.rule}: {f.module or '(model)'}"
        lines.append(_command(level, {"title": title}, f"{f.message} (nodes: "
                                                       f"{', '.join(f.nodes)})"))
    lines.append("::group::costmodel lint report")
    lines.append(table(result))
    lines.append("::endgroup::")
    return "\n".join(lines)
