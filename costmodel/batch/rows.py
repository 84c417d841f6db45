"""The batch output, schema ``costmodel-batch/1``: one row per target, in CSV, JSON lines or
Parquet (documented in docs/batch.md; add columns freely, never rename them).

CSV and JSON lines are written row by row as tasks finish (flushed, so that an interrupted run
keeps every finished row and `--resume` carries on from it); Parquet, a columnar file readable
only once closed, is written whole at the end, finished rows of an earlier run included.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from costmodel.errors import CostModelError

SCHEMA = "costmodel-batch/1"
#: column -> type ("str", "int", "float"); every row has every column, None where empty
COLUMNS: dict[str, str] = {
    "schema": "str",
    "target": "str",
    "family": "str",
    "status": "str",  # ok, unsupported (analysed; some ops have no formula), error, timeout
    "inputs": "str",
    "madds": "int",
    "flops": "int",
    "mac": "int",
    "mac_bytes": "int",
    "params": "int",
    "peak_bytes": "int",  # with --train only
    "unsupported": "int",  # unsupported op nodes
    "unsupported_ops": "str",  # "aten.op.overload:count;..." sorted by op
    "seconds": "float",
    "error": "str",
}
STATUSES = ("ok", "unsupported", "error", "timeout")
FAILED = ("error", "timeout")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


def complete(row: dict[str, Any]) -> dict[str, Any]:
    """Every column, in order, None where the row has nothing (an empty string too, so that
    every format reads back the same row)."""
    return {"schema": SCHEMA, **{k: None if row.get(k) == "" else row.get(k)
                                 for k in COLUMNS if k != "schema"}}


def format_of(path: str | None, given: str | None) -> str:
    """--format, else from -o's suffix (.csv, .jsonl, .parquet), else a table on stdout."""
    if given is not None:
        if given == "table" and path is not None:
            raise CostModelError(f"{path}: --format table prints to the terminal; write "
                                 f"a file as .csv, .jsonl or .parquet")
        if given == "parquet" and path is None:
            raise CostModelError("--format parquet needs -o FILE.parquet")
        return given
    if path is None:
        return "table"
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise CostModelError(f"{path}: unknown output type {suffix or '(none)'!r}: "
                             f"use .csv, .jsonl or .parquet (or --format)")
    return FORMATS[suffix]


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise CostModelError("Parquet output needs pyarrow (pip install 'costmodel[batch]' "
                             "or pip install pyarrow); CSV and JSON lines need nothing"
                             ) from None
    return pyarrow


class Output:
    """Where rows go: a file (opened, and its earlier rows read, before any work) or stdout."""

    def __init__(self, path: str | None, fmt: str, resume: bool) -> None:
        """Check that the file can be written and read its rows when resuming; open nothing
        yet."""
        if resume and path is None:
            raise CostModelError("--resume needs -o FILE: the rows of the earlier run")
        self.path, self.format = path, fmt
        self.previous: list[dict[str, Any]] = []
        self.new: list[dict[str, Any]] = []
        self._file: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None
        self._append = False
        if fmt == "parquet":
            _pyarrow()
        if path is None:
            return
        file = Path(path)
        self._append = resume and file.exists() and file.stat().st_size > 0
        if self._append:
            self.previous = read(path, fmt)
        _check_writable(file)

    def start(self) -> None:
        """Open the file for the rows to come (after the cluster is up: a run that cannot
        start leaves an earlier file as it was); a Parquet file is written at the end."""
        if self.path is None or self.format == "parquet":
            return
        try:
            # open across the whole run, row after row: closed by close()
            self._file = open(self.path, "a" if self._append else "w",  # noqa: SIM115
                              encoding="utf-8", newline="")
        except OSError as exc:
            raise CostModelError(f"{self.path}: cannot write: {exc.strerror}") from exc
        if self.format == "csv":
            self._writer = csv.DictWriter(self._file, fieldnames=list(COLUMNS))
            if not self._append:
                self._writer.writeheader()
                self._file.flush()

    def done(self) -> set[str]:
        """Targets with a row from an earlier run (--resume skips them)."""
        return {r["target"] for r in self.previous}

    def write(self, row: dict[str, Any]) -> None:
        row = complete(row)
        self.new.append(row)
        if self._writer is not None:
            self._writer.writerow({k: "" if v is None else v for k, v in row.items()})
        elif self._file is not None:
            self._file.write(json.dumps(row) + "\n")
        if self._file is not None:
            self._file.flush()

    def rows(self) -> list[dict[str, Any]]:
        return self.previous + self.new

    def close(self) -> None:
        """Close the streamed file, or write the Parquet file (earlier rows first)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.format == "parquet" and self.path is not None and self.new:
            write_parquet(self.rows(), self.path)


def _check_writable(file: Path) -> None:
    existed = file.exists()
    try:
        with file.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise CostModelError(f"{file}: cannot write: {exc.strerror}") from exc
    if not existed:
        file.unlink()


def write_parquet(rows: list[dict[str, Any]], path: str) -> None:
    pa = _pyarrow()
    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}
    schema = pa.schema([(k, types[t]) for k, t in COLUMNS.items()],
                       metadata={"schema": SCHEMA})
    table = pa.Table.from_pylist([complete(r) for r in rows], schema=schema)
    try:
        pa.parquet.write_table(table, path)
    except OSError as exc:
        raise CostModelError(f"{path}: cannot write: {exc}") from exc


def read(path: str, fmt: str | None = None) -> list[dict[str, Any]]:
    """The rows of a batch output file (`fmt`, else from its suffix), typed as COLUMNS
    says."""
    fmt = fmt or format_of(path, None)
    try:
        if fmt == "parquet":
            rows = _pyarrow().parquet.read_table(path).to_pylist()
        else:
            with open(path, encoding="utf-8", newline="") as file:
                if fmt == "csv":
                    rows = [_typed(r) for r in csv.DictReader(file)]
                else:
                    rows = [json.loads(line) for line in file if line.strip()]
    except OSError as exc:
        raise CostModelError(f"{path}: cannot read: {exc.strerror}") from exc
    except (ValueError, KeyError) as exc:
        raise CostModelError(f"{path}: not a {SCHEMA} file: {exc}") from exc
    for row in rows:
        if row.get("schema") != SCHEMA or not row.get("target"):
            raise CostModelError(f"{path}: not a {SCHEMA} file (a row without schema "
                                 f"{SCHEMA!r} and a target)")
    return rows


def _typed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, kind in COLUMNS.items():
        text = row.get(key)
        if text is None:
            raise KeyError(f"no column {key!r}")
        if text == "":
            out[key] = None
        else:
            out[key] = int(text) if kind == "int" else float(text) if kind == "float" else text
    return out


def counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Rows per status."""
    out = dict.fromkeys(STATUSES, 0)
    for row in rows:
        out[row["status"]] = out.get(row["status"], 0) + 1
    return out


def render_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """The rows for a person: SI numbers, the error or unsupported ops last."""
    from tabulate import tabulate

    from costmodel.formatting import si

    def num(value: Any) -> str:
        return "" if value is None else si(value)

    train = any(r.get("peak_bytes") is not None for r in rows)
    headers = ["Target", "Family", "Status", "Mult-Adds", "FLOPs", "MAC", "MAC bytes",
               "Params", *(["Peak bytes"] if train else []), "Seconds", "Unsupported / error"]
    body = []
    for r in rows:
        note = r.get("error") or r.get("unsupported_ops") or ""
        body.append([r["target"], r.get("family") or "", r["status"], num(r.get("madds")),
                     num(r.get("flops")), num(r.get("mac")), num(r.get("mac_bytes")),
                     num(r.get("params")), *([num(r.get("peak_bytes"))] if train else []),
                     "" if r.get("seconds") is None or math.isnan(r["seconds"])
                     else f"{r['seconds']:.1f}", note])
    return tabulate(body, headers, tablefmt="github" if markdown else "simple",
                    disable_numparse=True)
