"""costmodel: what a PyTorch model costs (Mult-Adds, FLOPs, memory access, parameters), op by
op, and why it runs at the speed it does."""

__version__ = "0.1.0"

from costmodel.analysis import Analysis, analyze
from costmodel.cost import Cost
from costmodel.errors import CostModelError
from costmodel.symbolic import lambdify, minimize, sweep, symbols

__all__ = [
    "Analysis", "Cost", "CostModelError", "__version__", "analyze", "lambdify", "minimize",
    "sweep", "symbols",
]
