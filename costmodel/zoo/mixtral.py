"""A Mixtral-style sparse mixture-of-experts decoder, built from the LLaMA blocks.

The experts run as ``torch._grouped_mm`` over the tokens sorted by expert, as the
``transformers`` library runs them: the matmuls' shapes do not depend on the routing, so a
shape-only trace on ``meta`` counts the experts' work exactly (every token through ``top_k``
experts), and so does a trace that executes the model (``--execute``) whatever the router picks.
Parameters are bfloat16 by default, as the released weights are (``_grouped_mm`` on ``meta``
accepts bfloat16 only).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .llama import Attention, Decoder, RMSNorm, rotary_tables

__all__ = ["MixtralDecoder", "SparseMoE", "mixtral_8x7b", "mixtral_8x7b_decode",
           "mixtral_8x7b_prefill", "mixtral_tiny", "mixtral_tiny_decode", "mixtral_tiny_prefill"]


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Tensors made without a dtype are ``dtype`` while the block runs: the model is built in
    its dtype rather than converted by ``Module.to``, which cannot swap the fake parameters of
    a model built with free sizes (``costmodel analyze --free``)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class SparseMoE(nn.Module):
    """Top-k routed SwiGLU experts: a linear router, softmax, top-k renormalised weights.

    The ``top_k`` picks of every token are sorted by expert, counted per expert (``histc``)
    into the offsets of one grouped matmul for the experts' gate and up projections and one for
    their down projections; the weighted outputs are added back into each token's row.
    """

    def __init__(self, dim: int, hidden_dim: int, n_experts: int, top_k: int) -> None:
        super().__init__()
        self.n_experts = n_experts
        self.top_k = top_k
        self.gate = nn.Linear(dim, n_experts, bias=False)
        self.w13 = nn.Parameter(torch.empty(n_experts, 2 * hidden_dim, dim))  # gate; up
        self.w2 = nn.Parameter(torch.empty(n_experts, dim, hidden_dim))
        nn.init.normal_(self.w13, std=dim**-0.5)
        nn.init.normal_(self.w2, std=hidden_dim**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = F.softmax(self.gate(x).float(), dim=-1)
        weights, experts = torch.topk(probs, self.top_k, dim=-1)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
        sorted_experts, order = torch.sort(experts.reshape(-1))
        token = order // self.top_k
        per_expert = torch.histc(sorted_experts.float(), bins=self.n_experts, min=0,
                                 max=self.n_experts - 1)
        offsets = torch.cumsum(per_expert, dim=0, dtype=torch.int32)
        gate, up = torch._grouped_mm(x[token], self.w13.transpose(1, 2), offs=offsets).chunk(2, -1)
        out = torch._grouped_mm(F.silu(gate) * up, self.w2.transpose(1, 2), offs=offsets)
        out = out * weights.reshape(-1)[order, None]
        return torch.zeros_like(x).index_add_(0, token, out).view(shape)


class MixtralBlock(nn.Module):
    """Pre-norm block: ``h = x + attn(norm(x))``; ``out = h + moe(norm(h))``; the attention is
    LLaMA's with ``n_kv_heads`` key/value heads, and its KV cache when ``cache_len`` > 0."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, hidden_dim: int,
                 n_experts: int, top_k: int, norm_eps: float, cache_len: int = 0,
                 max_batch: int = 1) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(dim, norm_eps)
        self.attention = Attention(dim, n_heads, cache_len, max_batch, n_kv_heads)
        self.ffn_norm = RMSNorm(dim, norm_eps)
        self.moe = SparseMoE(dim, hidden_dim, n_experts, top_k)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                start: int = 0) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, start)
        return h + self.moe(self.ffn_norm(h))


class MixtralDecoder(Decoder):
    """Mixtral sparse mixture-of-experts decoder-only language model.

    Jiang et al., "Mixtral of Experts", arXiv:2401.04088: the Mistral 7B architecture
    (LLaMA-style pre-norm blocks, RMSNorm, rotary embeddings, grouped-query attention) with every
    feed-forward replaced by ``n_experts`` SwiGLU experts of which a linear router picks
    ``top_k`` per token. Token ids ``(B, S)`` map to logits ``(B, S, vocab_size)``.

    Mult-Adds of a forward pass over ``S`` tokens (``d`` = dim, ``kv`` = n_kv_heads * head_dim):
    ``n_layers * (2 S d^2 + 2 S d kv + 2 S^2 d + S d n_experts + 3 S top_k d hidden)
    + S d vocab``: the q and o projections, k and v, the attention products in full (no
    discount for the causal mask), the router, ``top_k`` experts per token, the LM head.

    With ``cache_len`` > 0 every attention layer keeps a `KVCache` of ``cache_len`` positions
    of ``n_kv_heads`` heads for ``max_batch`` sequences, and ``forward(tokens, start)`` is one
    inference step, as for `LlamaDecoder`: a prefill of T tokens is a step at start 0, a decode
    step one token after ``start`` cached ones. ``example_inputs`` gives ``example_tokens``
    tokens (default: ``seq_len`` without a cache, 1 with one: a decode step).

    Deviations: no sliding window, no load-balancing loss.
    """

    def __init__(self, vocab_size: int = 32000, dim: int = 4096, n_layers: int = 32,
                 n_heads: int = 32, n_kv_heads: int = 8, hidden_dim: int = 14336,
                 n_experts: int = 8, top_k: int = 2, seq_len: int = 4096,
                 rope_theta: float = 1e6, norm_eps: float = 1e-5,
                 dtype: torch.dtype = torch.bfloat16, cache_len: int = 0, max_batch: int = 1,
                 example_tokens: int | None = None) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.dim = dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.hidden_dim = hidden_dim
        self.n_experts = n_experts
        self.top_k = top_k
        self.seq_len = seq_len
        self.cache_len = cache_len
        if example_tokens is None:
            example_tokens = 1 if cache_len else seq_len
        self.example_tokens = example_tokens
        with default_dtype(dtype):  # not self.to(dtype): fake tensors cannot be swapped
            self.tok_embeddings = nn.Embedding(vocab_size, dim)
            self.layers = nn.ModuleList(
                MixtralBlock(dim, n_heads, n_kv_heads, hidden_dim, n_experts, top_k, norm_eps,
                             cache_len, max_batch)
                for _ in range(n_layers))
            self.norm = RMSNorm(dim, norm_eps)
            self.output = nn.Linear(dim, vocab_size, bias=False)
        cos, sin = rotary_tables(dim // n_heads, seq_len, rope_theta)
        self.register_buffer("rope_cos", cos.to(dtype), persistent=False)
        self.register_buffer("rope_sin", sin.to(dtype), persistent=False)


def mixtral_8x7b() -> MixtralDecoder:
    """Mixtral 8x7B: d = 4096, 32 layers, 32 heads (8 KV), 8 experts of hidden 14336, top 2."""
    return MixtralDecoder()


def mixtral_8x7b_prefill(tokens: int = 4096) -> MixtralDecoder:
    """Mixtral 8x7B's prefill: ``tokens`` prompt tokens written into a KV cache of that length."""
    return MixtralDecoder(cache_len=tokens, example_tokens=tokens)


def mixtral_8x7b_decode(past: int = 4095) -> MixtralDecoder:
    """Mixtral 8x7B's decode step: one token after ``past`` cached ones (a cache of past + 1)."""
    return MixtralDecoder(cache_len=past + 1)


_TINY: dict[str, Any] = {"vocab_size": 256, "dim": 64, "n_layers": 2, "n_heads": 4,
                         "n_kv_heads": 2, "hidden_dim": 96, "n_experts": 4, "top_k": 2,
                         "seq_len": 32}


def mixtral_tiny() -> MixtralDecoder:
    """A tiny Mixtral for fast tests: d = 64, 2 layers, 4 heads (2 KV), 4 experts, top 2."""
    return MixtralDecoder(**_TINY)


def mixtral_tiny_prefill(tokens: int = 32) -> MixtralDecoder:
    """`mixtral_tiny`'s prefill: ``tokens`` prompt tokens written into a KV cache of that
    length."""
    return MixtralDecoder(**_TINY, cache_len=tokens, example_tokens=tokens)


def mixtral_tiny_decode(past: int = 31) -> MixtralDecoder:
    """`mixtral_tiny`'s decode step: one token after ``past`` cached ones (a cache of
    past + 1)."""
    return MixtralDecoder(**_TINY, cache_len=past + 1)
