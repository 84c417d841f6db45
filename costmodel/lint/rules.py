"""The four guidelines as checks on a costed op graph. Every finding carries its MAC at stake:
the op's (or block's) MAC minus the MAC of the guideline-following alternative at the same
Mult-Adds, both from the convolution formula (`costmodel.formulas.conv`), never from new
arithmetic."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import sympy

from costmodel.analysis import Analysis
from costmodel.cost import Cost, Num, div, is_concrete, prod
from costmodel.errors import CostModelError
from costmodel.formatting import si
from costmodel.formulas import conv, linear
from costmodel.lint.blocks import (
    blocks,
    compute_ops,
    fused_projections,
    longest_chain,
    reachability,
    width,
)
from costmodel.lint.settings import Settings, Thresholds
from costmodel.views.fusion import Fusion, fusion_of

#: Op types whose work is element-wise (G4), besides low-intensity depthwise convolutions.
ELEMENTWISE_TYPES = ("Activation", "Elementwise")


@dataclass
class Finding:
    """One place that breaks a guideline, with what following it would save."""

    rule: str
    module: str
    nodes: list[str]
    message: str
    mac_excess: int
    madds: int
    mac: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class LintResult:
    analysis: Analysis
    settings: Settings
    findings: list[Finding]
    total: Cost

    @property
    def failed(self) -> list[Finding]:
        """Findings of the rules that --fail-on names."""
        return [f for f in self.findings if f.rule in self.settings.fail_on]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


@dataclass(frozen=True)
class ConvShape:
    """A traced convolution's dimensions, as the conv formula takes them."""

    n: int
    c_in: int
    c_out: int
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    kernel: tuple[int, ...]
    groups: int
    bias: bool
    itemsize: int

    def cost(self, c_in: Num, c_out: Num, groups: Num) -> Cost:
        """The formula's cost of this convolution with other widths or groups."""
        return conv(self.n, c_in, c_out, self.in_size, self.out_size, self.kernel, groups,
                    self.bias, False, self.itemsize)

    @property
    def kind(self) -> str:
        return "x".join(map(str, self.kernel)) + " conv"


def conv_shape(data: dict[str, Any]) -> ConvShape | None:
    """The dimensions of an `aten.convolution` node (not transposed), else None."""
    call = data.get("call")
    if call is None or call.target.overloadpacket.__name__ != "convolution":
        return None
    if call.arg(6, "transposed"):
        return None
    x, w, b = call.arg(0, "input"), call.arg(1, "weight"), call.arg(2, "bias")
    groups = call.arg(8, "groups", 1)
    y = call.out
    spatial = w.ndim - 2
    return ConvShape(n=x.shape[0] if x.ndim == w.ndim else 1, c_in=w.shape[1] * groups,
                     c_out=w.shape[0], in_size=tuple(x.shape[-spatial:]),
                     out_size=tuple(y.shape[-spatial:]), kernel=tuple(w.shape[2:]),
                     groups=groups, bias=b is not None, itemsize=x.itemsize)


def _int(value: Num) -> int:
    return round(float(value))


def _reads_model_input(graph: nx.DiGraph, name: str) -> bool:
    return any(graph.nodes[p]["kind"] == "input" for p in graph.predecessors(name))


def check_g1(analysis: Analysis, t: Thresholds) -> list[Finding]:
    """Convolutions whose input and output widths differ: at equal Mult-Adds B, equal widths
    reach the bound 2*sqrt(h*w*B) + B/(h*w) (equation 3 for a 1x1 conv). A convolution reading
    the model's input is skipped: its width is the data's."""
    graph = analysis.graph
    found = []
    for name, data in graph.nodes(data=True):
        s = conv_shape(data)
        if s is None or s.groups == s.c_in > 1 or _reads_model_input(graph, name):
            continue
        narrow, wide = sorted((s.c_in, s.c_out))
        if wide < t.g1_min_ratio * narrow:
            continue
        equal = sympy.sqrt(s.c_in * s.c_out)
        excess = _int(data["cost"].mac - s.cost(equal, equal, s.groups).mac)
        found.append(Finding(
            "G1", data["module"], [name],
            f"{s.kind} {s.c_in} -> {s.c_out} channels ({wide / narrow:.3g}x apart): at the "
            f"same Mult-Adds, {float(equal):.0f} -> {float(equal):.0f} would move "
            f"{si(excess)} fewer elements ({excess / data['cost'].mac:.1%} of its MAC); bring "
            f"the widths closer",
            excess, _int(data["cost"].madds), _int(data["cost"].mac),
            {"c_in": s.c_in, "c_out": s.c_out, "equal_width": float(equal)}))
    return found


def check_g2(analysis: Analysis, t: Thresholds) -> list[Finding]:
    """Grouped convolutions (not depthwise): with B, c1, h, w fixed, MAC = h*w*c1 + B*g/c1 +
    B/(h*w) grows linearly in g (equation 6). The alternative: g = 1 with c_out / g outputs."""
    found = []
    for name, data in analysis.graph.nodes(data=True):
        s = conv_shape(data)
        if s is None or s.groups <= t.g2_max_groups or s.groups == s.c_in:
            continue
        narrower = div(s.c_out, s.groups)
        excess = _int(data["cost"].mac - s.cost(s.c_in, narrower, 1).mac)
        found.append(Finding(
            "G2", data["module"], [name],
            f"{s.kind} {s.c_in} -> {s.c_out} channels in {s.groups} groups: an ungrouped "
            f"{s.c_in} -> {float(narrower):.3g} conv does the same Mult-Adds and moves "
            f"{si(excess)} fewer elements ({excess / data['cost'].mac:.1%} of its MAC); use "
            f"fewer groups",
            excess, _int(data["cost"].madds), _int(data["cost"].mac),
            {"c_in": s.c_in, "c_out": s.c_out, "groups": s.groups}))
    return found


def check_g3(analysis: Analysis, t: Thresholds) -> list[Finding]:
    """Fragmented blocks: more parallel branches than allowed (the width of the order among the
    block's Mult-Adds ops), or more ops per Mult-Add than the model's median by a factor. The
    alternative: one 1x1 convolution of equal widths doing the block's Mult-Adds over the
    output positions of its largest op (pixels, or tokens), in place of the block's Mult-Adds
    ops and the joins that merge their branches."""
    graph = analysis.graph
    parts = blocks(graph)
    madds = {b: sum(graph.nodes[n]["cost"].madds for n in nodes) for b, nodes in parts.items()}
    densities = {b: len(parts[b]) / madds[b] for b in parts if madds[b]}
    median = statistics.median(densities.values()) if densities else 0.0
    found = []
    for block, nodes in parts.items():
        compute = compute_ops(graph, nodes)
        if len(compute) < 2:
            continue
        qkv = fused_projections(graph, compute)
        merged = {member: group[0] for group in qkv for member in group}
        order = reachability(graph, compute, merged)
        branches, series = width(order), longest_chain(order)
        ratio = densities[block] / median
        if branches <= t.g3_max_branches and ratio <= t.g3_max_density:
            continue
        joins = [n for n in nodes if n not in compute and graph.in_degree(n) > 1]
        fragments = compute + joins
        mac = sum(graph.nodes[n]["cost"].mac for n in fragments)
        positions = _positions(graph.nodes[max(compute, key=lambda n:
                                                   graph.nodes[n]["cost"].madds)])
        width_one = sympy.sqrt(sympy.Integer(madds[block]) / positions)
        one = conv(1, width_one, width_one, (positions,), (positions,), (1,))
        excess = max(0, _int(mac - one.mac))
        fused = [fused_saving(graph, group) for group in qkv]
        said = "".join(
            f"; {', '.join(graph.nodes[n]['module'] or n for n in group)} read one input and "
            f"feed one attention op: counted as one logical matmul (fused into one projection "
            f"they would read it once, {si(saving)} fewer elements)"
            for group, saving in zip(qkv, fused))
        branch_word = "branch" if branches == 1 else "branches"
        found.append(Finding(
            "G3", block, fragments,
            f"{branches} parallel {branch_word}, {series} Mult-Adds ops in series, "
            f"{len(nodes)} ops for {si(madds[block])} Mult-Adds ({ratio:.2g}x the model's "
            f"median ops per Mult-Add): one op doing the same Mult-Adds would move "
            f"{si(excess)} fewer elements, as one kernel; merge branches or fragments{said}",
            excess, _int(madds[block]), _int(sum(graph.nodes[x]["cost"].mac for x in nodes)),
            {"branches": branches, "series": series, "ops": len(nodes),
             "density_ratio": ratio, "fused_projections": qkv,
             "fused_projection_saving": [_int(f) for f in fused]}))
    return found


def fused_saving(graph: nx.DiGraph, group: list[str]) -> Num:
    """MAC the projections in `group` would save as one linear layer over their concatenated
    weights (the linear formula, both ways): the input read once, not once per projection."""
    separate, rows_in = 0, None
    outs = []
    for node in group:
        (x, *_), (y,) = graph.nodes[node]["input_shapes"], graph.nodes[node]["output_shapes"]
        rows = div(prod(x), x[-1])
        separate += linear(rows, x[-1], y[-1]).mac
        rows_in = (rows, x[-1])
        outs.append(y[-1])
    rows, d = rows_in
    return separate - linear(rows, d, sum(outs)).mac


def _positions(data: dict[str, Any]) -> int:
    """Output elements per channel: batch times map size for a convolution (channels second),
    batch times tokens for a linear layer or matmul (channels last)."""
    out = data["output_shapes"][0]
    channels = out[1] if conv_shape(data) is not None else out[-1]
    return int(prod(out)) // int(channels)


def _elementwise(data: dict[str, Any], t: Thresholds) -> bool:
    """An activation or element-wise op, or a depthwise convolution as memory-bound as one."""
    if data["op_type"] in ELEMENTWISE_TYPES:
        return True
    s = conv_shape(data)
    cost = data["cost"]
    return (s is not None and s.groups == s.c_in > 1 and bool(cost.flops)
            and cost.mac / cost.flops >= t.g4_min_mac_per_flop)


def check_g4(analysis: Analysis, t: Thresholds, total_mac: int) -> list[Finding]:
    """Blocks whose element-wise ops (ReLU, adds, bias adds, low-intensity depthwise convs)
    carry more than a share of the block's MAC: their MAC is what removing or fusing them
    saves (the paper's ReLU and shortcut experiment). On a fused analysis (--fuse) each op's
    MAC is what its kernel still moves for it: the part fusion cannot remove."""
    graph = analysis.graph
    fusion = fusion_of(analysis)
    found = []
    for block, nodes in blocks(graph).items():
        ew = [n for n in nodes if _elementwise(graph.nodes[n], t)]
        block_mac = sum(graph.nodes[n]["cost"].mac for n in nodes)
        ew_mac = sum(_unfusable(graph.nodes[n], n, fusion) for n in ew)
        if not ew or ew_mac <= t.g4_max_share * block_mac:
            continue
        kinds = Counter(graph.nodes[n]["op_type"] for n in ew)
        listed = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
        flops = si(sum(graph.nodes[n]["cost"].flops for n in ew))
        if fusion is None:
            message = (f"element-wise ops ({listed}) carry {ew_mac / block_mac:.0%} of this "
                       f"block's MAC ({ew_mac / total_mac:.1%} of the model's) for {flops} "
                       f"FLOPs; fuse activations into the convolutions, drop shortcuts or "
                       f"ReLUs where accuracy allows")
        else:
            eager = sum(graph.nodes[n]["cost"].mac for n in ew)
            message = (f"element-wise ops ({listed}) for {flops} FLOPs still move "
                       f"{si(ew_mac)} elements once fused ({fusion.mode}; {si(eager)} eager), "
                       f"{ew_mac / block_mac:.0%} of this block's MAC: priced on what fusion "
                       f"cannot remove; drop shortcuts or ReLUs where accuracy allows")
        found.append(Finding(
            "G4", block, ew, message,
            _int(ew_mac), _int(sum(graph.nodes[n]["cost"].madds for n in nodes)),
            _int(block_mac), {"share": float(ew_mac / block_mac),
                              **({"fused": fusion.mode} if fusion is not None else {})}))
    return found


def _unfusable(data: dict[str, Any], name: str, fusion: Fusion | None) -> Num:
    """An op's MAC in elements, or with a fusion the part its kernel still moves for it (its
    fused bytes at its eager bytes' element size)."""
    mac = data["cost"].mac
    if fusion is None or not data["cost"].mac_bytes:
        return mac
    return _int(round(mac * fusion.fused_bytes.get(name, 0) / data["cost"].mac_bytes))


def lint(analysis: Analysis, settings: Settings | None = None) -> LintResult:
    """Run the chosen rules; keep findings whose MAC at stake reaches `min_share` of the
    model's MAC, largest first within each rule."""
    settings = settings or Settings()
    total = analysis.total()
    if not is_concrete(total.mac):
        raise CostModelError(f"{analysis.model}: lint needs concrete sizes, not free dimensions")
    if not total.mac:
        raise CostModelError(f"{analysis.model}: the model moves no memory; nothing to lint")
    t = settings.thresholds
    checks = {"G1": lambda: check_g1(analysis, t), "G2": lambda: check_g2(analysis, t),
              "G3": lambda: check_g3(analysis, t),
              "G4": lambda: check_g4(analysis, t, int(total.mac))}
    findings = []
    for rule in settings.rules:
        kept = [f for f in checks[rule]() if f.mac_excess >= t.min_share * total.mac]
        findings.extend(sorted(kept, key=lambda f: -f.mac_excess))
    return LintResult(analysis, settings, findings, total)
