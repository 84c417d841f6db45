"""Memory from liveness on the op graph: what is alive at every op, and the peak.

A storage (the memory behind a tensor and all its views) is allocated by the op that first
writes it and freed after the last op that reads it; views and in-place ops allocate nothing.
Parameters, buffers and the model's inputs are alive throughout; so are the model's outputs
from the op that writes them, and in a training step the parameters' gradients and the
optimizer's states. Live bytes at each op, split by kind, give the peak and where it falls
(docs/memory.md). With free dimensions every size is a polynomial in them; the peak is then the
maximum of the few ops' live bytes that no other op's dominates coefficient by coefficient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import sympy

from costmodel.analysis import Analysis
from costmodel.capture.symdims import symbol
from costmodel.cost import Num, to_int
from costmodel.train import optimizer_bytes, parameter_bytes, phase_of

SCHEMA = "costmodel-memory/1"
#: what each storage allocated during the step holds, in the order the plot stacks them
KINDS = ("activations", "backward", "gradients")


@dataclass
class Memory:
    """Bytes of a model's inference pass or training step. Fields are ints, or sympy
    expressions in the free dimensions."""

    model: str
    train: bool
    optimizer: str | None
    params_bytes: Num
    buffers_bytes: Num
    inputs_bytes: Num
    grads_bytes: Num
    optimizer_bytes: Num
    saved_activation_bytes: Num
    peak_activation_bytes: Num
    peak_bytes: Num
    peak_at: dict[str, str]
    #: op node names in execution order, and the live bytes of each kind at each (at the hints)
    ops: list[str] = field(default_factory=list)
    timeline: dict[str, list[int]] = field(default_factory=dict)
    hints: dict[str, int] = field(default_factory=dict)
    #: static_bytes at the hints (an int, for the figure)
    static_at_hints: int = 0
    #: what the report should say of how the graph was recorded (an executed run's input)
    notes: list[str] = field(default_factory=list)
    #: recorded while running on real CPU tensors (--execute): the bytes are for that input
    executed: bool = False

    @property
    def static_bytes(self) -> Num:
        """Alive through the whole step: parameters, buffers, inputs, optimizer states."""
        return self.params_bytes + self.buffers_bytes + self.inputs_bytes + self.optimizer_bytes


@dataclass
class _Lives:
    """Storage id -> (first op index, last op index, bytes, kind)."""

    birth: dict[int, int] = field(default_factory=dict)
    death: dict[int, int] = field(default_factory=dict)
    size: dict[int, Num] = field(default_factory=dict)
    kind: dict[int, str] = field(default_factory=dict)


def _lifetimes(graph: nx.DiGraph, order: Sequence[str]) -> tuple[_Lives, set[int]]:
    """Liveness of every storage the step allocates, and the storages backward reads."""
    persistent = graph.graph["storages"]
    lives = _Lives()
    read_by_backward: set[int] = set()
    grads: set[int] = set()
    internal: set[int] = set()  # made inside a function kept whole (attention's scores...)
    for i, name in enumerate(order):
        data = graph.nodes[name]
        phase = phase_of(data)
        for storage in [*data.get("storages", ()), *data.get("internal", ())]:
            if storage is None or storage[0] in persistent:
                continue
            sid, nbytes = storage
            if sid not in lives.birth:
                lives.birth[sid], lives.size[sid] = i, nbytes
                lives.kind[sid] = "activations" if phase == "forward" else "backward"
            lives.death[sid] = i
            if data.get("grad_of"):
                grads.add(sid)
        internal.update(s[0] for s in data.get("internal", ()))
        for sid in data.get("reads", ()):
            if sid in lives.birth:
                lives.death[sid] = i
            if "grad_fn" in data:  # run by autograd: not the seed gradient's ones_like
                read_by_backward.add(sid)
    position = {name: i for i, name in enumerate(order)}
    for storages, last in graph.graph.get("module_calls", ()):  # the caller holds them
        for sid in storages:
            if sid in lives.birth and last in position:
                lives.death[sid] = max(lives.death[sid], position[last])
    for last, after, storages in graph.graph.get("frames", ()):  # Python variables hold them
        at = position.get(last, -1) + after
        for sid in storages:
            if sid in lives.birth and lives.birth[sid] <= at < len(order):
                lives.death[sid] = max(lives.death[sid], at)
    end = len(order) - 1
    grads.update(graph.graph.get("grads", {}).values())
    for sid in [*graph.graph.get("output_storages", ()), *grads]:
        if sid in lives.birth:
            lives.death[sid] = end
    for sid in grads:
        lives.kind[sid] = "gradients"
    for sid in internal:  # one no later op reads is the function's workspace, not a tensor
        if lives.death.get(sid) == lives.birth.get(sid):
            for table in (lives.birth, lives.death, lives.size, lives.kind):
                table.pop(sid, None)
    return lives, read_by_backward


def _polynomials(values: list[Num]) -> tuple[np.ndarray, list[sympy.Expr]]:
    """Coefficient rows of each value over a common set of monomials, and the monomials."""
    if all(isinstance(v, int) for v in values):
        return np.array(values, dtype=np.int64).reshape(-1, 1), [sympy.Integer(1)]
    exprs = [sympy.expand(sympy.sympify(v)) for v in values]
    gens = sorted({g for e in exprs for g in e.free_symbols}, key=str)
    gens += sorted({a for e in exprs for a in e.atoms(sympy.floor, sympy.ceiling)}, key=str)
    polys = [sympy.Poly(e, *gens) for e in exprs]
    monomials = sorted({m for p in polys for m in p.monoms()})
    index = {m: j for j, m in enumerate(monomials)}
    rows = np.zeros((len(polys), len(monomials)), dtype=np.int64)
    for r, p in enumerate(polys):
        for m, c in p.terms():
            rows[r, index[m]] = int(c)
    return rows, [sympy.Mul(*(g ** k for g, k in zip(gens, m))) for m in monomials]


def _curves(lives: _Lives, steps: int, kinds: Sequence[str]
            ) -> tuple[dict[str, np.ndarray], list[sympy.Expr]]:
    """Live bytes of each kind at each op, as coefficient rows over common monomials."""
    sids = list(lives.birth)
    rows, monomials = _polynomials([lives.size[s] for s in sids] or [0])
    curves = {}
    for kind in kinds:
        diff = np.zeros((steps + 1, rows.shape[1]), dtype=np.int64)
        for r, sid in enumerate(sids):
            if lives.kind[sid] == kind:
                diff[lives.birth[sid]] += rows[r]
                diff[lives.death[sid] + 1] -= rows[r]
        curves[kind] = np.cumsum(diff, axis=0)[:steps]
    return curves, monomials


def _values_at(rows: np.ndarray, monomials: list[sympy.Expr], hints: dict[sympy.Symbol, int]
               ) -> np.ndarray:
    weights = np.array([int(m.xreplace(hints)) for m in monomials], dtype=np.int64)
    return rows @ weights


def _peak(rows: np.ndarray, monomials: list[sympy.Expr], values: np.ndarray
          ) -> tuple[Num, int]:
    """The maximum over ops, exact in the free dimensions, and the op where it falls at the
    hints. An op whose every coefficient is at most another's is never the maximum."""
    if len(rows) == 0:
        return 0, -1
    at = int(np.argmax(values))
    if rows.shape[1] == 1:
        return int(rows[at, 0] * int(monomials[0])), at
    front: list[np.ndarray] = []
    for i in np.argsort(-values, kind="stable"):
        if not any(np.all(kept >= rows[i]) for kept in front):
            front.append(rows[i])
    if len(monomials) == 2 and monomials[0] == 1 and monomials[1].is_Symbol:
        front = _envelope(front)
    exprs = [sum(int(c) * m for c, m in zip(row, monomials)) for row in front]
    return to_int(sympy.Max(*exprs)), at


def _envelope(lines: list[np.ndarray]) -> list[np.ndarray]:
    """The lines c + a*x that are the maximum somewhere on x >= 1 (the upper envelope)."""
    ordered = sorted(lines, key=lambda r: (int(r[1]), int(r[0])))
    hull: list[np.ndarray] = []
    for line in ordered:
        while hull:
            c1, a1 = int(hull[-1][0]), int(hull[-1][1])
            if a1 == int(line[1]) or c1 + a1 <= int(line[0]) + int(line[1]):
                hull.pop()  # below the new, steeper line from x = 1 on
                continue
            if len(hull) >= 2:  # the last is under the other two where they cross
                c0, a0 = int(hull[-2][0]), int(hull[-2][1])
                c2, a2 = int(line[0]), int(line[1])
                if (c0 - c2) * (a1 - a0) <= (c0 - c1) * (a2 - a0):
                    hull.pop()
                    continue
            break
        hull.append(line)
    return hull


def memory(analysis: Analysis) -> Memory:
    """Live memory at every op of an analysis traced with storages (or for training)."""
    graph = analysis.graph
    if "storages" not in graph.graph or not any(
            "storages" in d for _, d in graph.nodes(data=True) if d["kind"] == "op"):
        raise ValueError("this analysis was traced without storages: analyze(..., "
                         "storages=True) or train=True")
    train = bool(graph.graph.get("train"))
    optimizer = graph.graph.get("optimizer")
    order = [n for n, d in graph.nodes(data=True) if d["kind"] == "op"]
    lives, read_by_backward = _lifetimes(graph, order)
    hints = {symbol(n): int(h) for n, h in graph.graph.get("hints", {}).items()}
    curves, monomials = _curves(lives, len(order), KINDS)
    dynamic = sum(curves[k] for k in KINDS)
    active = curves["activations"] + curves["backward"]
    peak_dynamic, at = _peak(dynamic, monomials, _values_at(dynamic, monomials, hints))
    peak_active, _ = _peak(active, monomials, _values_at(active, monomials, hints))

    persistent = graph.graph["storages"]
    by_kind: dict[str, Num] = {"parameter": 0, "buffer": 0, "constant": 0, "input": 0}
    for kind, _, nbytes in persistent.values():
        by_kind[kind] = by_kind.get(kind, 0) + nbytes
    saved: Num = sum((lives.size[s] for s in read_by_backward
                      if s in lives.birth and lives.kind[s] == "activations"), 0)
    saved += sum((persistent[s][2] for s in read_by_backward
                  if s in persistent and persistent[s][0] == "input"), 0)
    grads = parameter_bytes(graph)[1] if train else 0
    states = optimizer_bytes(graph, optimizer) if train else 0
    static = by_kind["parameter"] + by_kind["buffer"] + by_kind["constant"] + by_kind["input"]
    where = graph.nodes[order[at]] if at >= 0 else {"module": ""}
    concrete_hints = {str(s): v for s, v in hints.items()}
    return Memory(
        model=analysis.model, train=train, optimizer=optimizer,
        params_bytes=to_int(by_kind["parameter"]),
        buffers_bytes=to_int(by_kind["buffer"] + by_kind["constant"]),
        inputs_bytes=to_int(by_kind["input"]), grads_bytes=to_int(grads),
        optimizer_bytes=to_int(states), saved_activation_bytes=to_int(saved),
        peak_activation_bytes=peak_active,
        peak_bytes=to_int(static + states + peak_dynamic),
        peak_at={"node": order[at] if at >= 0 else "", "module": where["module"]},
        ops=order,
        timeline={k: _values_at(curves[k], monomials, hints).tolist() for k in KINDS},
        hints=concrete_hints,
        static_at_hints=int(sympy.sympify(static + states).xreplace(hints)),
        notes=[n for n in analysis.notes if n.startswith("Executed on")],
        executed=analysis.executed,
    )


def analyze_memory(model: Any, train: bool = False, optimizer: str | None = None,
                   **options: Any) -> Memory:
    """`costmodel.analyze(model, ...)` traced with storages, then its memory."""
    from costmodel.analysis import analyze

    return memory(analyze(model, train=train, optimizer=optimizer, storages=True, **options))
