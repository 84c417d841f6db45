"""`costmodel batch`: the cost table of a whole model collection, one row per target.

The targets (patterns expanded in :mod:`.targets`) are analysed as independent tasks on a Dask
cluster (:mod:`.engine`): a `distributed.LocalCluster` of worker processes by default, or an
existing cluster by its scheduler's address. Each task runs the in-process analysis and returns
a plain row (:mod:`.work`); rows stream into a CSV or JSON-lines file, or a Parquet file at the
end (:mod:`.rows`, schema ``costmodel-batch/1``). A target that raises, hangs or kills its
worker costs only its own row. See docs/batch.md.
"""

from __future__ import annotations

from .rows import COLUMNS, SCHEMA
from .targets import Target, expand
from .work import Options, analyse

__all__ = ["COLUMNS", "SCHEMA", "Options", "Target", "analyse", "expand"]
