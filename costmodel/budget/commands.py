"""`costmodel check`, `baseline` and `diff`: which models, measured how, compared with what.
Costs come from costmodel.capture.load and costmodel.analysis; the numbers kept are the
report's rows."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from costmodel.analysis import analyze_loaded
from costmodel.budget.compare import CheckResult, RecordDiff, diff_records, judge
from costmodel.budget.config import Config, ModelSpec, find_config, load_config, parse_tolerance
from costmodel.budget.lock import (
    Record,
    entry_line,
    fused_totals,
    memory_totals,
    read_lock,
    record_of,
    write_lock,
)
from costmodel.budget.render import render_check, render_diff
from costmodel.capture.load import load, parse_dtype
from costmodel.errors import CostModelError
from costmodel.views.memory import memory


@dataclass
class Selection:
    """The models to run and the budget file they came from, if any."""

    specs: list[ModelSpec]
    config: Config | None


def select(targets: Sequence[str], config: str | None, input_shapes: Sequence[str] | None,
           dtype: str, train: bool = False, optimizer: str | None = None,
           execute: bool = False, fuse: str | None = None) -> Selection:
    """TARGETs from the command line, else --config, else ./costmodel.toml or a pyproject.toml
    with [tool.costmodel]. `train` (with `optimizer`) measures every model's training step;
    `execute` runs every model once on real CPU tensors; `fuse` groups every model's ops into
    kernels by that mode (docs/fusion.md)."""
    if targets:
        if config:
            raise CostModelError("give TARGETs or --config, not both")
        return Selection([ModelSpec(t, t, list(input_shapes) if input_shapes else None, dtype,
                                    train=train, optimizer=optimizer, execute=execute,
                                    fuse=fuse)
                          for t in targets], None)
    path = Path(config) if config else find_config(Path())  # relative: messages stay short
    if path is None:
        raise CostModelError("no models to check: give TARGETs, or --config FILE, or declare "
                             "[tool.costmodel.models.NAME] in ./pyproject.toml or "
                             "./costmodel.toml")
    if not path.is_file():
        raise CostModelError(f"{path}: no such file")
    loaded = load_config(path)
    for spec in loaded.models:
        if train:
            spec.train, spec.optimizer = True, optimizer or spec.optimizer
        spec.execute = spec.execute or execute
        spec.fuse = fuse or spec.fuse
    return Selection(loaded.models, loaded)


def measure(spec: ModelSpec, debug: bool = False) -> Record:
    """Load, trace and cost one model; an error names the budget entry it came from."""
    try:
        if spec.needs_fusion and spec.fuse is None:
            raise CostModelError("max_mac_bytes_fused needs a fusion mode: fuse = \"inductor\" "
                                 "or \"engine\" in the entry, or --fuse")
        loaded = load(spec.target, spec.input_shapes, parse_dtype(spec.dtype),
                      device="cpu" if spec.execute else "meta")
        analysis = analyze_loaded(loaded, debug, train=spec.train, optimizer=spec.optimizer,
                                  storages=spec.needs_memory or spec.train,
                                  execute=spec.execute)
        record = record_of(spec.name, spec.written or spec.target, analysis)
        if spec.train or spec.needs_memory:
            record.totals.update(memory_totals(memory(analysis), spec.name))
        if spec.fuse:
            from costmodel.views.fusion import check_mode, fuse

            check_mode(spec.fuse, spec.train, spec.name)
            record.totals.update(fused_totals(fuse(analysis, spec.fuse), spec.name))
        return record
    except CostModelError as exc:
        if spec.file is None:
            raise
        raise CostModelError(f"{spec.file}:{spec.line}: models.{spec.name}: {exc}") from exc


def check(targets: Sequence[str], config: str | None = None, baseline: str | None = None,
          tolerance: str | None = None, update: bool = False, input_shapes: Sequence[str] |
          None = None, dtype: str = "float32", debug: bool = False, train: bool = False,
          optimizer: str | None = None, execute: bool = False, fuse: str | None = None
          ) -> CheckResult:
    """Run every selected model; judge it against its limits and the baseline."""
    chosen = select(targets, config, input_shapes, dtype, train, optimizer, execute, fuse)
    lock_path = Path(baseline) if baseline else (chosen.config.baseline if chosen.config
                                                  else None)
    tol = Decimal(0)
    if tolerance is not None:
        tol = parse_tolerance(tolerance)
    elif chosen.config and chosen.config.tolerance is not None:
        tol = chosen.config.tolerance
    if update and lock_path is None:
        raise CostModelError("--update-baseline: name the lock file with --baseline FILE or "
                             "a baseline key in the budget file")
    before: dict[str, Record] = {}
    lock_text = ""
    if lock_path is not None and not (update and not lock_path.exists()):
        before = read_lock(lock_path)
        lock_text = lock_path.read_text(encoding="utf-8")
    lock_name = str(lock_path) if lock_path is not None else None
    results = []
    records = []
    for spec in chosen.specs:
        start = time.perf_counter()
        after = measure(spec, debug)
        records.append(after)
        result = judge(diff_records(spec.name, before.get(spec.name), after), after.target,
                       spec.limits, tol, lock_name, entry_line(lock_text, spec.name))
        result.seconds = time.perf_counter() - start
        results.append(result)
    names = {s.name for s in chosen.specs}
    for name, record in before.items():
        if name not in names:
            results.append(judge(diff_records(name, record, None), record.target, [], tol,
                                 lock_name, entry_line(lock_text, name)))
    outcome = CheckResult(results, lock_name, tol)
    if update and lock_path is not None:
        write_lock(lock_path, records)
        outcome.updated = True
        for result in outcome.models:  # the new baseline settles every baseline finding
            result.findings = [f for f in result.findings if f.kind == "budget"]
    return outcome


def baseline(targets: Sequence[str], config: str | None = None, output: str | None = None,
             input_shapes: Sequence[str] | None = None, dtype: str = "float32",
             debug: bool = False, train: bool = False, optimizer: str | None = None,
             execute: bool = False, fuse: str | None = None) -> tuple[Path, list[Record]]:
    """Measure every selected model and write the lock file."""
    chosen = select(targets, config, input_shapes, dtype, train, optimizer, execute, fuse)
    if output:
        path = Path(output)
    elif chosen.config and chosen.config.baseline:
        path = chosen.config.baseline
    else:
        path = Path("costmodel.lock.json")
    records = [measure(spec, debug) for spec in chosen.specs]
    write_lock(path, records)
    return path, records


def diff(a: str, b: str, input_shapes: Sequence[str] | None = None, dtype: str = "float32",
         debug: bool = False, train: bool = False, optimizer: str | None = None,
         execute: bool = False) -> list[RecordDiff]:
    """Two TARGETs, two lock files, or one of each ("a lock file" is a name ending .json)."""
    left = _side(a, input_shapes, dtype, debug, train, optimizer, execute)
    right = _side(b, input_shapes, dtype, debug, train, optimizer, execute)
    if len(left) == 1 and len(right) == 1:
        (ln, lr), = left.items()
        (rn, rr), = right.items()
        return [diff_records(ln if ln == rn else f"{ln} -> {rn}", lr, rr)]
    if len(left) == 1 or len(right) == 1:
        one, many, many_path = (left, right, b) if len(left) == 1 else (right, left, a)
        (name, record), = one.items()
        match = many.get(name) or next((r for r in many.values() if r.target == record.target),
                                       None)
        if match is None:
            raise CostModelError(f"{many_path}: no entry for {name!r} (entries: "
                                 f"{', '.join(sorted(many))})")
        pair = (match, record) if one is right else (record, match)
        return [diff_records(name, *pair)]
    names = list(left) + [n for n in right if n not in left]
    return [diff_records(n, left.get(n), right.get(n)) for n in names]


def _side(text: str, input_shapes: Sequence[str] | None, dtype: str,
          debug: bool, train: bool = False, optimizer: str | None = None,
          execute: bool = False) -> dict[str, Record]:
    if text.endswith(".json"):
        return read_lock(Path(text))
    spec = ModelSpec(text, text, list(input_shapes) if input_shapes else None, dtype,
                     train=train, optimizer=optimizer, execute=execute)
    return {text: measure(spec, debug)}


__all__ = ["baseline", "check", "diff", "render_check", "render_diff", "select"]
