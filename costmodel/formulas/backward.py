"""The backward ops autograd runs for a training step, costed from the forward formulas.

A convolution's backward is two convolutions of the forward's size: the input gradient (a
transposed convolution) and the weight gradient (a correlation of the input with the output
gradient), each with the forward's Mult-Adds, so `conv()` gives both; the bias gradient is a sum
over the output gradient (one add per element). Autograd asks only for the gradients it needs
(`output_mask`): a first layer, whose input needs no gradient, computes no input gradient, and
that half is not counted. MAC: the output gradient is read, the weight where the input gradient
is computed, the input where the weight gradient is, and each requested gradient is written.
This holds for grouped and depthwise convolutions alike (2 x the forward when both gradients
are computed); torch's FlopCounterMode counts them as (groups + 1) x the forward.

Element-wise backward ops count their defining formula, one FLOP per elementary operation
(the rule of elementwise.py): ReLU's `threshold_backward` 1 (select), `hardtanh_backward` 2
(two compares), `silu_backward` 9 (the sigmoid's 4, then g * s * (1 + x * (1 - s)): 5),
softmax's 4 (g * y, its row sum, g - sum, times y), tanh's 3 (g * (1 - y^2)), GELU's 11
(g * (Phi(x) + x phi(x)): Phi 4, phi 4, the product, the sum, times g; 19 with
approximate='tanh', the tanh form's 5 + 1 + 2 and its derivative's 8, times g). A batch
norm's backward in training is
9 FLOPs per element (x_hat: 2; sum of g: 1; sum of g * x_hat: 2; the input gradient
(g - mean(g) - x_hat * mean(g * x_hat)) * gamma / sigma: 4), less what output_mask skips; with
running statistics the input gradient is one scale (1); a layer norm's backward counts the
same per element (its sums run over each row, not each channel) plus one scale by its weight.
Pooling and embedding backward scatter
the output gradient back: max pooling adds each gradient element once, average pooling divides
it by the window and adds it to each of the window's k taps (k + 1), an embedding adds each row
into the table's gradient (one add per element).

A fused attention's backward (every kernel SDPA dispatches to: flash for CPU, flash, efficient,
cuDNN, and the overridable and low-level forms) is counted in its math form, from the softmax P
saved or rebuilt: dV = P^T dO (L S Ev per batch and head), dP = dO V^T (L S Ev), dQ = dS K
(L S E) and dK = dS^T Q (L S E), twice the forward's Mult-Adds when all three gradients are
computed, less the products a gradient mask (`grad_input_mask`) skips. The flash kernels do not
keep P: they recompute the scores Q K^T (L S E more) from the saved log-sum-exp, and that
recompute is **not** counted: it is the kernel trading arithmetic for memory, not work the
model's math asks for, and counting it would make the same model cost more built on the CPU
(fused kernels) than on meta (SDPA decomposed into matmuls, whose backward has no recompute).
torch's FlopCounterMode counts it (2.5 x the forward for the kernels it knows, 0 for flash for
CPU). FLOPs: 2 x Mult-Adds plus, per score, the softmax backward (4, as
`_softmax_backward_data`), the scale (1) and, with a mask or `is_causal`, the mask (1). MAC:
the kernel reads dO, Q, K, V, O and the log-sum-exp (and a mask) and writes each gradient; the
L x S matrices stay on chip, as in the forward.
"""

from __future__ import annotations

from costmodel.cost import Cost, Num, prod
from costmodel.formulas.attention import Variant
from costmodel.formulas.conv import conv
from costmodel.formulas.registry import OpCall, access, register

#: FLOPs per element of the element-wise backward ops (derived in the module docstring)
BACKWARD_FLOPS: dict[str, int] = {"threshold_backward": 1, "hardtanh_backward": 2,
                                  "silu_backward": 9, "_softmax_backward_data": 4,
                                  "_log_softmax_backward_data": 3, "tanh_backward": 3,
                                  "gelu_backward": 11}
GELU_TANH_BACKWARD_FLOPS = 19
BATCH_NORM_X_HAT_FLOPS, BATCH_NORM_SUM_FLOPS = 2, 1
BATCH_NORM_SUM_PRODUCT_FLOPS, BATCH_NORM_INPUT_GRAD_FLOPS = 2, 4
#: FLOPs per score of an attention backward besides its products: softmax backward, the scale
ATTENTION_BACKWARD_SCORE_FLOPS = BACKWARD_FLOPS["_softmax_backward_data"] + 1


def conv_backward(n: Num, c_in: Num, c_out: Num, in_size: tuple[Num, ...],
                  out_size: tuple[Num, ...], kernel: tuple[Num, ...], groups: Num = 1,
                  transposed: bool = False, output_mask: tuple[bool, bool, bool] = (
                      True, True, False), itemsize: int = 4) -> Cost:
    """Backward of one convolution: input, weight and bias gradients as `output_mask` asks."""
    forward = conv(n, c_in, c_out, in_size, out_size, kernel, groups, False, transposed,
                   itemsize)
    grad_input, grad_weight, grad_bias = (bool(m) for m in output_mask)
    madds = forward.madds * (int(grad_input) + int(grad_weight))
    x, y = n * c_in * prod(in_size), n * c_out * prod(out_size)
    weight = forward.params
    mac = (y + (weight + x if grad_input else 0) + (x + weight if grad_weight else 0)
           + (c_out if grad_bias else 0))
    return Cost(madds=madds, flops=2 * madds + (y if grad_bias else 0), mac=mac,
                mac_bytes=mac * itemsize)


def _conv_parts(call: OpCall) -> tuple:
    grad_out, x, w = call.args[0], call.args[1], call.args[2]
    transposed, groups = bool(call.arg(7, "transposed")), call.arg(9, "groups", 1)
    mask = tuple(bool(m) for m in call.arg(10, "output_mask"))
    return grad_out, x, w, transposed, groups, mask


def conv_backward_type(call: OpCall) -> str:
    """The forward convolution's label: `Conv 3x3`, `Conv DW 3x3`..."""
    _, x, w, transposed, groups, _ = _conv_parts(call)
    spatial = w.ndim - 2
    base = ("ConvTranspose" if transposed else "Conv") + (f"{spatial}d" if spatial != 2 else "")
    kind = "" if groups == 1 else (" DW" if groups == x.shape[-spatial - 1] else " GW")
    return f"{base}{kind} {'x'.join(str(k) for k in w.shape[2:])}"


@register("convolution_backward", conv_backward_type)
def _convolution_backward(call: OpCall) -> Cost:
    grad_out, x, w, transposed, groups, mask = _conv_parts(call)
    spatial = w.ndim - 2
    batched = x.ndim == w.ndim
    n = x.shape[0] if batched else 1
    if transposed:
        c_in, c_out = w.shape[0], w.shape[1] * groups
    else:
        c_out, c_in = w.shape[0], w.shape[1] * groups
    return conv_backward(n, c_in, c_out, x.shape[-spatial:], grad_out.shape[-spatial:],
                         w.shape[2:], groups, transposed, mask, x.itemsize)


def batch_norm_backward_flops(training: bool, output_mask: tuple[bool, bool, bool]) -> int:
    """FLOPs per element of a batch norm's backward (see the module docstring)."""
    grad_input, grad_weight, grad_bias = output_mask
    if not training:
        return (int(grad_input) + BATCH_NORM_SUM_FLOPS * int(grad_bias)
                + (BATCH_NORM_X_HAT_FLOPS + BATCH_NORM_SUM_PRODUCT_FLOPS) * int(grad_weight))
    x_hat = grad_input or grad_weight
    return (BATCH_NORM_X_HAT_FLOPS * int(x_hat)
            + BATCH_NORM_SUM_FLOPS * int(grad_input or grad_bias)
            + BATCH_NORM_SUM_PRODUCT_FLOPS * int(grad_input or grad_weight)
            + BATCH_NORM_INPUT_GRAD_FLOPS * int(grad_input))


@register("native_batch_norm_backward", "Norm")
def _batch_norm_backward(call: OpCall) -> Cost:
    x = call.args[1]
    mask = tuple(bool(m) for m in call.arg(9, "output_mask"))
    per = batch_norm_backward_flops(bool(call.arg(7, "train")), mask)
    return Cost(flops=x.numel * per) + call.io()


def _per_element(call: OpCall) -> Cost:
    per = BACKWARD_FLOPS[call.target.overloadpacket.__name__]
    return Cost(flops=call.out.numel * per) + call.io()


register(["threshold_backward", "hardtanh_backward", "silu_backward", "tanh_backward"],
         "Activation")(_per_element)


@register("gelu_backward", "Activation")
def _gelu_backward(call: OpCall) -> Cost:
    tanh = call.kwargs.get("approximate", call.arg(2, "approximate", "none")) == "tanh"
    per = GELU_TANH_BACKWARD_FLOPS if tanh else BACKWARD_FLOPS["gelu_backward"]
    return Cost(flops=call.out.numel * per) + call.io()


@register("native_layer_norm_backward", "Norm")
def _layer_norm_backward(call: OpCall) -> Cost:
    """The batch-norm-in-training count per element, plus the scale by the weight."""
    x, weight = call.args[1], call.arg(5, "weight")
    mask = tuple(bool(m) for m in call.arg(7, "output_mask"))
    per = batch_norm_backward_flops(True, mask) + int(weight is not None and mask[0])
    return Cost(flops=x.numel * per) + call.io()
register(["_softmax_backward_data", "_log_softmax_backward_data"], "Activation")(_per_element)


@register(["max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward"],
          "Pooling")
def _max_pool_backward(call: OpCall) -> Cost:
    """Scatter-add each output gradient to the input position its index names."""
    grad_out, indices = call.args[0], call.arg(7, "indices")
    return Cost(flops=grad_out.numel) + access(grad_out, indices, call.out)


@register(["avg_pool2d_backward", "avg_pool3d_backward"], "Pooling")
def _avg_pool_backward(call: OpCall) -> Cost:
    """Divide each output gradient by its window and add it to each of the window's taps."""
    grad_out, kernel = call.args[0], call.arg(2, "kernel_size")
    taps = prod(kernel) if isinstance(kernel, (list, tuple)) else kernel
    return Cost(flops=grad_out.numel * (taps + 1)) + access(grad_out, call.out)


@register("embedding_dense_backward", "Embedding")
def _embedding_backward(call: OpCall) -> Cost:
    """Add each output gradient row into the table gradient's row its index names."""
    grad_out, indices = call.args[0], call.args[1]
    return Cost(flops=grad_out.numel) + access(grad_out, indices, call.out)


def attention_backward(batch_heads: Num, q_len: Num, kv_len: Num, head_dim: Num,
                       v_head_dim: Num | None = None, mask: bool = False,
                       grads: tuple[bool, bool, bool] = (True, True, True)) -> Cost:
    """Mult-Adds and FLOPs of attention's backward in its math form, for the gradients
    `grads` = (dQ, dK, dV) asked for; no recompute of the scores (the module docstring says
    why). MAC is that of the tensors the op reads and writes, added by the op's formula."""
    ev = head_dim if v_head_dim is None else v_head_dim
    dq, dk, dv = (bool(g) for g in grads)
    scores = batch_heads * q_len * kv_len
    through_p = dq or dk  # dP = dO V^T and the softmax backward are needed for dQ and dK
    madds = scores * (ev * (int(dv) + int(through_p)) + head_dim * (int(dq) + int(dk)))
    per_score = (ATTENTION_BACKWARD_SCORE_FLOPS + int(mask)) if through_p else 0
    return Cost(madds=madds, flops=2 * madds + scores * per_score)


#: Each fused attention backward: where its query, mask and is_causal are (grad_out comes
#: first), and the index of its grad_input_mask, where it has one.
BACKWARD_VARIANTS: dict[str, tuple[Variant, int | None]] = {
    "_scaled_dot_product_flash_attention_for_cpu_backward": (
        Variant("attn_mask", 7, query=1), None),
    "_scaled_dot_product_flash_attention_backward": (Variant(None, 11, query=1), None),
    "_scaled_dot_product_efficient_attention_backward": (
        Variant(4, 11, query=1, mask_name="attn_bias"), 10),
    "_scaled_dot_product_cudnn_attention_backward": (
        Variant(8, 14, query=1, mask_name="attn_bias"), None),
    "_cudnn_attention_backward": (Variant(8, 14, query=1, mask_name="attn_bias"), None),
    "_scaled_dot_product_fused_attention_overrideable_backward": (
        Variant(4, 13, query=1, mask_name="attn_bias"), 5),
    "_flash_attention_backward": (Variant(None, 11, "blhd", query=1), None),
    "_efficient_attention_backward": (
        Variant(4, 14, "blhd", query=1, mask_name="bias", causal_name="custom_mask_type"),
        None),
}


def _attention_backward(call: OpCall) -> Cost:
    variant, mask_at = BACKWARD_VARIANTS[call.target.overloadpacket.__name__]
    batch_heads, q_len, kv_len, e, ev = variant.sizes(call, call.args[0])
    grads = (True, True, True)
    if mask_at is not None:
        grads = tuple(bool(m) for m in call.arg(mask_at, "grad_input_mask"))[:3]
    return attention_backward(batch_heads, q_len, kv_len, e, ev, variant.masked(call),
                              grads) + call.io()


register(list(BACKWARD_VARIANTS), "Attention")(_attention_backward)
