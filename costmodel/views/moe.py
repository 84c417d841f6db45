"""Mixture-of-experts layers found in a costed op graph: total and active parameters per token.

A router is a `topk` over E expert scores picking k. Its experts are either 3-D weights of E
stacked expert matrices (read by a grouped matmul, as `transformers` and the zoo's Mixtral run
them, or one expert at a time) or the parameters of a module list of E experts
(`experts.0.w1.weight`, ...: the expert loop), whichever sits nearest the router in the module
tree, at most two levels above it. A token runs through k of the E
experts, so it uses k / E of the experts' parameters: active parameters per token are the
total less (1 - k / E) of every expert's share. Only the graph is read (never the model), so
experts the forward never reached (an expert loop that routed no token to one, on the input an
executed trace ran) are not counted; `experts_seen` says how many were.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from costmodel.cost import Num, div, to_int
from costmodel.formatting import si

if TYPE_CHECKING:
    from costmodel.analysis import Analysis

@dataclass(frozen=True)
class ExpertLayer:
    """One routed layer: where its experts live, how many, how many a token uses."""

    module: str
    experts: int
    top_k: int
    params: Num  # parameters of the experts seen in the graph
    experts_seen: int

    @property
    def active_params(self) -> Num:
        """The experts' parameters one token runs through: k experts' worth."""
        return div(self.params * self.top_k, self.experts_seen)


@dataclass(frozen=True)
class MoESummary:
    layers: list[ExpertLayer]
    total_params: Num

    @property
    def expert_params(self) -> Num:
        return to_int(sum((layer.params for layer in self.layers), 0))

    @property
    def active_params(self) -> Num:
        """Parameters one token uses: the dense ones and top_k of each layer's experts."""
        active = sum((layer.active_params for layer in self.layers), 0)
        return to_int(self.total_params - self.expert_params + active)

    def as_dict(self) -> dict[str, Any]:
        first = self.layers[0]
        return {"layers": len(self.layers), "experts": first.experts, "top_k": first.top_k,
                "total_params": self.total_params, "expert_params": self.expert_params,
                "active_params": self.active_params,
                "experts_seen": sum(layer.experts_seen for layer in self.layers),
                "modules": [layer.module for layer in self.layers]}

    def describe(self) -> str:
        """One line for a table's header."""
        first = self.layers[0]
        layers = f"{len(self.layers)} layer{'s' if len(self.layers) != 1 else ''}"
        return (f"MoE: {layers} of {first.experts} experts, top {first.top_k}: "
                f"params {si(self.total_params)}, active per token {si(self.active_params)}")


def _path(module: str) -> list[str]:
    return module.split(".") if module else []


def _shared(a: str, b: str) -> int:
    count = 0
    for x, y in zip(_path(a), _path(b)):
        if x != y:
            break
        count += 1
    return count


@dataclass(frozen=True)
class _Experts:
    """Parameters that may be a router's experts: stacked 3-D weights of `seen` experts, or a
    module list of which `seen` members (the highest index `last`) ran."""

    where: str
    names: list[str]
    seen: int
    stacked: bool
    last: int = 0

    def fits(self, experts: int) -> bool:
        """Could these be a router's `experts`? A module list may miss members that no token
        reached on an executed input, but not most of them."""
        if self.stacked:
            return self.seen == experts
        return self.last < experts and 2 * self.seen > experts


def _module_lists(names: list[str]) -> dict[str, dict[int, list[str]]]:
    """Parameters under each indexed module path: {"layers.0.moe.experts": {3: [...]}}."""
    lists: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name in names:
        parts = name.split(".")
        for i, part in enumerate(parts[1:-1], start=1):
            if part.isdigit():
                lists[".".join(parts[:i])][int(part)].append(name)
    return lists


def summarize(analysis: Analysis) -> MoESummary | None:
    """The MoE layers of an analysed model, or None for a dense one."""
    ops = analysis.ops()
    routers = [(op["module"], op["call"].inputs[0].shape[op["call"].arg(2, "dim", -1)],
                op["call"].arg(1, "k")) for op in ops
               if op["supported"] and op["target"].startswith("aten.topk.")]
    if not routers:
        return None
    parameters = analysis.graph.graph["parameters"]
    candidates: list[_Experts] = []
    for op in ops:  # stacked expert weights, however read: grouped matmul, select, index...
        if "conv" in op["target"]:
            continue
        for name in op["params"]:
            if parameters[name].ndim == 3:
                owner = name.rsplit(".", 1)[0] if "." in name else ""
                candidates.append(_Experts(owner, [name], parameters[name].shape[0], True))
    for prefix, members in _module_lists(list(parameters)).items():
        names = [n for group in members.values() for n in group]
        candidates.append(_Experts(prefix, names, len(members), stacked=False,
                                   last=max(members)))
    layers: dict[str, tuple[str, int, int, set[str], int]] = {}
    for found in candidates:
        near = [(router, e, k) for router, e, k in routers
                if found.fits(e) and not router.startswith(found.where + ".")
                and _shared(found.where, router) >= len(_path(router)) - 2]
        if not near:
            continue
        router, e, k = max(near, key=lambda r: _shared(found.where, r[0]))
        _, _, _, names, _ = layers.setdefault(router, (found.where, e, k, set(), found.seen))
        names.update(found.names)
    if not layers:
        return None
    summary = [ExpertLayer(where, e, k, to_int(sum((parameters[n].numel for n in names), 0)),
                           seen) for where, e, k, names, seen in layers.values()]
    return MoESummary(summary, analysis.total().params)
