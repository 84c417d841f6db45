"""LLaMA and Mixtral with a KV cache: a prefill of T tokens and a decode step after S cached
ones, each symbolic in T or S, against hand-derived counts, concrete analyses and torch running
the model on real tensors."""

from __future__ import annotations

import json

import pytest
import sympy
import torch

from costmodel import analyze
from costmodel.capture.symdims import symbol
from costmodel.cli import main
from costmodel.views.kvcache import kv_cache_bytes
from costmodel.zoo import (
    MixtralDecoder,
    llama_tiny,
    llama_tiny_decode,
    llama_tiny_prefill,
    mixtral_tiny,
    mixtral_tiny_decode,
    mixtral_tiny_prefill,
)

S, T = symbol("past"), symbol("tokens")
LAYERS, DIM, HIDDEN, VOCAB = 2, 64, 172, 256  # llama_tiny


def _meta(factory: object, *args: int) -> torch.nn.Module:
    with torch.device("meta"):
        return factory(*args)  # type: ignore[operator]


def test_decode_step_is_linear_in_the_cache_length() -> None:
    analysis = analyze(llama_tiny_decode, free={"past": 20})
    total = analysis.total()
    # by hand, one token: projections 4 d^2 + 3 d hidden, QK^T and AV over S + 1 keys, head
    per_layer = 4 * DIM**2 + 3 * DIM * HIDDEN + 2 * (S + 1) * DIM
    assert sympy.expand(total.madds - (LAYERS * per_layer + DIM * VOCAB)) == 0
    # the cache: keys and values of S + 1 positions, 64 wide, float32, in every layer
    assert sympy.expand(kv_cache_bytes(analysis) - LAYERS * 2 * (S + 1) * DIM * 4) == 0
    # each attention reads q (d), the cached keys and values ((S + 1) d each), writes d
    for op in (o for o in analysis.ops() if o["op_type"] == "Attention"):
        assert sympy.expand(op["cost"].mac - (2 * DIM + 2 * (S + 1) * DIM)) == 0
    assert analysis.guards == [S + 1 <= 32]  # the rotary tables cover 32 positions
    for past in (1, 7, 31):
        model = _meta(llama_tiny_decode, past)
        concrete = analyze(model)
        assert total.subs({S: past}) == concrete.total(), past
        assert kv_cache_bytes(concrete) == model.kv_cache_bytes()  # torch's nbytes


def test_prefill_costs_the_plain_forward_plus_writing_the_cache() -> None:
    prefill = analyze(llama_tiny_prefill, free={"tokens": 16})
    total = prefill.total()
    plain = analyze(_meta(llama_tiny), input_shape=[(1, "tokens")], dtype=torch.int64,
                    hints={"tokens": 16}).total()
    assert total.madds == plain.madds
    # each layer copies T new keys and T new values into the cache: read + write, 64 wide
    assert sympy.expand(total.mac - plain.mac - LAYERS * 2 * 2 * T * DIM) == 0
    assert sympy.expand(kv_cache_bytes(prefill) - LAYERS * 2 * T * DIM * 4) == 0
    for tokens in (2, 9, 32):
        assert total.subs({T: tokens}) == analyze(_meta(llama_tiny_prefill, tokens)).total()


def test_cached_steps_reproduce_the_full_forward_on_real_tensors() -> None:
    """torch runs the model: a prefill of 20 tokens and 12 decode steps give the logits of one
    forward pass over the 32 tokens, so the cache holds what attention needs."""
    torch.manual_seed(0)
    cached, full = llama_tiny_prefill(32), llama_tiny()
    full.load_state_dict(cached.state_dict())
    tokens = torch.randint(0, VOCAB, (1, 32))
    with torch.no_grad():
        expected = full(tokens)
        got = [cached(tokens[:, :20], start=0)]
        got += [cached(tokens[:, i:i + 1], start=i) for i in range(20, 32)]
    torch.testing.assert_close(torch.cat(got, dim=1), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="exceed the cache's 16"):
        llama_tiny_prefill(16)(tokens[:, :2], start=15)


def test_decode_mac_exceeds_its_mult_adds_per_byte() -> None:
    """A decode step reads every weight and the whole cache for one token: fewer than one FLOP
    per byte moved; a prefill of 32 tokens reuses each weight 32 times."""
    decode = analyze(_meta(llama_tiny_decode, 31)).total()
    prefill = analyze(_meta(llama_tiny_prefill, 32)).total()
    # every weight read once (of the embedding table, one row) and the whole cache
    weights = decode.params - (VOCAB - 1) * DIM
    assert decode.mac >= weights + LAYERS * 2 * 32 * DIM
    assert decode.flops / decode.mac_bytes < 1 < prefill.flops / prefill.mac_bytes


def test_cli_reports_the_kv_cache(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", "costmodel.zoo:llama_tiny_decode", "--free", "past=20"])
    out = capsys.readouterr().out
    assert code == 0 and "KV cache   1024*past + 1024 bytes" in out
    code = main(["analyze", "costmodel.zoo:llama_tiny_decode", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["kv_cache_bytes"] == LAYERS * 2 * 32 * DIM * 4
    assert report["inputs"] == [{"shape": [1, 1], "dtype": "int64"}]
    main(["analyze", "costmodel.zoo:llama_tiny_decode"])  # 2 x 2 x 32 x 64 x 4 bytes
    assert "params 131.90K  KV cache 32.77KB\n" in capsys.readouterr().out
    main(["analyze", "costmodel.zoo:llama_tiny"])
    assert "KV cache" not in capsys.readouterr().out


# --- Mixtral: grouped-query attention, so the cache holds n_kv_heads heads --------------------

KV, EXPERTS, TOP_K, MOE_HIDDEN = 2 * 16, 4, 2, 96  # mixtral_tiny: 2 KV heads of 16; experts
BF16 = 2  # bytes: the zoo's Mixtral is bfloat16, its cache too


def test_mixtral_decode_step_is_linear_in_the_cache_length() -> None:
    analysis = analyze(mixtral_tiny_decode, free={"past": 20})
    total = analysis.total()
    # by hand, one token: q and o (d^2 each), k and v (d kv each), QK^T and AV over S + 1 keys
    # for all 4 query heads, the router, top 2 experts' gate, up and down, the LM head
    per_layer = (2 * DIM**2 + 2 * DIM * KV + 2 * (S + 1) * DIM + DIM * EXPERTS
                 + 3 * TOP_K * DIM * MOE_HIDDEN)
    assert sympy.expand(total.madds - (LAYERS * per_layer + DIM * VOCAB)) == 0
    # the cache: keys and values of S + 1 positions of 2 heads of 16, bfloat16, every layer
    assert sympy.expand(kv_cache_bytes(analysis) - LAYERS * 2 * (S + 1) * KV * BF16) == 0
    # each attention reads q (d) and the cached keys and values (S + 1 positions of 2 heads)
    attentions = [o for o in analysis.ops() if o["op_type"] == "Attention"]
    assert len(attentions) == LAYERS
    for op in attentions:
        assert sympy.expand(op["cost"].mac - (2 * DIM + 2 * (S + 1) * KV)) == 0
    assert analysis.guards == [S + 1 <= 32]
    for past in (1, 7, 31):
        model = _meta(mixtral_tiny_decode, past)
        concrete = analyze(model)
        assert total.subs({S: past}) == concrete.total(), past
        assert kv_cache_bytes(concrete) == model.kv_cache_bytes()  # torch's nbytes


def test_mixtral_prefill_costs_the_plain_forward_plus_writing_the_cache() -> None:
    prefill = analyze(mixtral_tiny_prefill, free={"tokens": 16})
    total = prefill.total()
    plain = analyze(_meta(mixtral_tiny), input_shape=[(1, "tokens")], dtype=torch.int64,
                    hints={"tokens": 16}).total()
    assert total.madds == plain.madds
    # each layer copies T new keys and T new values into the cache: read + write, 32 wide
    assert sympy.expand(total.mac - plain.mac - LAYERS * 2 * 2 * T * KV) == 0
    assert sympy.expand(kv_cache_bytes(prefill) - LAYERS * 2 * T * KV * BF16) == 0
    for tokens in (3, 32):
        free, concrete = total.subs({T: tokens}), analyze(_meta(mixtral_tiny_prefill,
                                                                 tokens)).total()
        assert free.replace(mac=0, mac_bytes=0) == concrete.replace(mac=0, mac_bytes=0)
        # the expected expert weights read: exact with a free size, rounded to whole elements
        # in each of the 2 x LAYERS grouped matmuls when concrete
        assert abs(free.mac - concrete.mac) <= LAYERS
        assert abs(free.mac_bytes - concrete.mac_bytes) <= LAYERS * BF16


def test_mixtral_cached_steps_reproduce_the_full_forward_on_real_tensors() -> None:
    """torch runs the model in float32 on the CPU (its grouped matmul takes any float there): a
    prefill of 20 tokens and 12 decode steps give the logits of one forward pass over the 32
    tokens, routing included, from a cache of 2 key/value heads."""
    torch.manual_seed(0)
    sizes = {"vocab_size": VOCAB, "dim": DIM, "n_layers": LAYERS, "n_heads": 4, "n_kv_heads": 2,
             "hidden_dim": MOE_HIDDEN, "n_experts": EXPERTS, "top_k": TOP_K, "seq_len": 32,
             "dtype": torch.float32}
    cached, full = MixtralDecoder(**sizes, cache_len=32), MixtralDecoder(**sizes)
    full.load_state_dict(cached.state_dict())
    assert cached.layers[0].attention.cache.k.shape == (1, 2, 32, 16)
    tokens = torch.randint(0, VOCAB, (1, 32))
    with torch.no_grad():
        expected = full(tokens)
        got = [cached(tokens[:, :20], start=0)]
        got += [cached(tokens[:, i:i + 1], start=i) for i in range(20, 32)]
    torch.testing.assert_close(torch.cat(got, dim=1), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="exceed the cache's 16"):
        mixtral_tiny_prefill(16)(tokens[:, :2], start=15)
    assert torch.get_default_dtype() == torch.float32  # building in bfloat16 restores it


def test_cli_reports_mixtral_kv_cache(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", "costmodel.zoo:mixtral_tiny_decode", "--free", "past=20"])
    assert code == 0 and "KV cache   256*past + 256 bytes" in capsys.readouterr().out
