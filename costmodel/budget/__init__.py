"""Budgets, baselines and regressions (`costmodel check`, `baseline`, `diff`).

Kept apart: config (budget files), lock (baseline records and files), compare (verdicts, pure),
render (table, GitHub, JUnit, JSON), commands (which models, measured how)."""

from costmodel.budget.compare import CheckResult, ModelResult, RecordDiff, diff_records, judge
from costmodel.budget.config import Config, Limit, ModelSpec, load_config, parse_number
from costmodel.budget.lock import Record, read_lock, record_of, write_lock

__all__ = ["CheckResult", "Config", "Limit", "ModelResult", "ModelSpec", "Record", "RecordDiff",
           "diff_records", "judge", "load_config", "parse_number", "read_lock", "record_of",
           "write_lock"]
