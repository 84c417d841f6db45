"""Data movement, views, embedding lookups and tensor factories: no arithmetic, only memory.

Views (reshape of a viewable tensor, permute, slice, expand...) cost nothing: they write no
data. A copy (cat, pad, channel shuffle, contiguous after a permute, a reshape that cannot be a
view, a dtype cast) reads its input and writes its output. A gather (index, index_select,
embedding) reads only the elements it picks, plus the indices. A factory writes its output
(empty writes nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from costmodel.cost import ZERO, Cost, Num
from costmodel.formulas.registry import OpCall, access, register


def copy(elements: Num, itemsize: int = 4) -> Cost:
    """A copy of `elements` values (contiguous after a permute, a dtype-preserving clone):
    every element read once and written once, no arithmetic."""
    mac = 2 * elements
    return Cost(mac=mac, mac_bytes=mac * itemsize)


def concat(parts: Sequence[Num], itemsize: int = 4) -> Cost:
    """torch.cat of tensors of the given sizes (elements each): each part read, the whole
    written."""
    return copy(sum(parts, 0), itemsize)


def channel_shuffle(n: Num, c: Num, h: Num, w: Num, itemsize: int = 4) -> Cost:
    """ShuffleNet's channel shuffle of an (n, c, h, w) tensor: the reshape-transpose-reshape
    materialises one permuted copy (no FLOPs, 2*n*c*h*w MAC), whatever the number of groups."""
    return copy(n * c * h * w, itemsize)


def pad2d(n: Num, c: Num, h: Num, w: Num, padding: Num | Sequence[Num], itemsize: int = 4
          ) -> Cost:
    """Constant/reflection/replication padding of an (n, c, h, w) tensor by `padding` (one value,
    or (left, right, top, bottom) as F.pad takes it): reads the input, writes the padded output."""
    left, right, top, bottom = (padding,) * 4 if not isinstance(padding, (list, tuple)) \
        else tuple(padding)
    mac = n * c * h * w + n * c * (h + top + bottom) * (w + left + right)
    return Cost(mac=mac, mac_bytes=mac * itemsize)


VIEW_OPS = [
    "view", "_unsafe_view", "permute", "transpose", "t", "expand", "expand_as", "squeeze",
    "unsqueeze", "unflatten", "slice", "select", "narrow", "split", "split_with_sizes",
    "chunk", "unbind", "tensor_split", "alias", "detach", "detach_", "view_as", "as_strided",
    "movedim", "moveaxis", "swapaxes", "swapdims", "unfold", "diagonal", "view_as_real",
    "view_as_complex", "real", "imag", "numpy_T", "mT", "mH", "adjoint", "lift_fresh",
    "dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "native_dropout",
    "_assert_tensor_metadata", "_assert_async", "_assert_scalar", "sym_constrain_range",
    "sym_constrain_range_for_size", "_local_scalar_dense", "sym_size", "sym_numel",
    "sym_stride", "sym_storage_offset", "item", "_functional_sym_constrain_range",
    "resolve_conj", "resolve_neg", "conj", "_conj", "_neg_view", "set_grad_enabled",
    "type_as_", "contiguous_",
    # in place: restride the input over its own storage
    "as_strided_", "transpose_", "t_", "squeeze_", "unsqueeze_", "swapaxes_", "swapdims_",
]


@register(VIEW_OPS, "View", view=True)
def _view(call: OpCall) -> Cost:
    return ZERO


@register(["cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack",
           "column_stack", "pad", "constant_pad_nd", "reflection_pad1d", "reflection_pad2d",
           "reflection_pad3d", "replication_pad1d", "replication_pad2d", "replication_pad3d",
           "_pad_circular", "channel_shuffle", "native_channel_shuffle", "pixel_shuffle",
           "pixel_unshuffle", "im2col", "col2im", "clone", "repeat", "tile", "repeat_interleave",
           "roll", "flip", "fliplr", "flipud", "rot90", "tril", "triu", "lift_fresh_copy",
           "_to_copy",
           "masked_scatter", "slice_scatter", "select_scatter", "diagonal_scatter",
           "index_put", "index_put_", "index_copy", "index_copy_", "scatter", "scatter_",
           "masked_select", "nonzero"], "Data Movement")
def _copy(call: OpCall) -> Cost:
    return call.io()


@register("copy_", "Data Movement")
def _copy_into(call: OpCall) -> Cost:
    """self.copy_(src): reads src, writes self."""
    return access(call.arg(1, "src"), call.out)


@register(["index", "index_select", "gather", "take", "take_along_dim"], "Data Movement")
def _gather(call: OpCall) -> Cost:
    """Reads the picked elements and the indices, writes the output."""
    indices = call.inputs[1:]
    return access(call.out, *indices, call.out)


@register(["embedding_bag", "_embedding_bag"], "Embedding")
def _embedding_bag(call: OpCall) -> Cost:
    """Gathers one row per index and reduces each bag: reads the indices, the offsets and the
    rows picked, adds each row into its bag (sum/mean; max compares), writes every output."""
    weight, indices = call.arg(0, "weight"), call.arg(1, "indices")
    rows = indices.numel * weight.shape[-1]
    read_rows = Cost(mac=rows, mac_bytes=rows * weight.itemsize)
    return Cost(flops=rows) + read_rows + access(indices, call.arg(2, "offsets"), *call.outputs)


@register("embedding", "Embedding")
def _embedding(call: OpCall) -> Cost:
    """A table lookup: reads the indices and the rows they pick, writes those rows."""
    return access(call.arg(1, "indices"), call.out, call.out)


def _copies(call: OpCall) -> bool:
    """Does this reshape/flatten/contiguous/to actually move data?"""
    name = call.target.overloadpacket.__name__
    x, y = call.inputs[0], call.out
    if name == "contiguous":  # any memory format: a copy exactly when the layout changes
        return x.stride != y.stride and y.numel != 1
    if name in ("to", "type", "type_as"):
        copy_at = 4 if call.target._overloadname == "device" else 3
        return (y.dtype != x.dtype or bool(call.arg(copy_at, "copy", False))
                or (x.stride != y.stride and y.numel != 1))
    if x.stride is None or not all(isinstance(v, int) for v in (*x.shape, *x.stride)):
        return False
    base = torch.empty_strided(x.shape, x.stride, dtype=x.dtype, device="meta")
    try:
        base.view(call.out.shape)
    except RuntimeError:
        return True
    return False


def _maybe_copy_type(call: OpCall) -> str:
    return "Data Movement" if _copies(call) else "View"


@register(["reshape", "reshape_as", "flatten", "contiguous", "to", "type", "type_as"],
          _maybe_copy_type)
def _maybe_copy(call: OpCall) -> Cost:
    if not _copies(call):
        return ZERO
    return access(call.inputs[0], call.out)


@register(["zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "new_zeros",
           "new_ones", "new_full", "arange", "linspace", "logspace", "scalar_tensor", "eye",
           "fill", "fill_", "zero_", "rand", "randn", "rand_like", "randn_like", "randint",
           "tensor", "bernoulli", "normal", "uniform_", "normal_", "random_", "bernoulli_",
           "exponential_", "geometric_", "log_normal_", "cauchy_"], "Data Movement")
def _factory(call: OpCall) -> Cost:
    """Writes its output; a fill/zero in place, or a random fill, also writes only."""
    return access(*call.outputs)


@register(["empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
           "empty_permuted"], "View", view=True)
def _empty(call: OpCall) -> Cost:
    return ZERO
