"""The lint's rules and thresholds: their names, defaults and meaning in one table, read from
the command line and from `[tool.costmodel.lint]`. Imports nothing heavy, so the command line
can build its options from it."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from costmodel.errors import CostModelError

#: The four guidelines of ShuffleNetV2 (Ma et al., 2018), section 3.
RULES: dict[str, str] = {
    "G1": "equal channel width minimises MAC",
    "G2": "excessive group convolution increases MAC",
    "G3": "network fragmentation reduces the degree of parallelism",
    "G4": "element-wise operations are non-negligible",
}


@dataclass(frozen=True)
class Thresholds:
    """When a finding is reported. Shares are fractions (0.005 is 0.5%)."""

    min_share: float = 0.001
    g1_min_ratio: float = 2.0
    g2_max_groups: int = 1
    g3_max_branches: int = 2
    g3_max_density: float = 3.0
    g4_max_share: float = 0.40
    g4_min_mac_per_flop: float = 0.05


#: Option help, by field; a "%" field is a share, written like "0.5%" (a bare number is a
#: percentage too).
HELP: dict[str, str] = {
    "min_share": "% report a finding only if its MAC at stake is at least this share of the "
                 "model's MAC (default 0.1%%)",
    "g1_min_ratio": "G1: flag a convolution whose wider side has at least this many times the "
                    "channels of the narrower (default 2)",
    "g2_max_groups": "G2: flag a grouped (not depthwise) convolution with more groups than "
                     "this (default 1)",
    "g3_max_branches": "G3: flag a block with more parallel branches than this (default 2)",
    "g3_max_density": "G3: flag a block with more than this many times the model's median ops "
                      "per Mult-Add (default 3)",
    "g4_max_share": "% G4: flag a block whose element-wise ops carry more than this share of its "
                    "MAC (default 40%%)",
    "g4_min_mac_per_flop": "G4: count a depthwise convolution as element-wise when its MAC per "
                           "FLOP is at least this (default 0.05; a 3x3 one is about 0.11)",
}
PERCENT = {name for name, text in HELP.items() if text.startswith("%")}


def option(name: str) -> str:
    """The command-line flag of a threshold: g1_min_ratio -> --g1-min-ratio."""
    return "--" + name.replace("_", "-")


def parse_value(name: str, value: Any, where: str) -> float | int:
    """A threshold from TOML or the command line; `where` names the key for the message."""
    kind = {f.name: f.type for f in fields(Thresholds)}[name]
    text = "" if isinstance(value, bool) else str(value).strip()
    if name in PERCENT:
        text = text.removesuffix("%").strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        example = '"0.5%"' if name in PERCENT else ("2" if kind == "int" else "2.5")
        raise CostModelError(f"{where}: bad value {value!r} (write e.g. {example})") from None
    if not number.is_finite() or number < 0:
        raise CostModelError(f"{where}: bad value {value!r} (must be a number >= 0)")
    if name in PERCENT:
        return float(number / 100)
    if kind == "int":
        if number != number.to_integral_value() or number < 1:
            raise CostModelError(f"{where}: bad value {value!r} (must be a whole number >= 1)")
        return int(number)
    return float(number)


def parse_rules(value: Any, where: str) -> list[str]:
    """"G1,G3" or ["G1", "G3"] -> ["G1", "G3"]; an unknown name is an error."""
    if isinstance(value, str):
        names = [v.strip().upper() for v in value.split(",") if v.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = [v.strip().upper() for v in value]
    else:
        raise CostModelError(f"{where}: expected rule names like \"G1,G2\"")
    for name in names:
        if name not in RULES:
            raise CostModelError(f"{where}: unknown rule {name!r} (expected one of "
                                 f"{', '.join(RULES)})")
    return [r for r in RULES if r in names]


#: Keys of `[tool.costmodel.lint]`.
TABLE_KEYS = {"rules", "fail_on", *(f.name for f in fields(Thresholds))}


@dataclass(frozen=True)
class Settings:
    """Which rules run, which fail the command, and the thresholds."""

    rules: tuple[str, ...] = tuple(RULES)
    fail_on: tuple[str, ...] = ()
    thresholds: Thresholds = Thresholds()


def settings(table: dict[str, tuple[Any, str]], rules: str | None, fail_on: str | None,
             overrides: dict[str, str | None]) -> Settings:
    """Settings from a config table (key -> (value, "file:line: key")), then the command line
    (`rules`, `fail_on`, and threshold `overrides` by field name), which wins."""
    values: dict[str, Any] = {}
    for name, (value, where) in table.items():
        if name in ("rules", "fail_on"):
            values[name] = tuple(parse_rules(value, where))
        else:
            values[name] = parse_value(name, value, where)
    if rules is not None:
        values["rules"] = tuple(parse_rules(rules, "--rules"))
    if fail_on is not None:
        values["fail_on"] = tuple(parse_rules(fail_on, "--fail-on"))
    for name, value in overrides.items():
        if value is not None:
            values[name] = parse_value(name, value, option(name))
    thresholds = replace(Thresholds(), **{k: v for k, v in values.items()
                                          if k not in ("rules", "fail_on")})
    chosen = Settings(values.get("rules", tuple(RULES)), values.get("fail_on", ()), thresholds)
    if not chosen.rules:
        raise CostModelError("--rules: name at least one rule (G1, G2, G3, G4)")
    idle = [r for r in chosen.fail_on if r not in chosen.rules]
    if idle:
        raise CostModelError(f"--fail-on {','.join(idle)}: not among the rules that run "
                             f"({','.join(chosen.rules)})")
    return chosen
