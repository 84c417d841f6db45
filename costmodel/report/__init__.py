"""Rendering: an Analysis or a view as tables, JSON, CSV and markdown (tables), memory reports
(memory), figures (plot, figures), and the generated docs/ops.md (ops_doc). Reports read, never
trace. `costmodel.report.render` and friends stay importable from here as before."""

from costmodel.formatting import exact, readable, si
from costmodel.report.tables import (
    SCHEMA,
    by_module,
    by_node,
    by_op_type,
    op_type_of,
    render,
    to_json,
)

__all__ = ["SCHEMA", "by_module", "by_node", "by_op_type", "exact", "op_type_of", "readable",
           "render", "si", "to_json"]
