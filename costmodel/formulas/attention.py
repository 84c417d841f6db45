"""Attention: scaled dot-product attention in every form torch dispatches it to, and the fused
multi-head attention op.

Mult-Adds: Q @ K^T and P @ V in full, batch * heads * L * S * (E + Ev); a causal mask is not
discounted (kernels differ in what they skip; this is the count FlopCounterMode and the papers
use). FLOPs: 2 * Mult-Adds plus, per score, a scale, the softmax and, with a mask, an add.
MAC: a fused kernel reads Q, K, V (and a mask) and writes its outputs; the L x S score matrix
stays on chip, so it is not counted. Their backward ops are in backward.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from costmodel.cost import Cost, Num, div
from costmodel.formulas.elementwise import SOFTMAX_FLOPS
from costmodel.formulas.linear import linear
from costmodel.formulas.registry import OpCall, TensorMeta, register


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


@dataclass(frozen=True)
class Variant:
    """Where one fused attention op keeps its arguments: the index of `query` (key and value
    follow it), of the mask (an index, a keyword-only name, or None where it takes none) and of
    `is_causal`; `layout` "bhld" is (..., L, E), "blhd" is (B, L, H, E)."""

    mask: int | str | None
    causal: int
    layout: str = "bhld"
    query: int = 0
    mask_name: str = "attn_mask"
    causal_name: str = "is_causal"

    def qkv(self, call: OpCall) -> tuple[TensorMeta, TensorMeta, TensorMeta]:
        q = self.query
        return call.args[q], call.args[q + 1], call.args[q + 2]

    def masked(self, call: OpCall) -> bool:
        """A mask tensor or `is_causal` (custom_mask_type != 0 for the low-level kernels)."""
        if self.mask is None:
            mask = None
        elif isinstance(self.mask, str):
            mask = call.kwargs.get(self.mask)
        else:
            mask = call.arg(self.mask, self.mask_name)
        return mask is not None or bool(call.arg(self.causal, self.causal_name, False))

    def sizes(self, call: OpCall, out: TensorMeta | None = None
              ) -> tuple[Num, Num, Num, Num, Num]:
        """(batch x query heads, L, S, E, Ev) from the query, key and value shapes; the batch
        from `out` (the attention's output, or its gradient), where q may broadcast against
        k and v."""
        q, k, v = self.qkv(call)
        seq_axis = -2 if self.layout == "bhld" else 1
        q_len, kv_len, e, ev = q.shape[seq_axis], k.shape[seq_axis], q.shape[-1], v.shape[-1]
        batch_heads = div(q.numel, q_len * e) if out is None else div(out.numel, q_len * ev)
        return batch_heads, q_len, kv_len, e, ev


VARIANTS: dict[str, Variant] = {
    "scaled_dot_product_attention": Variant(3, 5),
    "_scaled_dot_product_attention_math": Variant(3, 5),
    "_scaled_dot_product_attention_math_for_mps": Variant(3, 5),
    "_scaled_dot_product_flash_attention": Variant(None, 4),
    "_scaled_dot_product_flash_attention_for_cpu": Variant("attn_mask", 4),
    "_scaled_dot_product_efficient_attention": Variant(3, 6),
    "_scaled_dot_product_cudnn_attention": Variant(3, 6),
    "_cudnn_attention_forward": Variant(3, 10),
    "_scaled_dot_product_fused_attention_overrideable": Variant(3, 5),
    "_flash_attention_forward": Variant(None, 8, "blhd"),
    # writes its output into its first argument and returns the log-sum-exp
    "_flash_attention_forward_no_dropout_inplace": Variant(None, 9, "blhd", query=1),
    "_efficient_attention_forward": Variant(3, 9, "blhd", mask_name="bias",
                                            causal_name="custom_mask_type"),  # 0: none
}


def _sdpa(call: OpCall) -> Cost:
    variant = VARIANTS[call.target.overloadpacket.__name__]
    batch_heads, q_len, kv_len, e, ev = variant.sizes(
        call, call.out if variant.query == 0 else None)
    q = variant.qkv(call)[0]
    cost = attention(batch_heads, q_len, kv_len, e, ev, variant.masked(call),
                     itemsize=q.itemsize)
    return cost.replace(mac=0, mac_bytes=0) + call.io()


register(list(VARIANTS), "Attention")(_sdpa)


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
