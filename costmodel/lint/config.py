"""Where lint settings come from in a project: the `[tool.costmodel.lint]` table of the budget
file that `costmodel check` reads (or `[lint]` in a costmodel.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costmodel.budget.config import find_config, load_section
from costmodel.errors import CostModelError
from costmodel.lint.settings import TABLE_KEYS


def lint_table(config: str | None) -> dict[str, tuple[Any, str]]:
    """The table's keys with their "file:line: key"; {} when there is no budget file (the
    defaults apply). A --config file that does not exist is an error."""
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise CostModelError(f"{config}: no such file")
    else:
        found = find_config(Path())
        if found is None:
            return {}
        path = found
    return load_section(path, "lint", TABLE_KEYS)
