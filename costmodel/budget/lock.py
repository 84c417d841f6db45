"""Baselines: one model's costs as plain integers (totals, per op type, per module), and the lock
file that holds them. The file is JSON with sorted keys and one value per line, so a change to a
model shows in `git diff` as the few lines that moved."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costmodel.analysis import Analysis
from costmodel.errors import CostModelError
from costmodel.formatting import exact
from costmodel.report.tables import by_module, by_op_type
from costmodel.views.memory import Memory

SCHEMA = "costmodel-lock/1"
TOTALS = ("madds", "flops", "mac", "mac_bytes", "params")
#: recorded for a training step, or where a budget limits memory
MEMORY_TOTALS = ("peak_bytes", "peak_activation_bytes", "saved_activation_bytes")
#: recorded for a model checked with fusion (docs/fusion.md)
FUSED_TOTALS = ("kernels", "mac_bytes_fused")
PART_FIELDS = ("count", "madds", "flops", "mac", "params")


@dataclass
class Record:
    """What a baseline remembers of one model."""

    name: str
    target: str
    inputs: list[dict[str, Any]]
    totals: dict[str, int]
    op_types: dict[str, dict[str, int]] = field(default_factory=dict)
    modules: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target, "inputs": self.inputs, "totals": self.totals,
                "op_types": self.op_types, "modules": self.modules}


def record_of(name: str, target: str, analysis: Analysis) -> Record:
    """The report's own rows (by_op_type, by_module), reduced to exact integers."""
    where = f"{name}: "
    totals = {k: _int(v, where + k) for k, v in analysis.total().as_dict().items()}
    op_types = {r["op_type"]: {f: _int(r[f], f"{where}{r['op_type']}") for f in PART_FIELDS}
                for r in by_op_type(analysis)}
    modules = {r["module"]: {f: _int(r[f], f"{where}{r['module']}") for f in PART_FIELDS}
               for r in by_module(analysis) if r["module"]}
    inputs = [s.describe() for s in analysis.inputs]
    return Record(name, target, inputs, totals, op_types, modules)


def fused_totals(fusion: Any, name: str) -> dict[str, int]:
    """A fused model's kernel count and the MAC bytes its kernels move."""
    return {"kernels": len(fusion.kernels),
            "mac_bytes_fused": _int(fusion.mac_bytes_fused, f"{name}: mac_bytes_fused")}


def memory_totals(memory: Memory, name: str) -> dict[str, int]:
    """The memory figures a budget can limit, as exact integers."""
    return {k: _int(getattr(memory, k), f"{name}: {k}") for k in MEMORY_TOTALS}


def _int(value: Any, where: str) -> int:
    value = exact(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise CostModelError(f"{where}: cost {value} is not a concrete count; budgets and "
                             "baselines need concrete input shapes")
    return value


def dumps(records: Iterable[Record]) -> str:
    models = {r.name: r.as_json() for r in records}
    return json.dumps({"schema": SCHEMA, "models": models}, indent=2, sort_keys=True) + "\n"


def write_lock(path: Path, records: Iterable[Record]) -> None:
    try:
        path.write_text(dumps(records), encoding="utf-8")
    except OSError as exc:
        raise CostModelError(f"{path}: cannot write: {exc.strerror}") from exc


def read_lock(path: Path) -> dict[str, Record]:
    """Records by model name. A malformed file is bad input: exit 2 with file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CostModelError(f"{path}: no such baseline file (write one with "
                             f"`costmodel baseline -o {path}`)") from None
    except OSError as exc:
        raise CostModelError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CostModelError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise CostModelError(f"{path}: not a costmodel lock file (expected schema {SCHEMA!r})")
    records = {}
    for name, entry in data.get("models", {}).items():
        try:
            records[name] = Record(name, str(entry["target"]), list(entry["inputs"]),
                                   _ints(entry["totals"]),
                                   {k: _ints(v) for k, v in entry["op_types"].items()},
                                   {k: _ints(v) for k, v in entry["modules"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CostModelError(f"{path}:{entry_line(text, name)}: models.{name}: malformed "
                                 f"entry ({type(exc).__name__}: {exc})") from None
    return records


def _ints(values: dict[str, Any]) -> dict[str, int]:
    out = {}
    for k, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{k} = {v!r} is not an integer")
        out[k] = v
    return out


def entry_line(text: str, name: str) -> int:
    """The line where a model's entry starts in a lock file (for annotations), else 1."""
    match = re.search(r'^    ' + re.escape(json.dumps(name)) + r':', text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else 1
