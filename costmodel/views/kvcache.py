"""The size of a model's key/value cache, read from the op graph.

A KV cache is the buffers of a module whose class name ends in ``Cache`` (``KVCache`` in
``costmodel.zoo.llama``, and any model that keeps its cache the same way): the keys and values
of past positions that a decode step reads. The size counts every element the cache holds
(its capacity), in the buffers' own dtype.
"""

from __future__ import annotations

from costmodel.analysis import Analysis
from costmodel.cost import Num, to_int


def _cache_buffers(analysis: Analysis) -> list[str]:
    modules = analysis.graph.graph["modules"]
    return [name for name in analysis.graph.graph["buffers"]
            if modules.get(name.rpartition(".")[0], "").endswith("Cache")]


def kv_cache_elements(analysis: Analysis) -> Num:
    """Elements held by the KV cache (0 when the model has none)."""
    buffers = analysis.graph.graph["buffers"]
    return to_int(sum((buffers[n].numel for n in _cache_buffers(analysis)), 0))


def kv_cache_bytes(analysis: Analysis) -> Num:
    """Bytes held by the KV cache (0 when the model has none)."""
    buffers = analysis.graph.graph["buffers"]
    return to_int(sum((buffers[n].nbytes for n in _cache_buffers(analysis)), 0))
