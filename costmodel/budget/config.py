"""Budget files: `[tool.costmodel]` in pyproject.toml, or a costmodel.toml with the same keys at
its top level. Parsed with the standard library's tomllib; every error names the file, the key
and the line, because the user's next step is to open that line."""

from __future__ import annotations

import re
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from costmodel.capture.hf import is_hf_target, rebase
from costmodel.capture.load import split_target
from costmodel.errors import CostModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib; tomli is the same parser
    import tomli as tomllib

#: Totals a budget can limit: TOML key -> Cost field.
TOTAL_LIMITS = {"max_madds": "madds", "max_flops": "flops", "max_mac": "mac",
                "max_mac_bytes": "mac_bytes", "max_params": "params"}
#: Memory a model may take (costmodel memory): TOML key -> field of its report.
MEMORY_LIMITS = {"max_peak_bytes": "peak_bytes",
                 "max_peak_activation_bytes": "peak_activation_bytes",
                 "max_saved_activation_bytes": "saved_activation_bytes"}
#: The MAC a model's kernels move once fused (docs/fusion.md), by the entry's `fuse` mode.
FUSED_LIMITS = {"max_mac_bytes_fused": "mac_bytes_fused"}
#: Limits per op type or per module (their rows carry no byte count).
PART_LIMITS = {k: v for k, v in TOTAL_LIMITS.items() if k != "max_mac_bytes"}
TOTAL_LIMITS = {**TOTAL_LIMITS, **MEMORY_LIMITS, **FUSED_LIMITS}
MODEL_KEYS = {"target", "input_shape", "dtype", "op_types", "modules", "train", "optimizer",
              "execute", "fuse", *TOTAL_LIMITS}
TOP_KEYS = {"models", "baseline", "tolerance", "lint"}  # lint: costmodel lint's own table
SUFFIXES = {"": 1, "K": 10**3, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_NUMBER = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\s*([kKMGT]?)\s*$")


@dataclass(frozen=True)
class Limit:
    """One `max_*` entry: `scope` is "total", "op_type" or "module"; `part` names the op type
    or module path (empty for totals); `where` is "file:line: key" for messages."""

    scope: str
    part: str
    metric: str
    value: int
    key: str
    file: str | None = None
    line: int | None = None

    @property
    def where(self) -> str:
        place = f"{self.file}:{self.line}: " if self.file and self.line else ""
        return f"{place}{self.key}"


@dataclass
class ModelSpec:
    """A model to check: its name (the baseline's key), TARGET, inputs and limits. `target` is
    resolved against the budget file's folder; `written` is the TARGET as the file spells it,
    which is what a lock file records (the same on every machine)."""

    name: str
    target: str
    input_shapes: list[str] | None = None
    dtype: str = "float32"
    limits: list[Limit] = field(default_factory=list)
    file: str | None = None
    line: int | None = None
    written: str | None = None
    #: measure a training step (forward, backward and `optimizer`'s update), not inference
    train: bool = False
    optimizer: str | None = None
    #: record a run on real CPU tensors (--execute): for control flow that depends on values
    execute: bool = False
    #: group the ops into kernels ("inductor" or "engine") and record the fused MAC
    fuse: str | None = None

    @property
    def needs_fusion(self) -> bool:
        return any(limit.metric in FUSED_LIMITS.values() for limit in self.limits)

    @property
    def needs_memory(self) -> bool:
        return any(limit.metric in MEMORY_LIMITS.values() for limit in self.limits)


@dataclass
class Config:
    models: list[ModelSpec]
    path: Path | None = None
    baseline: Path | None = None
    tolerance: Decimal | None = None


def parse_number(value: Any, where: str, allow_bytes: bool = False) -> int:
    """A count: a TOML integer, a whole float (6.5e6), or a string with an SI suffix ("6.5M",
    "2G", "64MB" for byte limits). Suffixes are powers of 1000, as in the reports."""
    if isinstance(value, bool):
        raise CostModelError(f"{where}: expected a number, got {str(value).lower()}")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if allow_bytes and text and text[-1] in "bB":
            text = text[:-1]
        match = _NUMBER.match(text)
        try:
            if not match:
                raise InvalidOperation
            number = Decimal(match.group(1).replace("_", "")) * SUFFIXES[match.group(2)]
        except InvalidOperation:
            raise CostModelError(f"{where}: bad number {value!r} (write e.g. 6500000 or "
                                 f"\"6.5M\"; suffixes K, M, G, T)") from None
    else:
        raise CostModelError(f"{where}: expected a number, got {type(value).__name__}")
    if number < 0 or number != number.to_integral_value():
        raise CostModelError(f"{where}: bad number {value!r} (must be a whole, non-negative "
                             "count)")
    return int(number)


def parse_tolerance(value: Any, where: str = "--tolerance") -> Decimal:
    """"0.5%" -> 0.005. A bare number is a percentage too, so 0.5 and "0.5%" agree."""
    text = "" if isinstance(value, bool) else str(value).strip().removesuffix("%").strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise CostModelError(f"{where}: bad tolerance {value!r} (write e.g. \"0.5%\")") from None
    if not number.is_finite() or number < 0:
        raise CostModelError(f"{where}: bad tolerance {value!r} (must be >= 0%)")
    return number / 100


def find_config(directory: Path) -> Path | None:
    """costmodel.toml, else a pyproject.toml that has a [tool.costmodel] table."""
    own = directory / "costmodel.toml"
    if own.is_file():
        return own
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file() and re.search(r"^\s*\[+\s*tool\.costmodel\b",
                                         pyproject.read_text(encoding="utf-8"), re.MULTILINE):
        return pyproject
    return None


def load_config(path: Path) -> Config:
    """Read and validate a budget file; relative paths in it are relative to its folder."""
    text, data = _read(path)
    lines = key_lines(text)
    prefix: tuple[str, ...] = ()
    if path.name == "pyproject.toml":
        prefix = ("tool", "costmodel")
        table = data.get("tool", {}).get("costmodel")
        if table is None:
            raise CostModelError(f"{path}: no [tool.costmodel] table")
    else:
        table = data
    return _parse_table(table, _Where(path, lines, prefix))


def load_section(path: Path, section: str, allowed: Collection[str]
                 ) -> dict[str, tuple[Any, str]]:
    """One sub-table of a budget file ([tool.costmodel.SECTION] in pyproject.toml, [SECTION] in
    costmodel.toml) as key -> (value, "file:line: key"), for a command that validates the
    values itself; unknown keys are an error here. {} when the file has no such table."""
    text, data = _read(path)
    prefix = ("tool", "costmodel") if path.name == "pyproject.toml" else ()
    table: Any = data
    for part in (*prefix, section):
        table = table.get(part, {}) if isinstance(table, dict) else None
    where = _Where(path, key_lines(text), prefix)
    if not isinstance(table, dict):
        raise CostModelError(f"{where(section)}: expected a table")
    _known_keys(table, allowed, where, (section,))
    return {key: (value, where(section, key)) for key, value in table.items()}


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text and its parsed TOML; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CostModelError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column (\d+)\)", message)
        line = found.group(1) if found else str(max(1, text.count("\n")))
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
        raise CostModelError(f"{path}:{line}: malformed TOML: {message}") from None
    return text, data


@dataclass(frozen=True)
class _Where:
    path: Path
    lines: dict[tuple[str, ...], int]
    prefix: tuple[str, ...]

    def line(self, *key: str) -> int:
        """The line of the key, or of its nearest enclosing table that has one."""
        full = (*self.prefix, *key)
        for end in range(len(full), 0, -1):
            if full[:end] in self.lines:
                return self.lines[full[:end]]
        return 1

    def name(self, *key: str) -> str:
        return ".".join(_quote(k) for k in (*self.prefix, *key))

    def __call__(self, *key: str) -> str:
        return f"{self.path}:{self.line(*key)}: {self.name(*key)}"


def _quote(part: str) -> str:
    return part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'


def _parse_table(table: Any, where: _Where) -> Config:
    if not isinstance(table, dict):
        raise CostModelError(f"{where()}: expected a table")
    _known_keys(table, TOP_KEYS, where, ())
    base = where.path.parent
    baseline = None
    if "baseline" in table:
        if not isinstance(table["baseline"], str):
            raise CostModelError(f"{where('baseline')}: expected a file name")
        baseline = base / table["baseline"]
    tolerance = None
    if "tolerance" in table:
        tolerance = parse_tolerance(table["tolerance"], where("tolerance"))
    models = table.get("models")
    if not isinstance(models, dict) or not models:
        raise CostModelError(f"{where('models')}: declare at least one model, e.g. "
                             f"[{where.name('models', 'mynet')}] with target = \"model.py:Net\"")
    specs = [_parse_model(name, entry, where, base) for name, entry in models.items()]
    return Config(specs, where.path, baseline, tolerance)


def _parse_model(name: str, entry: Any, where: _Where, base: Path) -> ModelSpec:
    key = ("models", name)
    if not isinstance(entry, dict):
        raise CostModelError(f"{where(*key)}: expected a table of the model's settings")
    _known_keys(entry, MODEL_KEYS, where, key)
    if "target" not in entry:
        raise CostModelError(f"{where(*key)}: missing target (e.g. target = \"model.py:Net\")")
    target = entry["target"]
    if not isinstance(target, str) or not target.strip():
        raise CostModelError(f"{where(*key, 'target')}: expected a TARGET string")
    written = target
    path, attr, is_file = split_target(target)
    if is_hf_target(target):  # hf:ORG/NAME, hf:PATH, hf:MODEL_TYPE: no Python file
        target, is_file = rebase(target, base), False
    if is_file and not Path(path).is_absolute():
        path = str(base / path)
        target = f"{path}:{attr}" if attr else path
    if is_file and not Path(path).is_file():
        raise CostModelError(f"{where(*key, 'target')}: {path}: no such file")
    dtype = entry.get("dtype", "float32")
    if not isinstance(dtype, str):
        raise CostModelError(f"{where(*key, 'dtype')}: expected a dtype name like \"float32\"")
    train = entry.get("train", False)
    if not isinstance(train, bool):
        raise CostModelError(f"{where(*key, 'train')}: expected true or false")
    execute = entry.get("execute", False)
    if not isinstance(execute, bool):
        raise CostModelError(f"{where(*key, 'execute')}: expected true or false")
    optimizer = entry.get("optimizer")
    if optimizer is not None:
        from costmodel.train import check_optimizer

        try:
            optimizer = check_optimizer(optimizer if isinstance(optimizer, str) else "")
        except CostModelError as exc:
            raise CostModelError(f"{where(*key, 'optimizer')}: {exc}") from None
        if not train:
            raise CostModelError(f"{where(*key, 'optimizer')}: needs train = true")
    fuse = entry.get("fuse")
    if fuse is not None:
        from costmodel.views.fusion import MODES

        if fuse not in MODES:
            raise CostModelError(f"{where(*key, 'fuse')}: expected one of "
                                 f"{', '.join(repr(m) for m in MODES)}")
    spec = ModelSpec(name, target, _shapes(entry.get("input_shape"), where(*key, "input_shape")),
                     dtype, file=str(where.path), line=where.line(*key), written=written,
                     train=train, optimizer=optimizer, execute=execute, fuse=fuse)
    spec.limits.extend(_limits(entry, "total", "", TOTAL_LIMITS, where, key))
    for scope, table_key in (("op_type", "op_types"), ("module", "modules")):
        parts = entry.get(table_key, {})
        if not isinstance(parts, dict):
            raise CostModelError(f"{where(*key, table_key)}: expected a table")
        for part, limits in parts.items():
            if not isinstance(limits, dict):
                raise CostModelError(f"{where(*key, table_key, part)}: expected a table of "
                                     f"limits like {{ max_mac = \"1M\" }}")
            spec.limits.extend(_limits(limits, scope, part, PART_LIMITS, where,
                                       (*key, table_key, part), strict=True))
    return spec


def _known_keys(table: dict[str, Any], allowed: Collection[str], where: _Where,
                key: tuple[str, ...]) -> None:
    for k in table:
        if k not in allowed:
            raise CostModelError(f"{where(*key, k)}: unknown key (expected one of "
                                 f"{', '.join(sorted(allowed))})")


def _limits(table: dict[str, Any], scope: str, part: str, allowed: dict[str, str],
            where: _Where, key: tuple[str, ...], strict: bool = False) -> list[Limit]:
    if strict:
        _known_keys(table, allowed, where, key)
    out = []
    for k, value in table.items():
        if k not in allowed:
            continue
        number = parse_number(value, where(*key, k), allow_bytes="_bytes" in k)
        out.append(Limit(scope, part, allowed[k], number, where.name(*key, k),
                         str(where.path), where.line(*key, k)))
    return out


def limits_from_kwargs(values: dict[str, Any], source: str) -> list[Limit]:
    """The same limits given as Python keyword arguments (the pytest plugin's marker)."""
    out = []
    for k, value in values.items():
        if k in ("op_types", "modules"):
            scope = "op_type" if k == "op_types" else "module"
            for part, limits in dict(value).items():
                for lk, lv in dict(limits).items():
                    if lk not in PART_LIMITS:
                        raise CostModelError(f"{source}: {k}[{part!r}]: unknown limit {lk!r}")
                    name = f"{k}[{part!r}].{lk}"
                    out.append(Limit(scope, part, PART_LIMITS[lk],
                                     parse_number(lv, f"{source}: {name}"), name))
        elif k in TOTAL_LIMITS:
            out.append(Limit("total", "", TOTAL_LIMITS[k],
                             parse_number(value, f"{source}: {k}", "_bytes" in k), k))
        else:
            raise CostModelError(f"{source}: unknown limit {k!r} (expected one of "
                                 f"{', '.join(sorted(TOTAL_LIMITS))}, op_types, modules)")
    return out


def _shapes(value: Any, where: str) -> list[str] | None:
    """input_shape = "1,3,224,224", [1, 3, 224, 224], or a list of either for several
    inputs; returned in --input-shape's text form, which load() parses."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [",".join(map(str, value))]
    if isinstance(value, list) and value:
        out = []
        for v in value:
            if isinstance(v, str):
                out.append(v)
            elif isinstance(v, list) and all(isinstance(d, (int, str)) for d in v):
                out.append(",".join(map(str, v)))
            else:
                break
        else:
            return out
    raise CostModelError(f"{where}: expected a shape like \"1,3,224,224\" or [1, 3, 224, 224], "
                         "or a list of them")


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*((?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
                     r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*'))*)\s*=")
_PART = re.compile(r"\s*([A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*')\s*(?:\.|$)")


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Line numbers of table headers and `key =` lines (tomllib reports none). A line scanner,
    not a parser: keys inside inline tables or multi-line values fall back to their table."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _dotted(header.group(1))
            lines.setdefault(table, number)
            continue
        assign = _ASSIGN.match(line)
        if assign:
            lines.setdefault((*table, *_dotted(assign.group(1))), number)
    return lines


def _dotted(text: str) -> tuple[str, ...]:
    parts = []
    for match in _PART.finditer(text):
        part = match.group(1)
        if part[:1] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)
