"""Free input dimensions: costs as sympy expressions in named sizes, proven against hand-derived
formulas and against concrete analyses of the same model at several sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sympy
import torch
from torch import nn

from costmodel import CostModelError, analyze
from costmodel.cli import main
from costmodel.report import by_op_type
from costmodel.symdims import plain, symbol
from costmodel.zoo import MODELS

H, W, L = symbol("H"), symbol("W"), symbol("L")
TINY = str(Path(__file__).parent / "models" / "tiny_net.py")

IMAGE_MODELS = [n for n in MODELS if not n.startswith("llama")]
#: sizes every image model of the zoo accepts (all use global pooling): square, landscape, odd
SIZES = [(224, 224), (192, 160), (97, 131)]


def _meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return MODELS[name]()


class StridedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def test_strided_conv_keeps_the_floor_exact() -> None:
    analysis = analyze(StridedConv(), input_shape=(1, 3, "H", "W"))
    ho, wo = sympy.floor((H - 1) / 2) + 1, sympy.floor((W - 1) / 2) + 1
    out = 8 * ho * wo
    total = analysis.total()
    # by hand: 8 filters of 3x3x3 taps per output pixel; conv reads x and w, writes y;
    # relu reads y and writes it (1 FLOP per element)
    assert sympy.expand(total.madds - out * 27) == 0
    assert sympy.expand(total.flops - (2 * out * 27 + out)) == 0
    assert sympy.expand(total.mac - (3 * H * W + 216 + out + 2 * out)) == 0
    assert sympy.expand(total.mac_bytes - 4 * total.mac) == 0
    assert total.params == 216
    assert total.madds.free_symbols == {H, W}
    # the floor is real: at an odd size the count is not the smooth H*W/4
    assert total.madds.subs({H: 7, W: 9}) == 27 * 8 * 4 * 5


def test_a_name_used_twice_is_one_dimension() -> None:
    class MatMul(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a @ b

    m, k, n = symbol("M"), symbol("K"), symbol("N")
    total = analyze(MatMul(), input_shape=[("M", "K"), ("K", "N")]).total()
    assert total.madds == m * k * n
    assert sympy.expand(total.mac - (m * k + k * n + m * n)) == 0


def test_a_size_the_model_fixes_is_an_error() -> None:
    with pytest.raises(CostModelError, match="fixes W to 16"):
        analyze(nn.Linear(16, 4), input_shape=(1, 3, 8, "W"), hints={"W": 16})


def test_torch_functions_become_plain_sympy() -> None:
    import torch.utils._sympy.functions as tf

    s0 = sympy.Symbol("s0", integer=True, positive=True)
    expr = tf.FloorDiv(s0 - 1, 2) + tf.CeilDiv(s0, 4) + tf.PythonMod(s0, 3)
    out = plain(expr, {s0: H})
    # torch writes CeilDiv(s0, 4) as FloorDiv(s0 + 3, 4) when it builds it
    assert out == sympy.floor((H - 1) / 2) + sympy.floor((H + 3) / 4) + sympy.Mod(H, 3)
    torch_functions = (tf.FloorDiv, tf.PythonMod)
    assert not any(isinstance(f, torch_functions) for f in sympy.preorder_traversal(out))
    assert out.subs(H, 10) == 4 + 3 + 1


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_zoo_totals_in_h_w_match_concrete_analyses(name: str) -> None:
    model = _meta(name)
    symbolic = analyze(model, input_shape=(1, 3, "H", "W"))
    total = symbolic.total()
    assert total.madds.free_symbols == {H, W}
    for h, w in SIZES:
        at = {H: h, W: w}
        assert all(bool(g.subs(at)) for g in symbolic.guards), (h, w)
        concrete = analyze(model, input_shape=(1, 3, h, w))
        assert total.subs(at) == concrete.total(), (h, w)
    concrete_rows = by_op_type(concrete)
    fields = ("count", "madds", "flops", "params", "mac")
    expected = {r["op_type"]: [r[f] for f in fields] for r in concrete_rows}
    got = {r["op_type"]: [sympy.sympify(r[f]).subs({H: h, W: w}) for f in fields]
           for r in by_op_type(symbolic)}
    assert got == expected


def test_llama_sequence_length_is_free() -> None:
    model = _meta("llama_tiny")
    symbolic = analyze(model, input_shape=[(1, "L")], dtype=torch.int64, hints={"L": 16})
    total = symbolic.total()
    assert total.madds.free_symbols == {L}
    assert symbolic.guards == [L <= 32]  # the model refuses sequences beyond its tables
    for n in (7, 20, 32):
        concrete = analyze(model, input_shape=[(1, n)], dtype=torch.int64).total()
        assert total.subs({L: n}) == concrete


def test_cli_symbolic_names_the_spatial_dims(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", f"{TINY}:TinyNet", "--symbolic", "H,W", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["inputs"] == [{"shape": [1, 3, "H", "W"], "dtype": "float32"}]
    madds = sympy.sympify(report["totals"]["madds"], locals={"H": H, "W": W})
    # conv 3->8 3x3 padding 1 keeps H x W; linear 8->4
    assert madds == 8 * 3 * 9 * H * W + 32
    assert isinstance(report["totals"]["params"], int)
    assert all(isinstance(n["madds"], (int, str)) for n in report["nodes"])


def test_cli_names_in_input_shape_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", f"{TINY}:TinyNet", "--input-shape", "1,3,H,20"])
    out = capsys.readouterr().out
    assert code == 0
    assert "[1x3xHx20 float32]" in out
    assert "4320*H + 32" in out  # 8*3*9*20*H + 8*4 Mult-Adds


def test_cli_bad_symbolic_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", f"{TINY}:TinyNet", "--symbolic", "H,3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--symbolic" in err
