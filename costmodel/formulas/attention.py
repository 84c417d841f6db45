"""Attention: scaled dot-product attention in every form torch dispatches it to, and the fused
multi-head attention op.

Mult-Adds: Q @ K^T and P @ V in full, batch * heads * L * S * (E + Ev); a causal mask is not
discounted (kernels differ in what they skip; this is the count FlopCounterMode and the papers
use). FLOPs: 2 * Mult-Adds plus, per score, a scale, the softmax and, with a mask, an add.
MAC: a fused kernel reads Q, K, V (and a mask) and writes its outputs; the L x S score matrix
stays on chip, so it is not counted.
"""

from __future__ import annotations

from costmodel.cost import Cost, Num, div
from costmodel.formulas.elementwise import SOFTMAX_FLOPS
from costmodel.formulas.linear import linear
from costmodel.formulas.registry import OpCall, register


def attention(batch_heads: Num, q_len: Num, kv_len: Num, head_dim: Num,
              v_head_dim: Num | None = None, mask: bool = False, kv_heads_ratio: Num = 1,
              itemsize: int = 4) -> Cost:
    """Cost of softmax(Q K^T * scale [+ mask]) V over `batch_heads` (batch x query heads).

    `kv_heads_ratio` is query heads per key/value head (grouped-query attention).
    """
    ev = head_dim if v_head_dim is None else v_head_dim
    scores = batch_heads * q_len * kv_len
    madds = scores * (head_dim + ev)
    kv_bh = div(batch_heads, kv_heads_ratio)
    mac = (batch_heads * q_len * head_dim + kv_bh * kv_len * (head_dim + ev)
           + batch_heads * q_len * ev + (scores if mask else 0))
    return Cost(madds=madds, flops=2 * madds + scores * (1 + SOFTMAX_FLOPS + (1 if mask else 0)),
                mac=mac, mac_bytes=mac * itemsize)


# name: (mask: positional index or keyword, is_causal: positional index, layout);
# layout "bhld" is (..., L, E), "blhd" is (B, L, H, E).
_VARIANTS: dict[str, tuple[int | str | None, int, str]] = {
    "scaled_dot_product_attention": (3, 5, "bhld"),
    "_scaled_dot_product_attention_math": (3, 5, "bhld"),
    "_scaled_dot_product_attention_math_for_mps": (3, 5, "bhld"),
    "_scaled_dot_product_flash_attention": (None, 4, "bhld"),
    "_scaled_dot_product_flash_attention_for_cpu": ("attn_mask", 4, "bhld"),
    "_scaled_dot_product_efficient_attention": (3, 6, "bhld"),
    "_scaled_dot_product_cudnn_attention": (3, 6, "bhld"),
    "_scaled_dot_product_fused_attention_overrideable": (3, 5, "bhld"),
    "_flash_attention_forward": (None, 8, "blhd"),
    "_efficient_attention_forward": (3, 9, "blhd"),  # custom_mask_type: 0 none, else causal
}


def _sdpa(call: OpCall) -> Cost:
    q, k, v = call.args[0], call.args[1], call.args[2]
    mask_at, causal_at, layout = _VARIANTS[call.target.overloadpacket.__name__]
    if mask_at is None:
        mask = None
    elif isinstance(mask_at, str):
        mask = call.kwargs.get(mask_at)
    else:
        mask = call.arg(mask_at, "attn_mask")
    causal = bool(call.arg(causal_at, "is_causal", False))
    seq_axis = -2 if layout == "bhld" else 1
    q_len, kv_len, e, ev = q.shape[seq_axis], k.shape[seq_axis], q.shape[-1], v.shape[-1]
    batch_heads = div(call.out.numel, q_len * ev)  # the broadcast batch of q against k, v
    cost = attention(batch_heads, q_len, kv_len, e, ev, mask is not None or causal,
                     itemsize=q.itemsize)
    return cost.replace(mac=0, mac_bytes=0) + call.io()


register(list(_VARIANTS), "Attention")(_sdpa)


@register("_native_multi_head_attention", "Attention")
def _native_mha(call: OpCall) -> Cost:
    """nn.MultiheadAttention's fused inference path: in-projections, attention, out-projection."""
    q, k, v = call.args[0], call.args[1], call.args[2]
    d, heads = call.args[3], call.args[4]
    has_bias = call.arg(6, "qkv_bias") is not None
    rows_q, rows_k = div(q.numel, d), div(k.numel, d)
    batch = div(rows_q, q.shape[-2])
    proj = (linear(rows_q, d, d, has_bias) + linear(rows_k, d, d, has_bias)
            + linear(div(v.numel, d), d, d, has_bias) + linear(rows_q, d, d, True))
    att = attention(batch * heads, q.shape[-2], k.shape[-2], div(d, heads),
                    mask=call.arg(9, "mask") is not None)
    return Cost(madds=proj.madds + att.madds, flops=proj.flops + att.flops) + call.io()
