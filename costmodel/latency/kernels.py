"""Op configurations as the learned predictors see them: which kernel class an op runs, its
analytic features, configurations harvested from an op graph and sampled around, and a
runnable replay of one configuration on real tensors.

A configuration is an aten op with its arguments as the graph records them (tensors as
`TensorMeta`: shape, dtype, strides; everything else as is). Replaying it calls the same aten
op on random tensors of those shapes and strides, so that what is timed is the kernel a model
runs, with a fresh output per call. Sampling around a configuration scales the sizes of its
activations (channels, maps, tokens) consistently in every tensor and size argument, and keeps
it where torch accepts it on the meta device.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from costmodel.cost import Cost, is_concrete
from costmodel.formulas import OpCall, TensorMeta, lookup
from costmodel.latency.classes import class_of

#: The kernel classes that get a learned predictor, each a family of kernels whose time one
#: regressor can learn over the features below.
KERNEL_CLASSES: tuple[str, ...] = (
    "conv_pointwise", "conv_dense", "conv_depthwise", "conv_grouped", "linear", "matmul",
    "attention", "batch_norm", "layer_norm", "rms_norm", "norm_other", "activation", "binary",
    "unary", "pool_global", "pool_window", "movement", "reduction", "embedding",
)

_LINEAR = ("linear", "addmm", "mm", "addmv", "mv")
_BATCH_NORM = ("native_batch_norm", "_native_batch_norm_legit_no_training", "batch_norm",
               "_native_batch_norm_legit")
_LAYER_NORM = ("native_layer_norm", "layer_norm")
_RMS_NORM = ("rms_norm", "_fused_rms_norm")
_GLOBAL_POOL = ("adaptive_avg_pool2d", "_adaptive_avg_pool2d", "adaptive_avg_pool1d",
                "adaptive_max_pool2d")

#: The features, in the order the regressors read them.
FEATURES: tuple[str, ...] = (
    "log_flops", "log_mac_bytes", "log_out_bytes", "log_in_bytes", "log_weight_bytes",
    "channels_per_group", "kernel", "stride", "spatial", "tokens", "last_dim", "dtype_bytes",
    "log_roofline", "op", "tensor_inputs", "broadcast", "contiguous", "inplace",
)


def op_name(target: Any) -> str:
    """'aten.convolution.default' (or the overload itself) -> 'convolution'."""
    text = str(target)
    parts = text.split(".")
    return parts[1] if len(parts) >= 2 and parts[0] == "aten" else text


#: aten ops that run one kernel under different names: the regressors see them as one op, so
#: that a token-shaped addmm learns from token-shaped linear layers and mm
_SAME_KERNEL = {"linear": "gemm", "addmm": "gemm", "mm": "gemm", "addmv": "gemv", "mv": "gemv",
                "relu": "relu", "relu_": "relu", "add": "add", "add_": "add", "mul": "mul",
                "mul_": "mul"}


def kernel_name(target: Any) -> str:
    """The op's name as the regressors read it (`features`' op): aliases of one kernel
    share it."""
    name = op_name(target)
    return _SAME_KERNEL.get(name, name)


def kernel_class(op_type: str, target: Any, call: OpCall | None = None) -> str | None:
    """The kernel class of an op (None: views and ops no class covers)."""
    if op_type in ("View", "Unsupported"):
        return None
    name = op_name(target).rstrip("_")
    base = class_of(op_type, str(target))
    if base.startswith("conv_"):
        return base
    if base == "matmul":
        return "linear" if name in _LINEAR else "matmul"
    if base == "attention":
        return "attention"
    if base == "norm":
        if name in _BATCH_NORM:
            return "batch_norm"
        if name in _LAYER_NORM:
            return "layer_norm"
        return "rms_norm" if name in _RMS_NORM else "norm_other"
    if op_type == "Embedding":
        return "embedding"
    if base == "data_movement":
        return "movement"
    if base in ("pooling", "max_pool"):
        return "pool_global" if name in _GLOBAL_POOL else "pool_window"
    if op_type == "Activation":
        return "activation"
    if op_type == "Reduction":
        return "reduction"
    if op_type == "Elementwise":
        tensors = len(call.inputs) if call is not None else 1
        return "binary" if tensors >= 2 else "unary"
    return None


@dataclass(frozen=True)
class Config:
    """One op configuration: the aten overload, its arguments, and what costmodel counts."""

    target: Any  # torch OpOverload
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    op_type: str
    kclass: str
    cost: Cost
    call: OpCall

    @property
    def key(self) -> str:
        return f"{self.target}{_signature(self.args)}{_signature(self.kwargs)}"


def _signature(value: Any) -> str:
    if isinstance(value, TensorMeta):
        return f"T{tuple(value.shape)}{value.dtype}{tuple(value.stride or ())}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_signature(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(_signature(v) for v in value) + ")"
    return repr(value)


def _concrete(value: Any) -> bool:
    if isinstance(value, TensorMeta):
        return all(isinstance(d, int) for d in value.shape) and all(
            isinstance(s, int) for s in (value.stride or ()))
    if isinstance(value, dict):
        return all(_concrete(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_concrete(v) for v in value)
    return not hasattr(value, "free_symbols")


def harvest(analysis: Any) -> list[Config]:
    """Every distinct configuration of the ops of a concrete analysis that a kernel class
    covers, in execution order."""
    found: dict[str, Config] = {}
    for op in analysis.ops():
        call = op.get("call")
        if call is None or not op.get("supported", True):
            continue
        cls = kernel_class(op["op_type"], call.target, call)
        if cls is None or not _concrete(call.args) or not _concrete(call.kwargs):
            continue
        cost = op["cost"]
        if not (is_concrete(cost.flops) and is_concrete(cost.mac_bytes)):
            continue
        config = Config(call.target, call.args, call.kwargs, op["op_type"], cls, cost, call)
        found.setdefault(config.key, config)
    return list(found.values())


# -- sampling around a configuration -------------------------------------------------------

_SCALES = (0.5, 0.625, 0.75, 0.875, 1.25, 1.5, 1.75, 2.0)
#: Largest output (elements) and work (FLOPs) a sampled configuration may have: kept within
#: what batch-1 models run, and within the calibration's time budget.
MAX_OUT = 1 << 23
MAX_FLOPS = 4e9


def _tensors(value: Any) -> Iterator[TensorMeta]:
    if isinstance(value, TensorMeta):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def _free_sizes(config: Config) -> list[int]:
    """Sizes of the activations (not kernels, not the batch of 1) that can be scaled."""
    sizes: set[int] = set()
    metas = list(_tensors(config.args)) + list(_tensors(config.kwargs))
    conv = op_name(config.target) == "convolution"
    for i, meta in enumerate(metas):
        dims = meta.shape[:2] if conv and i == 1 else meta.shape
        sizes.update(d for d in dims if isinstance(d, int) and d >= 4)
    return sorted(sizes)


def _restride(meta: TensorMeta, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Strides for `shape` in the memory order of the original (stride 0 kept: broadcast)."""
    if meta.stride is None:
        return None
    order = sorted(range(len(shape)), key=lambda d: (meta.stride[d], meta.shape[d]))
    stride = [0] * len(shape)
    step = 1
    for d in order:
        if meta.stride[d] == 0:
            continue
        stride[d] = step
        step *= shape[d]
    return tuple(stride)


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, step = [], 1
    for d in reversed(shape):
        stride.append(step)
        step *= int(d)
    return tuple(reversed(stride))


def _substitute(value: Any, table: dict[int, int], ints: bool) -> Any:
    if isinstance(value, TensorMeta):
        shape = tuple(table.get(d, d) for d in value.shape)
        return TensorMeta(shape, value.dtype, _restride(value, shape))
    if isinstance(value, dict):
        return {k: _substitute(v, table, ints) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_substitute(v, table, ints) for v in value)
    if ints and isinstance(value, int) and not isinstance(value, bool):
        return table.get(value, value)
    return value


def _nice(value: float, like: int) -> int:
    """Round a scaled size the way models choose sizes: to a multiple of 8 when the original
    was one."""
    step = 8 if like % 8 == 0 and value >= 8 else 1
    return max(2, round(value / step) * step)


def size_pool(configs: list[Config]) -> dict[str, list[int]]:
    """Per kernel class, every activation size its harvested configurations use: what
    `variant` may swap a size for, so that samples combine one source's channels with
    another's maps."""
    pool: dict[str, set[int]] = {}
    for config in configs:
        pool.setdefault(config.kclass, set()).update(_free_sizes(config))
    return {cls: sorted(sizes) for cls, sizes in pool.items()}


#: How far (as a factor) a size taken from the pool may lie from the one it replaces.
POOL_RANGE = 4.0


def _new_size(size: int, rng: random.Random, pool: list[int]) -> int:
    """A scaled size (0.5-2x), or, half the time where the class's pool has one within
    POOL_RANGE, a size another harvested configuration uses."""
    near = [p for p in pool if p != size and size / POOL_RANGE <= p <= size * POOL_RANGE]
    if near and rng.random() < 0.5:
        return rng.choice(near)
    return _nice(size * rng.choice(_SCALES), size)


def variant(config: Config, rng: random.Random,
            pool: dict[str, list[int]] | None = None) -> Config | None:
    """A configuration near `config`: each activation size scaled, swapped for one of the
    class's `pool` or kept, at random, every tensor and size argument alike; None when torch
    rejects it or it is out of bounds."""
    sizes = _free_sizes(config)
    if not sizes:
        return None
    sizes_of_class = (pool or {}).get(config.kclass, [])
    table: dict[int, int] = {}
    for size in sizes:
        if rng.random() < 0.6:
            table[size] = _new_size(size, rng, sizes_of_class)
    if not table:
        size = rng.choice(sizes)
        table[size] = _new_size(size, rng, sizes_of_class)
    conv = op_name(config.target) == "convolution"
    if conv:  # sizes in the tensors; the groups argument follows only for depthwise
        args = list(_substitute(config.args[:3], table, False)) + list(config.args[3:8])
        groups = config.args[8]
        weight = config.args[1]
        depthwise = groups == weight.shape[0] and groups > 1
        args.append(table.get(groups, groups) if depthwise else groups)
        if groups > 1 and not depthwise and rng.random() < 0.5:
            args = _regroup(args, rng)
        new_args: tuple[Any, ...] = tuple(args)
    else:
        new_args = _substitute(config.args, table, True)
    new_kwargs = _substitute(config.kwargs, table, True)
    return make_config(config.target, new_args, new_kwargs)


#: Group counts a grouped convolution's variant may take: the sources group by 3 (ShuffleNetV1)
#: and by widths of RegNet's, models also by 2, 4, 8 (ShuffleNetV2's G2 experiment) and more.
_GROUPS = (2, 3, 4, 6, 8, 12, 16)


def _regroup(args: list[Any], rng: random.Random) -> list[Any]:
    """A grouped convolution's arguments with another group count that divides both its
    channel counts: the weight's input channels follow (contiguous)."""
    x, weight, groups = args[0], args[1], args[8]
    c_in, c_out = int(x.shape[1]), int(weight.shape[0])
    choices = [g for g in _GROUPS if g != groups and c_in % g == 0 and c_out % g == 0
               and g < c_in]
    if not choices:
        return args
    g = rng.choice(choices)
    shape = (c_out, c_in // g, *weight.shape[2:])
    args = list(args)
    args[1] = TensorMeta(shape, weight.dtype, _contiguous(shape))
    args[8] = g
    return args


def make_config(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Config | None:
    """A configuration with its outputs (torch on meta tensors) and costmodel's cost; None
    where torch rejects the arguments, no formula covers it or it is out of bounds."""
    try:
        with torch.device("meta"):
            out = target(*materialize(args, "meta"), **materialize(kwargs, "meta"))
    except Exception:
        return None
    outs = [o for o in (out if isinstance(out, (list, tuple)) else [out])
            if isinstance(o, torch.Tensor)]
    metas = tuple(TensorMeta(tuple(o.shape), o.dtype, tuple(o.stride())) for o in outs)
    if not metas or sum(m.numel for m in metas) > MAX_OUT:
        return None
    call = OpCall(target, args, kwargs, metas)
    entry = lookup(target)
    if entry is None:
        return None
    try:
        cost = entry.formula(call)
        op_type = entry.type_of(call)
    except Exception:
        return None
    cls = kernel_class(op_type, target, call)
    if cls is None or float(cost.flops) > MAX_FLOPS:
        return None
    return Config(target, args, kwargs, op_type, cls, cost, call)


# -- running a configuration ---------------------------------------------------------------

def _tensor(meta: TensorMeta, device: str, position: int) -> torch.Tensor:
    shape = tuple(int(d) for d in meta.shape)
    stride = tuple(int(s) for s in meta.stride) if meta.stride else None
    if device == "meta":
        if stride is None:
            return torch.empty(shape, dtype=meta.dtype, device="meta")
        return torch.empty_strided(shape, stride, dtype=meta.dtype, device="meta")
    span = 1 + sum((d - 1) * s for d, s in zip(shape, stride)) if stride else math.prod(shape)
    if not meta.dtype.is_floating_point:
        # ids and indices: 0 is valid for every table and dimension
        base = (torch.ones(max(span, 1), dtype=meta.dtype, device=device) if meta.dtype
                == torch.bool else torch.zeros(max(span, 1), dtype=meta.dtype, device=device))
    elif len(shape) == 1 and position > 0:  # norm weights and statistics: positive
        base = torch.rand(max(span, 1), dtype=meta.dtype, device=device) + 0.5
    else:
        base = torch.randn(max(span, 1), dtype=meta.dtype, device=device)
    if stride is None:
        return base[: math.prod(shape)].view(shape)
    return base.as_strided(shape, stride)


def materialize(value: Any, device: str, counter: list[int] | None = None) -> Any:
    """Arguments with every TensorMeta replaced by a tensor of its shape and strides."""
    counter = counter if counter is not None else [0]
    if isinstance(value, TensorMeta):
        counter[0] += 1
        return _tensor(value, device, counter[0] - 1)
    if isinstance(value, dict):
        return {k: materialize(v, device, counter) for k, v in value.items()}
    if isinstance(value, list):
        return [materialize(v, device, counter) for v in value]
    if isinstance(value, tuple):
        return tuple(materialize(v, device, counter) for v in value)
    return value


#: Bytes of arguments a replay cycles through: beyond the L2 caches, as a model's weights
#: arrive from the last-level cache or memory (each is read once per forward pass).
ROTATE_BYTES = 8 << 20
#: Compute-bound classes: the activation stays one (cached) tensor, only the weights cycle.
#: Every other class cycles all its arguments: measured in models on this project's machine,
#: memory-bound ops (norms, element-wise, copies, depthwise convolutions) ran 20-45% slower
#: than with a cached input, closer to arguments that come from the last-level cache.
WEIGHTED = ("conv_pointwise", "conv_dense", "conv_grouped", "linear", "matmul", "attention")


def runner(config: Config, device: str = "cpu") -> Callable[[], Any]:
    """A zero-argument call of the configuration on real tensors, as the op runs in a model:
    every call writes a fresh output, and the arguments cycle through copies that together
    outgrow the L2 caches (a model reads each weight once per pass), except a compute-bound
    op's activation, one tensor every call reads (just written by the op before it in a
    model, it sits in cache)."""
    args = materialize(config.args, device)
    kwargs = materialize(config.kwargs, device)
    sets = [(args, kwargs)]
    keep_first = config.kclass in WEIGHTED
    inputs = config.call.inputs[1:] if keep_first else config.call.inputs
    cycled = sum(m.nbytes for m in inputs)
    copies = min(16, max(1, math.ceil(ROTATE_BYTES / max(cycled, 1)))) if inputs else 1
    first = next((i for i, a in enumerate(config.args) if isinstance(a, TensorMeta)), -1)
    for _ in range(copies - 1):
        fresh = materialize(config.args, device)
        if keep_first:
            fresh = tuple(args[i] if i == first else a for i, a in enumerate(fresh))
        sets.append((fresh, materialize(config.kwargs, device)))
    copies = len(sets)
    target = config.target
    state = [0]

    def call() -> Any:
        a, k = sets[state[0] % copies]
        state[0] += 1
        return target(*a, **k)

    for _ in range(copies):  # every argument set runs (or raises) before any timing
        call()
    return call


# -- features ------------------------------------------------------------------------------

def features(call: OpCall, op_type: str, cost: Cost, roofline_s: float,
             vocabulary: dict[str, int]) -> list[float]:
    """The regressors' inputs for one op (FEATURES order)."""
    inputs = call.inputs
    out = call.outputs[0] if call.outputs else None
    name = op_name(call.target)
    data, weight = _CONTRACTIONS.get(name, (0, 1))
    contraction = name in _CONTRACTIONS and len(inputs) > max(data, weight)
    if contraction:  # the data and the weight wherever the schema puts them; a bias aside
        inputs = [inputs[data], inputs[weight]]
    first = inputs[0] if inputs else None
    conv = name == "convolution" and contraction
    cpg = kernel = stride = 0.0
    weight_bytes = 0.0
    if conv:
        w = inputs[1]
        groups = int(call.args[8]) if len(call.args) > 8 else 1
        cpg = float(min(int(w.shape[1]), int(w.shape[0]) // max(groups, 1)))
        kernel = float(math.prod(int(d) for d in w.shape[2:]))
        stride = float(max(call.args[3])) if len(call.args) > 3 and call.args[3] else 1.0
        weight_bytes = float(w.nbytes)
    elif len(inputs) >= 2:
        weight_bytes = float(inputs[1].nbytes)
    shape = tuple(int(d) for d in out.shape) if out is not None else ()
    spatial = float(math.prod(shape[2:])) if len(shape) >= 3 else 0.0
    tokens = float(math.prod(shape[:-1])) if len(shape) >= 2 else 1.0
    last = float(shape[-1]) if shape else 0.0
    numels = [float(t.numel) for t in inputs] or [1.0]
    out_numel = float(out.numel) if out is not None else 1.0
    contiguous = 1.0
    if first is not None and first.stride is not None:
        contiguous = float(tuple(first.stride) == _contiguous(tuple(first.shape)))
    return [
        math.log1p(float(cost.flops)), math.log1p(float(cost.mac_bytes)),
        math.log1p(float(out.nbytes) if out is not None else 0.0),
        math.log1p(float(first.nbytes) if first is not None else 0.0),
        math.log1p(weight_bytes), cpg, kernel, stride, spatial, tokens, last,
        float(out.itemsize if out is not None else 4), math.log(roofline_s),
        float(vocabulary.get(kernel_name(call.target), -1)), float(len(inputs)),
        1.0 if contraction else out_numel / max(min(numels), 1.0), contiguous,
        _inplace(call.target),
    ]


#: Contractions, by the positions of their data and weight operands. The bias is left out
#: of the features: a fused bias costs a contraction next to nothing, and counting it made a
#: biased 1x1 convolution look like the tiny biased ones of squeeze-excite blocks (2.7x off),
#: and GPT-2's addmm(bias, x, w) like no linear layer of the sources (1.8x off).
_CONTRACTIONS: dict[str, tuple[int, int]] = {
    "convolution": (0, 1), "linear": (0, 1), "mm": (0, 1), "bmm": (0, 1), "matmul": (0, 1),
    "mv": (0, 1), "addmm": (1, 2), "addmv": (1, 2), "baddbmm": (1, 2), "addbmm": (1, 2),
}


def _inplace(target: Any) -> float:
    """1.0 for an op that writes into its input (relu_, add_): no fresh output to fill, which
    on this kind of CPU halves a large element-wise op's time."""
    schema = getattr(target, "_schema", None)
    return float(bool(getattr(schema, "is_mutable", False)))
