"""A factory's size arguments as symbols (--free) and repeated blocks folded into L x block
(--free-layers): the formulas against hand-derived closed forms and against concrete analyses of
models built at those sizes."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import sympy
import torch
from torch import nn

from costmodel import CostModelError, analyze
from costmodel.capture.freeargs import parse_free
from costmodel.capture.symdims import symbol
from costmodel.cli import main
from costmodel.views.fold import fold_layers
from costmodel.zoo import LlamaDecoder

LLM = str(Path(__file__).parent / "models" / "tiny_llm.py")
D, NH, HID, T, L = (symbol(n) for n in ("dim", "n_heads", "hidden_dim", "T", "L"))
TINY = {"vocab_size": 256, "seq_len": 32}


def llama_madds(layers: int, d: int, hidden: int, vocab: int, s: int) -> int:
    """By hand: q, k, v, o projections; gate, up, down; QK^T and AV; the LM head."""
    return layers * (4 * s * d * d + 3 * s * d * hidden + 2 * s * s * d) + s * d * vocab


def _concrete(layers: int, d: int, heads: int, hidden: int, tokens: int) -> object:
    with torch.device("meta"):
        model = LlamaDecoder(dim=d, n_layers=layers, n_heads=heads, hidden_dim=hidden, **TINY)
    return analyze(model, input_shape=[(1, tokens)], dtype=torch.int64)


def test_llama_width_heads_hidden_and_length_free_match_models_built_at_those_sizes() -> None:
    factory = partial(LlamaDecoder, n_layers=2, **TINY)
    analysis = analyze(factory, free={"dim": 64, "n_heads": 4, "hidden_dim": 172},
                       input_shape=[(1, "T")], dtype=torch.int64, hints={"T": 16})
    total = analysis.total()
    # the head split dim // n_heads keeps n_heads as a symbol, and its floor is gone: the
    # model checks dim % n_heads == 0 (a guard), so the Mult-Adds are a polynomial
    assert sympy.expand(total.madds - llama_madds(2, D, HID, 256, T)) == 0
    assert total.params == 2 * (4 * D**2 + 3 * D * HID + 2 * D) + 2 * 256 * D + D
    assert total.flops.free_symbols == {D, NH, HID, T}  # softmax: per head and position
    for d, heads, hidden, tokens in [(96, 6, 100, 20), (48, 2, 64, 7), (128, 8, 256, 32)]:
        at = {D: d, NH: heads, HID: hidden, T: tokens}
        assert all(bool(g.subs(at)) for g in analysis.guards), at
        assert total.subs(at) == _concrete(2, d, heads, hidden, tokens).total(), at


def test_folded_layers_match_models_built_with_that_many() -> None:
    factory = partial(LlamaDecoder, n_layers=2, hidden_dim=172, **TINY)
    folded = fold_layers(analyze(factory, free={"dim": 64, "n_heads": 4},
                                 input_shape=[(1, "T")], dtype=torch.int64, hints={"T": 16}))
    total = folded.total()
    assert sympy.expand(total.madds - llama_madds(L, D, 172, 256, T)) == 0
    # one block's ops are kept, under layers.*; its parameters count L times
    assert {op["module"].split(".")[0] for op in folded.ops()} >= {"layers", "output"}
    assert not any(op["module"].startswith("layers.1") for op in folded.ops())
    assert folded.graph.graph["parameters"]["layers.*.attention.wq.weight"].shape == (L, D, D)
    assert any("2 identical TransformerBlock blocks of layers folded" in n
               for n in folded.notes)
    for layers, d, heads, tokens in [(1, 64, 4, 16), (3, 32, 2, 9), (5, 64, 8, 32)]:
        at = {L: layers, D: d, NH: heads, T: tokens}
        assert total.subs(at) == _concrete(layers, d, heads, 172, tokens).total(), at


def test_llama_7b_polynomial_at_the_7b_point() -> None:
    """LLaMA-7B's whole cost in T, dim, n_heads and L from a 2-block trace, evaluated at the
    released model's sizes: the closed form and the released parameter count."""
    factory = partial(LlamaDecoder, n_layers=2)
    analysis = analyze(factory, free={"dim": 4096, "n_heads": 32}, input_shape=[(1, "T")],
                       dtype=torch.int64, hints={"T": 2048})
    total = fold_layers(analysis).total()
    assert sympy.expand(total.madds - llama_madds(L, D, 11008, 32000, T)) == 0
    at = {D: 4096, NH: 32, T: 2048, L: 32}
    assert total.madds.subs(at) == llama_madds(32, 4096, 11008, 32000, 2048)
    assert total.params.subs(at) == 6_738_415_616


def test_fold_refuses_blocks_that_differ() -> None:
    class Uneven(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.blocks[2](self.blocks[1](self.blocks[0](x)))

    analysis = analyze(Uneven(), input_shape=(1, 8))
    with pytest.raises(CostModelError, match="no repeated identical blocks"):
        fold_layers(analysis)
    with pytest.raises(CostModelError, match=r"cannot fold blocks: .* differs from block 0"):
        fold_layers(analysis, container="blocks")


def test_cli_free_arguments_of_a_model_file(capsys: pytest.CaptureFixture[str]) -> None:
    """tiny_llm.py: 16 tokens, per block qkv 48 d^2, out 16 d^2, up and down 64 d^2 each and
    attention 2 x 16^2 d; a head of 128 classes: 16 x 128 d. By hand."""
    code = main(["analyze", f"{LLM}:build", "--free", "d_model=64,n_heads=4",
                 "--free-layers", "n_layers=L", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    names = {n: symbol(n) for n in ("d_model", "n_heads", "L")}
    madds = sympy.sympify(report["totals"]["madds"], locals=names)
    d, layers = names["d_model"], names["L"]
    assert sympy.expand(madds - (layers * (192 * d**2 + 512 * d) + 2048 * d)) == 0
    params = sympy.sympify(report["totals"]["params"], locals=names)
    assert sympy.expand(params - (12 * layers * d**2 + 256 * d)) == 0


def test_cli_free_layers_folds_the_model_as_built(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", f"{LLM}:build", "--free-layers", "L", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    # d_model 64: 192 * 64^2 + 512 * 64 per block, 2048 * 64 for the head
    assert code == 0
    assert report["totals"]["madds"] == "819200*L + 131072"


@pytest.mark.parametrize(("args", "message"), [
    (["--free", "nosuch=3"], "--free nosuch: the factory has no argument 'nosuch' "
                             "(its arguments: d_model, n_heads, n_layers)"),
    (["--free", "d_model=4k"], "bad --free 'd_model=4k': '4k' is not an integer"),
    (["--free", "d_model=64,n_layers=2"], "the model fixes n_layers to 2, so it cannot be free"),
    (["--free-layers", "3"], "bad --free-layers '3'"),
])
def test_cli_bad_free_is_one_line(args: list[str], message: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", f"{LLM}:build", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_free_needs_a_factory() -> None:
    with pytest.raises(CostModelError, match="--free needs a factory or a class"):
        analyze(nn.Linear(4, 4), free={"in_features": 4}, input_shape=(1, 4))
    assert parse_free(["dim=64,n_heads", "hidden_dim=9"]) == {"dim": 64, "n_heads": None,
                                                             "hidden_dim": 9}


def test_free_arguments_combine_with_a_freed_width() -> None:
    """LLaMA built with `dim` free, and the feed-forward's hidden width freed as H: the
    Mult-Adds are the closed form in both, L (4 T d^2 + 2 T^2 d + 3 T d H) + T d vocab at
    T = 32 tokens and 2 layers, and the formula gives a model built concretely at other sizes."""
    from functools import partial

    from costmodel.zoo import LlamaDecoder

    sizes = {"vocab_size": 256, "n_layers": 2, "n_heads": 4, "seq_len": 32}
    analysis = analyze(partial(LlamaDecoder, hidden_dim=172, **sizes), free={"dim": 64},
                       widths={"layers.*.feed_forward.w1": "H"}, input_shape=[(1, 32)],
                       dtype=torch.int64)
    d, h = symbol("dim"), symbol("H")
    tokens, layers, vocab = 32, 2, 256
    closed = (layers * (4 * tokens * d**2 + 2 * tokens**2 * d + 3 * tokens * d * h)
              + tokens * d * vocab)
    total = analysis.total()
    assert sympy.expand(total.madds - closed) == 0
    assert sympy.expand(total.params - (layers * (4 * d**2 + 3 * d * h + 2 * d)
                                        + 2 * vocab * d + d)) == 0
    with torch.device("meta"):
        other = LlamaDecoder(dim=96, hidden_dim=200, **sizes)
    concrete = analyze(other, input_shape=(1, 32), dtype=torch.int64).total()
    assert total.subs({d: 96, h: 200}) == concrete


def test_mixtral_free_dim_reads_as_a_polynomial() -> None:
    """Mixtral with `dim` free: every division by the head count is exact by the guards, so
    no floor or ceiling is left in any total, and the formula gives a model built at 96."""
    from costmodel.zoo import MixtralDecoder

    sizes = {"vocab_size": 256, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
             "hidden_dim": 96, "n_experts": 4, "top_k": 2, "seq_len": 16}
    analysis = analyze(partial(MixtralDecoder, **sizes), free={"dim": 64},
                       input_shape=[(1, 16)], dtype=torch.int64)
    total = analysis.total()
    for value in total.as_dict().values():
        assert not sympy.sympify(value).has(sympy.floor, sympy.ceiling, sympy.Mod)
    with torch.device("meta"):
        concrete = analyze(MixtralDecoder(dim=96, **sizes), input_shape=(1, 16),
                           dtype=torch.int64).total()
    free = total.subs({D: 96})
    assert free.replace(mac=0, mac_bytes=0) == concrete.replace(mac=0, mac_bytes=0)
    assert abs(free.mac - concrete.mac) <= 2 * 2  # expected experts read: rounded when concrete
