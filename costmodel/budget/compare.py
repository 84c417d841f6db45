"""Compare records: before/after for totals, op types and modules (`costmodel diff`), and the
verdict of `costmodel check`: limits exceeded, regressions beyond the tolerance, models missing
from either side. Pure functions of records; nothing here traces a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from costmodel.budget.config import Limit
from costmodel.budget.lock import FUSED_TOTALS, MEMORY_TOTALS, TOTALS, Record
from costmodel.errors import CostModelError

LABELS = {"madds": "Mult-Adds", "flops": "FLOPs", "mac": "MAC", "mac_bytes": "MAC bytes",
          "params": "Params", "count": "Ops", "peak_bytes": "Peak bytes",
          "peak_activation_bytes": "Peak activation bytes",
          "saved_activation_bytes": "Saved activation bytes", "kernels": "Kernels",
          "mac_bytes_fused": "Fused MAC bytes"}


@dataclass(frozen=True)
class Change:
    """One number on both sides; a side is None where the row does not exist."""

    before: int | None
    after: int | None

    @property
    def delta(self) -> int:
        return (self.after or 0) - (self.before or 0)

    @property
    def pct(self) -> float | None:
        """Relative change in percent; None where there was nothing before."""
        if not self.before:
            return None if self.delta else 0.0
        return 100.0 * self.delta / self.before


@dataclass(frozen=True)
class Row:
    """An op type or a module: every field's change."""

    name: str
    changes: dict[str, Change]

    @property
    def depth(self) -> int:
        return self.name.count(".") + 1 if self.name else 0

    @property
    def moved(self) -> bool:
        return any(c.delta for c in self.changes.values()) or any(
            (c.before is None) != (c.after is None) for c in self.changes.values())


@dataclass
class RecordDiff:
    """Two records of one model side by side."""

    name: str
    before: Record | None
    after: Record | None
    totals: dict[str, Change]
    op_types: list[Row]
    modules: list[Row]

    def moved_most(self, rows: list[Row], top: int | None) -> list[Row]:
        """Rows that changed, largest MAC change first, then Mult-Adds; among equals the
        deeper (more specific) module first."""
        moved = [r for r in rows if r.moved]
        moved.sort(key=lambda r: (-abs(r.changes["mac"].delta), -abs(r.changes["madds"].delta),
                                  -r.depth, r.name))
        return moved if top is None or top <= 0 else moved[:top]


def diff_records(name: str, before: Record | None, after: Record | None) -> RecordDiff:
    measured = [k for k in (*MEMORY_TOTALS, *FUSED_TOTALS)
                if any(r is not None and k in r.totals for r in (before, after))]
    totals = {k: Change(_get(before, "totals", k), _get(after, "totals", k))
              for k in (*TOTALS, *measured)}
    return RecordDiff(name, before, after, totals,
                      _rows(before.op_types if before else {}, after.op_types if after else {}),
                      _rows(before.modules if before else {}, after.modules if after else {}))


def _get(record: Record | None, part: str, key: str) -> int | None:
    return None if record is None else getattr(record, part).get(key)


def _rows(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> list[Row]:
    names = list(after) + [n for n in before if n not in after]
    rows = []
    for name in names:
        b, a = before.get(name), after.get(name)
        fields = list((a or b or {}).keys())
        rows.append(Row(name, {f: Change(b.get(f) if b else None, a.get(f) if a else None)
                               for f in fields}))
    return rows


@dataclass(frozen=True)
class Finding:
    """A reason a model fails, with the file and line to annotate."""

    kind: str  # "budget", "regression", "not-in-baseline", "no-model"
    message: str
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class LimitCheck:
    limit: Limit
    value: int

    @property
    def ok(self) -> bool:
        return self.value <= self.limit.value


@dataclass
class ModelResult:
    """The verdict on one model (or on a baseline entry with no model)."""

    diff: RecordDiff
    target: str | None
    limits: list[LimitCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.diff.name

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass
class CheckResult:
    models: list[ModelResult]
    baseline: str | None
    tolerance: Decimal
    updated: bool = False

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.models)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def check_limits(record: Record, limits: list[Limit]) -> list[LimitCheck]:
    """Each limit against the record. A module path the model lacks is a typo in the budget
    file (bad input), while an op type the model lacks simply costs nothing."""
    checks = []
    for limit in limits:
        if limit.scope == "total":
            value = record.totals[limit.metric]
        elif limit.scope == "op_type":
            value = record.op_types.get(limit.part, {}).get(limit.metric, 0)
        else:
            if limit.part not in record.modules:
                near = ", ".join(sorted(m for m in record.modules if m.count(".") == 0)[:8])
                raise CostModelError(f"{limit.where}: model {record.name!r} has no module "
                                     f"{limit.part!r} (top-level modules: {near})")
            value = record.modules[limit.part][limit.metric]
        checks.append(LimitCheck(limit, value))
    return checks


def judge(diff: RecordDiff, target: str | None, limits: list[Limit], tolerance: Decimal,
          baseline: str | None, baseline_line: int | None) -> ModelResult:
    """Budgets first, then the baseline, within `tolerance` (a fraction: 0.005 is 0.5%)."""
    result = ModelResult(diff, target)
    after, before = diff.after, diff.before
    if after is None:
        result.findings.append(Finding(
            "no-model", f"{diff.name}: in the baseline but no such model is checked (remove it "
            "with --update-baseline)", baseline, baseline_line))
        return result
    result.limits = check_limits(after, limits)
    for check in result.limits:
        if not check.ok:
            limit = check.limit
            what = LABELS[limit.metric] if limit.scope == "total" else (
                f"{LABELS[limit.metric]} of {_scope_name(limit)}")
            result.findings.append(Finding(
                "budget", f"{diff.name}: {what} {check.value:,} exceeds {limit.key} = "
                f"{limit.value:,} by {check.value - limit.value:,}", limit.file, limit.line))
    if baseline is None:
        return result
    if before is None:
        result.findings.append(Finding(
            "not-in-baseline", f"{diff.name}: not in the baseline {baseline} (add it with "
            "--update-baseline)", baseline, None))
        return result
    if before.inputs != after.inputs:
        result.notes.append(f"inputs changed: {before.inputs} -> {after.inputs}")
    grown = [f"{LABELS[key]} {change.before:,} -> {change.after:,} ({_signed(change)})"
             for key, change in sorted(diff.totals.items(), key=lambda kv: kv[0] != "mac")
             if change.before is not None and change.after is not None
             and Decimal(change.after) > Decimal(change.before) * (1 + tolerance)]
    if grown:
        result.findings.append(Finding(
            "regression", f"{diff.name}: above the baseline by more than "
            f"{format_pct(tolerance * 100)}: {'; '.join(grown)}", baseline, baseline_line))
    return result


def _scope_name(limit: Limit) -> str:
    return f"op type {limit.part!r}" if limit.scope == "op_type" else f"module {limit.part!r}"


def _signed(change: Change) -> str:
    pct = change.pct
    text = f"{change.delta:+,}"
    return text if pct is None else f"{text}, {pct:+.2f}%"


def format_pct(value: Decimal | float) -> str:
    return f"{float(value):g}%"
