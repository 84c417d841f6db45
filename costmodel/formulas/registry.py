"""The formula registry: the only way from an aten op to its cost.

A formula takes an `OpCall` (the op's arguments with every tensor replaced by a `TensorMeta`)
and returns a `Cost`. Each op family registers its formulas in its own module; `lookup` finds
one by the op's overload packet, so every overload and the in-place form share one formula.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from costmodel.cost import Cost, Num, prod

aten = torch.ops.aten


@dataclass(frozen=True, slots=True)
class TensorMeta:
    """Shape and dtype of a tensor the op reads or writes; sizes are ints or sympy expressions."""

    shape: tuple[Num, ...]
    dtype: torch.dtype
    stride: tuple[Num, ...] | None = None
    #: the elements of a small integer tensor where a run on real tensors saw them
    #: (--execute: a router's offsets), else None
    values: tuple[int, ...] | None = field(default=None, repr=False)

    @property
    def numel(self) -> Num:
        return prod(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> Num:
        return self.numel * self.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(frozen=True, slots=True)
class OpCall:
    """One op as a formula sees it: arguments, with tensors as `TensorMeta`, and its outputs."""

    target: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    outputs: tuple[TensorMeta, ...]
    #: what the graph around the op tells its formula: `top_k`, the picks per token of the
    #: router whose choices feed a grouped matmul's offsets
    context: dict[str, Any] = field(default_factory=dict, repr=False)

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        """Positional argument `index`, or keyword `name`, or `default`."""
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(name, default)

    @property
    def inputs(self) -> list[TensorMeta]:
        """Every tensor argument, in order, lists flattened."""
        return list(_tensors(self.args)) + list(_tensors(self.kwargs.values()))

    @property
    def out(self) -> TensorMeta:
        return self.outputs[0]

    def io(self) -> Cost:
        """MAC of reading every tensor argument once and writing every output once."""
        tensors = self.inputs + list(self.outputs)
        return Cost(mac=sum_numel(tensors), mac_bytes=sum_bytes(tensors))


def _tensors(values: Any) -> Iterator[TensorMeta]:
    for v in values:
        if isinstance(v, TensorMeta):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from _tensors(v)


def sum_numel(tensors: Any) -> Num:
    return sum((t.numel for t in tensors), 0)


def sum_bytes(tensors: Any) -> Num:
    return sum((t.nbytes for t in tensors), 0)


def access(*tensors: TensorMeta | None) -> Cost:
    """MAC of reading or writing the given tensors once each (None skipped: an absent bias)."""
    present = [t for t in tensors if t is not None]
    return Cost(mac=sum_numel(present), mac_bytes=sum_bytes(present))


OpType = str | Callable[[OpCall], str]
Formula = Callable[[OpCall], Cost]


@dataclass(frozen=True, slots=True)
class Entry:
    """A registered formula with the op type (a table row label) it reports under."""

    formula: Formula
    op_type: OpType
    view: bool = False

    def type_of(self, call: OpCall) -> str:
        return self.op_type(call) if callable(self.op_type) else self.op_type


@dataclass
class Registry:
    entries: dict[Any, Entry] = field(default_factory=dict)

    def register(self, names: str | list[str], op_type: OpType, *, view: bool = False):
        """Decorator: register `formula` for every aten op named (overload packets)."""
        packets = [names] if isinstance(names, str) else names

        def deco(formula: Formula) -> Formula:
            for name in packets:
                packet = getattr(aten, name, None)
                if packet is None:  # an op this torch build does not have
                    continue
                if packet in self.entries:
                    raise ValueError(f"aten.{name} has two formulas")
                self.entries[packet] = Entry(formula, op_type, view)
            return formula

        return deco

    def lookup(self, target: Any) -> Entry | None:
        packet = getattr(target, "overloadpacket", target)
        return self.entries.get(packet)

    def names(self) -> list[str]:
        return sorted(p.__name__ for p in self.entries)


REGISTRY = Registry()
register = REGISTRY.register
lookup = REGISTRY.lookup
