"""costmodel: what a PyTorch model costs (Mult-Adds, FLOPs, memory access, parameters), op by
op, and why it runs at the speed it does.

The public names are imported on first use, so that `import costmodel.<submodule>` (the CLI's
argument parsing, the pytest plugin that every test run in an environment loads) does not pay
for importing torch until it needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from costmodel import moved

__version__ = "0.1.0"

moved.install()  # the module paths of before the layout by stage, for one release (moved.py)

_EXPORTS = {
    "Analysis": "costmodel.analysis",
    "analyze": "costmodel.analysis",
    "Cost": "costmodel.cost",
    "CostModelError": "costmodel.errors",
    "lambdify": "costmodel.symbolic",
    "minimize": "costmodel.symbolic",
    "sweep": "costmodel.symbolic",
    "symbols": "costmodel.symbolic",
}

if TYPE_CHECKING:
    from costmodel.analysis import Analysis, analyze
    from costmodel.cost import Cost
    from costmodel.errors import CostModelError
    from costmodel.symbolic import lambdify, minimize, sweep, symbols


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'costmodel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Analysis", "Cost", "CostModelError", "__version__", "analyze", "lambdify", "minimize",
    "sweep", "symbols",
]
