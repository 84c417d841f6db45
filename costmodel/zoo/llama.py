"""A LLaMA-style decoder-only transformer, written from the paper's description.

Plain :mod:`torch.nn` modules with PyTorch's default parameter initialisation; the rotary
tables are computed with tensor factories, so the model can be built and run on the ``meta``
device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Attention",
    "Decoder",
    "FeedForward",
    "KVCache",
    "LlamaDecoder",
    "RMSNorm",
    "TransformerBlock",
    "causal_mask",
    "llama_7b",
    "llama_7b_decode",
    "llama_7b_prefill",
    "llama_tiny",
    "llama_tiny_decode",
    "llama_tiny_prefill",
    "rotary_tables",
]


class RMSNorm(nn.Module):
    """Root-mean-square layer norm: ``x * rsqrt(mean(x^2) + eps) * weight`` over the last dim."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


def rotary_tables(
    head_dim: int, seq_len: int, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine tables of rotary position embedding, each ``(seq_len, head_dim / 2)``.

    Pair ``i`` of a head (dimensions ``2i`` and ``2i + 1``) at position ``m`` is rotated by the
    angle ``m * theta ** (-2i / head_dim)``. Tensors are created on the current default
    device, so the tables are meta tensors when the model is built on ``meta``.
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    positions = torch.arange(seq_len, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of the last dim of ``x`` (``(B, H, S, D)``) by the tables.

    Uses element-wise arithmetic only (no matmul), so it adds no Mult-Adds.
    """
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    even, odd = pairs.unbind(-1)
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


class KVCache(nn.Module):
    """Keys and values of past positions, preallocated: two non-persistent buffers of shape
    ``(batch, n_heads, length, head_dim)``, as in the reference LLaMA implementation.

    A step writes its new keys and values in place at ``[start, start + T)`` and attends over
    ``[0, start + T)``: it reads the cache once and writes only the new positions (no
    concatenation copies the past).
    """

    def __init__(self, batch: int, n_heads: int, length: int, head_dim: int) -> None:
        super().__init__()
        self.length = length
        self.register_buffer("k", torch.zeros(batch, n_heads, length, head_dim),
                             persistent=False)
        self.register_buffer("v", torch.zeros(batch, n_heads, length, head_dim),
                             persistent=False)

    def forward(self, start: int, k: torch.Tensor, v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k`` and ``v`` (``(B, H, T, D)``) at positions ``start...start + T - 1``;
        the keys and values of positions ``0...start + T - 1``."""
        batch, end = k.shape[0], start + k.shape[2]
        self.k[:batch, :, start:end] = k
        self.v[:batch, :, start:end] = v
        return self.k[:batch, :, :end], self.v[:batch, :, :end]


class Attention(nn.Module):
    """Causal self-attention with rotary position embedding on queries and keys; with
    ``cache_len`` > 0, a `KVCache` of that many positions (``max_batch`` sequences).

    ``n_kv_heads`` (default ``n_heads``) key/value heads are shared by groups of query heads
    (grouped-query attention, as in Mistral and Mixtral): the k and v projections and the
    cache are ``n_kv_heads`` heads wide.
    """

    def __init__(self, dim: int, n_heads: int, cache_len: int = 0, max_batch: int = 1,
                 n_kv_heads: int | None = None) -> None:
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = dim // n_heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        self.cache = (KVCache(max_batch, n_kv_heads, cache_len, self.head_dim) if cache_len
                      else None)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                start: int = 0) -> torch.Tensor:
        """``x`` holds positions ``start...start + T - 1``; ``cos``/``sin`` are their rows of
        the rotary tables. Without a cache, ``start`` must be 0."""
        batch, seq, dim = x.shape

        def heads(t: torch.Tensor, n: int) -> torch.Tensor:
            return t.view(batch, seq, n, self.head_dim).transpose(1, 2)

        q = apply_rotary(heads(self.wq(x), self.n_heads), cos, sin)
        k = apply_rotary(heads(self.wk(x), self.n_kv_heads), cos, sin)
        v = heads(self.wv(x), self.n_kv_heads)
        if self.cache is not None:
            k, v = self.cache(start, k, v)
        options = causal_mask(seq, start, x.device)
        if self.n_kv_heads != self.n_heads:
            options["enable_gqa"] = True
        out = F.scaled_dot_product_attention(q, k, v, **options)
        return self.wo(out.transpose(1, 2).reshape(batch, seq, dim))


def causal_mask(seq: int, start: int, device: torch.device) -> dict[str, object]:
    """Keyword arguments of ``scaled_dot_product_attention`` for ``seq`` queries at positions
    ``start...`` over keys ``0...start + seq - 1``: none for one query (it sees every key),
    ``is_causal`` from position 0, else a boolean mask aligned to the last key."""
    if seq == 1:
        return {}
    if start == 0:
        return {"is_causal": True}
    mask = torch.ones(seq, start + seq, dtype=torch.bool, device=device).tril(start)
    return {"attn_mask": mask}


def step_start(seq: int, start: int | None, cache_len: int, seq_len: int) -> int:
    """The first position of a step of ``seq`` tokens (default: the last ``seq`` positions of
    a cache of ``cache_len``; 0 without a cache), checked against the cache and the rotary
    tables' ``seq_len`` positions."""
    if start is None:
        start = cache_len - seq if cache_len else 0
    if start < 0 or (start and not cache_len):
        raise ValueError(f"start {start}: the model caches {cache_len} positions")
    if start + seq > seq_len:
        raise ValueError(f"sequence length {start + seq} exceeds the model's {seq_len}")
    if cache_len and start + seq > cache_len:
        raise ValueError(f"positions up to {start + seq} exceed the cache's {cache_len}")
    return start


def cache_nbytes(model: nn.Module) -> int:
    """Bytes of the buffers of every `KVCache` in ``model`` (torch's ``nbytes``)."""
    return sum(b.nbytes for m in model.modules() if isinstance(m, KVCache) for b in m.buffers())


class FeedForward(nn.Module):
    """SwiGLU feed-forward: ``w2(silu(w1(x)) * w3(x))``, all projections bias-free."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h = x + attn(norm(x))``; ``out = h + ffn(norm(h))``."""

    def __init__(self, dim: int, n_heads: int, hidden_dim: int, norm_eps: float,
                 cache_len: int = 0, max_batch: int = 1) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(dim, norm_eps)
        self.attention = Attention(dim, n_heads, cache_len, max_batch)
        self.ffn_norm = RMSNorm(dim, norm_eps)
        self.feed_forward = FeedForward(dim, hidden_dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                start: int = 0) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, start)
        return h + self.feed_forward(self.ffn_norm(h))


class Decoder(nn.Module):
    """What the zoo's decoders share: token ids in, logits out, one inference step at a time.

    A subclass builds ``tok_embeddings``, ``layers`` (blocks called as ``layer(h, cos, sin,
    start)``), ``norm``, ``output``, the rotary tables ``rope_cos``/``rope_sin`` and sets
    ``seq_len``, ``cache_len`` and ``example_tokens``.
    """

    seq_len: int
    cache_len: int
    example_tokens: int

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """A batch of one all-zero token sequence of ``example_tokens`` tokens on ``meta``."""
        return (torch.zeros(1, self.example_tokens, dtype=torch.long, device="meta"),)

    def forward(self, tokens: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """Logits of ``tokens`` ``(B, T)`` at positions ``start...start + T - 1`` (see the
        class docstring; without a cache, ``start`` is 0)."""
        seq = tokens.shape[1]
        start = step_start(seq, start, self.cache_len, self.seq_len)
        cos, sin = self.rope_cos[start:start + seq], self.rope_sin[start:start + seq]
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h, cos, sin, start)
        return self.output(self.norm(h))

    def kv_cache_bytes(self) -> int:
        """Bytes of the KV cache: 2 (keys, values) x layers x batch x positions x key/value
        heads x head dim x the dtype's size."""
        return cache_nbytes(self)


class LlamaDecoder(Decoder):
    """LLaMA decoder-only language model.

    Touvron et al., "LLaMA: Open and Efficient Foundation Language Models", arXiv:2302.13971
    (Section 2.2: pre-normalisation with RMSNorm, SwiGLU activation, rotary embeddings).

    Token embedding, ``n_layers`` pre-norm transformer blocks (RMSNorm, causal multi-head
    attention with separate bias-free q/k/v/o projections and rotary position embedding on
    q and k, RMSNorm, SwiGLU feed-forward with bias-free w1 (gate), w3 (up) and w2 (down)),
    a final RMSNorm and a bias-free output projection to the vocabulary (not tied to the
    embedding). ``forward`` maps token ids ``(B, S)`` to logits ``(B, S, vocab_size)``.

    The rotary tables cover ``seq_len`` positions and are non-persistent buffers. Mult-Adds
    of a forward pass at ``S = seq_len`` are
    ``n_layers * (4 S d^2 + 3 S d hidden + 2 S^2 d) + S d vocab`` (the attention products
    ``QK^T`` and ``AV`` counted in full, without discounting the causal mask).

    With ``cache_len`` > 0 every attention layer keeps a `KVCache` of ``cache_len`` positions
    for ``max_batch`` sequences, and ``forward(tokens, start)`` is one inference step: the T
    tokens sit at positions ``start...start + T - 1`` (default: the last T positions of the
    cache), their keys and values are written into the cache, and attention reads positions
    ``0...start + T - 1``. A prefill of T tokens is a step at start 0; a decode step is one
    token after ``start`` cached ones. ``example_inputs`` gives ``example_tokens`` tokens
    (default: ``seq_len`` without a cache, 1 with one: a decode step).

    Deviations: no inference-time sampling; ``llama_7b`` has 6,738,415,616 parameters, the
    released 7B model's count.
    """

    def __init__(
        self,
        vocab_size: int = 32000,
        dim: int = 4096,
        n_layers: int = 32,
        n_heads: int = 32,
        hidden_dim: int = 11008,
        seq_len: int = 2048,
        norm_eps: float = 1e-6,
        cache_len: int = 0,
        max_batch: int = 1,
        example_tokens: int | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.dim = dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.hidden_dim = hidden_dim
        self.seq_len = seq_len
        self.cache_len = cache_len
        if example_tokens is None:
            example_tokens = 1 if cache_len else seq_len
        self.example_tokens = example_tokens
        self.tok_embeddings = nn.Embedding(vocab_size, dim)
        self.layers = nn.ModuleList(
            TransformerBlock(dim, n_heads, hidden_dim, norm_eps, cache_len, max_batch)
            for _ in range(n_layers)
        )
        self.norm = RMSNorm(dim, norm_eps)
        self.output = nn.Linear(dim, vocab_size, bias=False)
        cos, sin = rotary_tables(dim // n_heads, seq_len)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def mult_adds(self, seq_len: int | None = None) -> int:
        """Closed-form Mult-Adds of one forward pass over ``seq_len`` tokens (default: all)."""
        s = self.seq_len if seq_len is None else seq_len
        d, hidden = self.dim, self.hidden_dim
        per_layer = 4 * s * d * d + 3 * s * d * hidden + 2 * s * s * d
        return self.n_layers * per_layer + s * d * self.vocab_size


def llama_7b() -> LlamaDecoder:
    """LLaMA-7B: d = 4096, 32 layers, 32 heads, SwiGLU hidden 11008, 2048 tokens."""
    return LlamaDecoder()


def llama_tiny() -> LlamaDecoder:
    """A tiny LLaMA for fast tests: d = 64, 2 layers, 4 heads, hidden 172, vocab 256, 32 tokens."""
    return LlamaDecoder(vocab_size=256, dim=64, n_layers=2, n_heads=4, hidden_dim=172, seq_len=32)


def llama_7b_prefill(tokens: int = 2048) -> LlamaDecoder:
    """LLaMA-7B's prefill: ``tokens`` prompt tokens written into a KV cache of that length."""
    return LlamaDecoder(cache_len=tokens, example_tokens=tokens)


def llama_7b_decode(past: int = 2047) -> LlamaDecoder:
    """LLaMA-7B's decode step: one token after ``past`` cached ones (a cache of past + 1)."""
    return LlamaDecoder(cache_len=past + 1)


_TINY = {"vocab_size": 256, "dim": 64, "n_layers": 2, "n_heads": 4, "hidden_dim": 172,
         "seq_len": 32}


def llama_tiny_prefill(tokens: int = 32) -> LlamaDecoder:
    """`llama_tiny`'s prefill: ``tokens`` prompt tokens written into a KV cache of that length."""
    return LlamaDecoder(**_TINY, cache_len=tokens, example_tokens=tokens)


def llama_tiny_decode(past: int = 31) -> LlamaDecoder:
    """`llama_tiny`'s decode step: one token after ``past`` cached ones (a cache of past + 1)."""
    return LlamaDecoder(**_TINY, cache_len=past + 1)
