"""The roofline predictor: each op's time from its exact FLOPs and MAC bytes and a profile.

    time = max(FLOPs / (peak(dtype) * e_compute), MAC bytes / (bandwidth * e_memory)) + overhead

where the bandwidth is that of a streaming copy of the op's size when the profile measured a
curve (an op whose tensors fit in cache streams faster), else the profile's one figure, and
e_compute, e_memory and the overhead (a fixed time per op) are those of the op's class; a
convolution's e_compute falls with few channels per group, as width / (width + width_half).
Views move no data and launch no kernel: each costs the profile's dispatch time per view
(`view_s`), and every nn.Module call the forward makes (the graph counts them) the profile's
`module_call_s`, the Python time around the ops; both are overhead-bound pseudo-nodes, absent
when the profile's figure is 0. A calibrated profile replaces the roofline of the classes it
learned by a regressor per class (docs/latency.md), and adds `in_model_op_s` to every op that
is not a view: the Python of the functional call that issues it. The model's time is the sum
over its nodes (one stream, no overlap), which is how eager PyTorch runs a batch-1 forward pass.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from costmodel.analysis import Analysis
from costmodel.cost import is_concrete
from costmodel.errors import CostModelError
from costmodel.latency.classes import WIDTH_CLASSES, class_of, conv_width
from costmodel.latency.kernels import FEATURES, features, kernel_class
from costmodel.latency.profile import DeviceProfile
from costmodel.report.tables import op_type_of

BOUNDS = ("compute", "memory", "overhead")
#: The pseudo-node that carries a model's module-call time, and its op type and class.
MODULE_CALLS = "(module calls)"
MODULE_CALL_TYPE = "Module call"
#: Op types of the nodes that carry Python time rather than a kernel's: no profiler times them.
PYTHON_TYPES = ("View", MODULE_CALL_TYPE)


@dataclass(frozen=True)
class NodeTime:
    """One op's predicted time and its three terms (seconds)."""

    name: str
    op_type: str
    module: str
    efficiency_class: str
    flops: float
    mac_bytes: float
    compute_s: float
    memory_s: float
    overhead_s: float

    @property
    def latency_s(self) -> float:
        return max(self.compute_s, self.memory_s) + self.overhead_s

    @property
    def bound(self) -> str:
        """The largest of the three terms: what this op waits on."""
        terms = {"compute": self.compute_s, "memory": self.memory_s, "overhead": self.overhead_s}
        return max(BOUNDS, key=lambda k: terms[k])

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte moved (0 when nothing is moved)."""
        return self.flops / self.mac_bytes if self.mac_bytes else 0.0


@dataclass(frozen=True)
class Prediction:
    model: str
    profile: DeviceProfile
    nodes: list[NodeTime]

    def total(self, key: str = "latency_s") -> float:
        return sum(getattr(n, key) for n in self.nodes)

    def grouped(self, key: Callable[[NodeTime], str]) -> list[dict[str, Any]]:
        """Rows summing nodes by `key`, slowest first; a group's bound is the one its time
        mostly waits on."""
        groups: dict[str, list[NodeTime]] = defaultdict(list)
        for node in self.nodes:
            groups[key(node)].append(node)
        rows = []
        for label, members in groups.items():
            by_bound = dict.fromkeys(BOUNDS, 0.0)
            for n in members:
                by_bound[n.bound] += n.latency_s
            latency = sum(n.latency_s for n in members)
            rows.append({"label": label, "count": len(members), "latency_s": latency,
                         "compute_s": sum(n.compute_s for n in members),
                         "memory_s": sum(n.memory_s for n in members),
                         "overhead_s": sum(n.overhead_s for n in members),
                         "flops": sum(n.flops for n in members),
                         "mac_bytes": sum(n.mac_bytes for n in members),
                         "bound": max(BOUNDS, key=lambda b: by_bound[b])})
        rows.sort(key=lambda r: -r["latency_s"])
        return rows

    def by_op_type(self) -> list[dict[str, Any]]:
        return self.grouped(lambda n: n.op_type)

    def by_module(self, depth: int | None = None) -> list[dict[str, Any]]:
        def module(n: NodeTime) -> str:
            parts = n.module.split(".") if n.module else []
            return ".".join(parts[:depth] if depth is not None else parts) or "(root)"
        return self.grouped(module)


def roofline_estimate(profile: DeviceProfile, flops: float, nbytes: float,
                      dtype: str = "float32") -> float:
    """The class-free roofline a learned predictor scales: the peak, the bandwidth of the
    op's size and the profile's fixed cost per op."""
    return max(flops / profile.peak(dtype), nbytes / profile.bandwidth_at(nbytes)) + \
        profile.overhead_s


def predict(analysis: Analysis, profile: DeviceProfile) -> Prediction:
    """Time every op of a concrete analysis on the profile's device: by the learned
    predictor of its kernel class where the profile has one, else by the roofline."""
    nodes = []
    learned: dict[str, list[tuple[int, list[float]]]] = defaultdict(list)
    for op in analysis.ops():
        if op["op_type"] == "View":
            if profile.view_s > 0:
                nodes.append(NodeTime(op["name"], "View", op["module"], "view", 0.0, 0.0,
                                      0.0, 0.0, profile.view_s))
            continue
        cost = op["cost"]
        if not (is_concrete(cost.flops) and is_concrete(cost.mac_bytes)):
            raise CostModelError(f"{analysis.model}: cannot predict a symbolic analysis "
                                 f"(node {op['name']}): give concrete input sizes")
        op_type = op_type_of(op)
        cls = class_of(op["op_type"], op["target"])
        eff = profile.efficiency[cls]
        dtype = op["dtypes"][0].removeprefix("torch.") if op["dtypes"] else "float32"
        flops, nbytes = float(cost.flops), float(cost.mac_bytes)
        width = conv_width(op["input_shapes"]) if cls in WIDTH_CLASSES else None
        kclass = kernel_class(op["op_type"], op["target"], op.get("call"))
        if profile.kernels is not None and kclass in profile.kernels.classes and "call" in op:
            rows = profile.kernels.classes[kclass]
            estimate = roofline_estimate(profile, flops, nbytes, dtype)
            learned[kclass].append((len(nodes), features(op["call"], op["op_type"], cost,
                                                          estimate, rows.vocabulary)))
            cls = kclass
        nodes.append(NodeTime(
            name=op["name"], op_type=op_type, module=op["module"], efficiency_class=cls,
            flops=flops, mac_bytes=nbytes,
            compute_s=flops / (profile.peak(dtype) * eff.compute_share(width)),
            memory_s=nbytes / (profile.bandwidth_at(nbytes) * eff.memory),
            overhead_s=profile.overhead(cls if cls in profile.efficiency else
                                        class_of(op["op_type"], op["target"]))))
    for kclass, todo in learned.items():
        ratios = profile.kernels.classes[kclass].predict([row for _, row in todo])
        for (index, row), ratio in zip(todo, ratios):
            nodes[index] = _scaled(nodes[index], profile.kernels.in_model
                                   * math.exp(row[FEATURE_ROOFLINE] + ratio))
    if profile.kernels is not None and profile.kernels.in_model_op_s > 0:
        op_s = profile.kernels.in_model_op_s  # the Python call that issues each op
        nodes = [n if n.op_type == "View" else replace(n, overhead_s=n.overhead_s + op_s)
                 for n in nodes]
    calls = int(analysis.graph.graph.get("module_call_count", 0))
    if profile.module_call_s > 0 and calls:
        nodes.append(NodeTime(MODULE_CALLS, MODULE_CALL_TYPE, "", "module_call", 0.0, 0.0,
                              0.0, 0.0, calls * profile.module_call_s))
    return Prediction(analysis.model, profile, nodes)


FEATURE_ROOFLINE = FEATURES.index("log_roofline")


def _scaled(node: NodeTime, seconds: float) -> NodeTime:
    """The node with its three terms scaled so that its time is `seconds` (the learned
    prediction), its bound unchanged."""
    factor = seconds / node.latency_s if node.latency_s > 0 else 1.0
    return replace(node, compute_s=node.compute_s * factor, memory_s=node.memory_s * factor,
                   overhead_s=node.overhead_s * factor)
