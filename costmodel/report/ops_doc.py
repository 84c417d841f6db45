"""Write docs/ops.md: every aten op the formula registry knows, grouped by family module.

Run ``python -m costmodel.report.ops_doc`` after changing a formula module; ``--check`` exits 1 when
the file on disk differs from what the registry says now (for CI). ``render()`` returns the text.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from costmodel.formulas import REGISTRY, Entry
from costmodel.formulas.elementwise import (
    ACTIVATION_FLOPS,
    ARITHMETIC_FLOPS,
    ARITHMETIC_ONE,
    GELU_TANH_FLOPS,
    SOFTMAX_FLOPS,
)

#: Families in the order the document lists them; a family not named here comes after them.
FAMILY_ORDER = ("conv", "linear", "attention", "norm", "elementwise", "reduction", "pooling",
                "movement")

#: Where an op type is decided per call, what the decision is (by the deciding function's name).
DYNAMIC_OP_TYPES = {
    "conv_op_type": "by dimensions, kind and kernel: `Conv 1x1`, `Conv 3x3`, `Conv DW 3x3` "
                    "(groups == input channels), `Conv GW 1x1` (1 < groups < input channels), "
                    "`Conv1d 3`, `Conv3d 3x3x3`, `ConvTranspose 2x2`, `ConvTranspose1d 4`, "
                    "and so on",
    "_maybe_copy_type": "`View` when the result can be a view of the input, `Data Movement` "
                        "when the call has to copy (a reshape of a non-viewable layout, a "
                        "contiguous that changes the layout, a dtype cast)",
}

DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "ops.md"

_SOFTMAX_OPS = {"softmax", "_softmax", "_safe_softmax", "log_softmax", "_log_softmax"}


def op_name(packet: Any) -> str:
    """The aten name of an overload packet (``add``, ``_softmax``...)."""
    return str(packet.__name__)


def family_of(entry: Entry) -> str:
    """The family module an entry's formula lives in: ``conv``, ``movement``..."""
    return str(entry.formula.__module__).rsplit(".", 1)[-1]


def op_type_text(entry: Entry) -> str:
    """The table label an op reports under, or `per call` where a function decides it."""
    if callable(entry.op_type):
        return "per call (see above)"
    return entry.op_type if not entry.view or entry.op_type == "View" else f"{entry.op_type} (view)"


def dynamic_op_type_text(entry: Entry) -> str:
    """How an op type decided per call is decided."""
    name = getattr(entry.op_type, "__name__", "")
    return DYNAMIC_OP_TYPES.get(name) or _first_paragraph(entry.op_type) or f"decided by `{name}`"


def flops_per_element(name: str) -> str:
    """FLOPs per output element of an element-wise op, from the tables in elementwise.py."""
    base = name[:-1] if name.endswith("_") and not name.endswith("__") else name
    if base == "gelu":
        return f"{ACTIVATION_FLOPS['gelu']} ({GELU_TANH_FLOPS} with approximate='tanh')"
    for key in (name, base):
        if key in ACTIVATION_FLOPS:
            return str(ACTIVATION_FLOPS[key])
        if key in ARITHMETIC_FLOPS:
            return str(ARITHMETIC_FLOPS[key])
        if key in ARITHMETIC_ONE:
            return "1"
        if key in _SOFTMAX_OPS:
            return str(SOFTMAX_FLOPS)
    return "?"


def _first_paragraph(obj: Any) -> str:
    """An object's docstring up to its first blank line, on one line."""
    doc = (inspect.getdoc(obj) or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def _module_doc(module_name: str) -> str:
    module = importlib.import_module(module_name)
    return inspect.cleandoc(module.__doc__ or f"(no docstring in `{module_name}`)")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(entries: list[tuple[str, Entry]]) -> list[tuple[list[str], Entry]]:
    """One row per op, an in-place form (``add_``) folded into its base op's row."""
    by_name = dict(entries)
    rows: list[tuple[list[str], Entry]] = []
    folded: set[str] = set()
    for name, entry in entries:
        if name in folded:
            continue
        names = [name]
        inplace = name + "_"
        if inplace in by_name and not name.endswith("_"):
            names.append(inplace)
            folded.add(inplace)
        rows.append((names, entry))
    return rows


def _family_section(module_name: str, entries: list[tuple[str, Entry]]) -> list[str]:
    family = module_name.rsplit(".", 1)[-1]
    lines = [f"## {family}", "", f"Module `{module_name}`, {len(entries)} ops.", ""]
    lines += [_module_doc(module_name), ""]
    dynamic = {getattr(e.op_type, "__name__", ""): e for _, e in entries if callable(e.op_type)}
    for name in sorted(dynamic):
        text = dynamic_op_type_text(dynamic[name]).rstrip(".")
        lines += [f"Op type decided per call (`{name}`): {text}.", ""]
    if any(e.view for _, e in entries):
        lines += ["Ops of type View are registered as views: they cost nothing, and a parameter "
                  "read through one is charged to the op that consumes the view.", ""]
    elementwise = family == "elementwise"
    header = ["aten op", "op type"] + (["FLOPs per element"] if elementwise else []) + ["note"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for names, entry in _rows(entries):
        cells = [", ".join(f"`{n}`" for n in names), op_type_text(entry)]
        if elementwise:
            cells.append(flops_per_element(names[0]))
        cells.append(_first_paragraph(entry.formula) if entry.formula.__name__ != "formula"
                     else "")
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    return lines


def render() -> str:
    """The text of docs/ops.md for the registry as it is now."""
    families: dict[str, tuple[str, list[tuple[str, Entry]]]] = {}
    for packet, entry in REGISTRY.entries.items():
        module_name = str(entry.formula.__module__)
        family = family_of(entry)
        families.setdefault(family, (module_name, []))[1].append((op_name(packet), entry))
    order = [f for f in FAMILY_ORDER if f in families]
    order += sorted(f for f in families if f not in FAMILY_ORDER)

    lines = [
        "# Registered aten ops",
        "",
        "<!-- Generated by `python -m costmodel.report.ops_doc` from the formula registry. "
        "Do not edit by hand. -->",
        "",
        f"The registry holds {len(REGISTRY.entries)} aten ops (overload packets: every overload "
        "of an op shares its formula). An op that is not listed here is reported as "
        "`Unsupported: <op>` with its count and is never counted as zero in silence. Names "
        "that a build of torch does not have are skipped at registration, so this list is "
        "that of the torch the file was generated with. See [conventions.md](conventions.md) "
        "for what Mult-Adds, FLOPs, MAC and params mean.",
        "",
        "| family | ops |",
        "|---|---|",
    ]
    lines += [f"| [{f}](#{f}) | {len(families[f][1])} |" for f in order]
    lines.append("")
    for family in order:
        module_name, entries = families[family]
        lines += _family_section(module_name, sorted(entries, key=lambda e: e[0]))
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costmodel.report.ops_doc", description=__doc__)
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where to write (default {DEFAULT_OUTPUT})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the file is not current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.is_file() and args.output.read_text() == text
        if not current:
            print(f"{args.output} is out of date: run python -m costmodel.report.ops_doc",
                  file=sys.stderr)
        return 0 if current else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
