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
from costmodel.capture.symdims import plain, symbol
from costmodel.cli import main
from costmodel.report import by_op_type
from costmodel.zoo import MODELS

H, W, L = symbol("H"), symbol("W"), symbol("L")
TINY = str(Path(__file__).parent / "models" / "tiny_net.py")

IMAGE_MODELS = [n for n in MODELS if not n.startswith(("llama", "mixtral"))]
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


def test_free_dims_are_the_canonical_positive_symbols() -> None:
    assert symbol("H") == sympy.Symbol("H", positive=True)
    total = analyze(StridedConv(), input_shape=(1, 3, "H", "W")).total()
    assert sympy.Symbol("H", positive=True) in total.madds.free_symbols


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
    got = {r["op_type"]: [sympy.sympify(r[f]).subs(at) for f in fields]
           for r in by_op_type(symbolic)}
    assert got == expected
    # and node by node: the same ops, in the same order, at the same cost
    assert [(op["name"], op["module"], op["cost"].subs(at)) for op in symbolic.ops()] == [
        (op["name"], op["module"], op["cost"]) for op in concrete.ops()]


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


@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x1_0", "mobilenet_v2"])
def test_tables_show_strided_sizes_as_ceilings_of_equal_value(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The table writes floor((H - 1)/k) + 1 as ceiling(H/k): the same number at every integer
    size, odd ones included, for each total the header prints."""
    code = main(["analyze", f"costmodel.zoo:{name}", "--symbolic", "H,W"])
    out = capsys.readouterr().out
    report, note = out.split("Sizes are integers")
    assert code == 0 and "floor" not in report and "ceiling(H/32)*ceiling(W/32)" in report
    assert note.startswith(", so a strided size floor((H - 1)/k) + 1 is shown as ceiling(H/k)")
    shown = dict(line.split(None, 1) for line in out.splitlines()[1:4])  # Mult-Adds .. MAC
    traced = analyze(_meta(name), input_shape=(1, 3, "H", "W")).total()
    for field, label in [("madds", "Mult-Adds"), ("flops", "FLOPs"), ("mac", "MAC")]:
        formula = sympy.sympify(shown[label], locals={"H": H, "W": W})
        for h, w in [(224, 224), (97, 131), (33, 250), (64, 65)]:
            assert formula.subs({H: h, W: w}) == getattr(traced, field).subs({H: h, W: w})


def test_cli_bad_symbolic_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", f"{TINY}:TinyNet", "--symbolic", "H,3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--symbolic" in err


# --- freed channel widths -------------------------------------------------------------------

C, B = symbol("C"), symbol("B")


class Residual(nn.Module):
    """a (3->8) -> bn -> relu, + b(8->8) as a residual, depthwise 3x3, then c (8->8, 1x1)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.c = nn.Conv2d(8, 8, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.a(x)))
        y = y + self.b(y)
        return self.c(self.dw(y))


def test_a_freed_width_drags_its_ties_and_nothing_else() -> None:
    analysis = analyze(Residual(), input_shape=(1, 3, 16, 16), widths={"b": "C"})
    shapes = {op["module"]: op["input_shapes"] for op in analysis.ops()
              if op["target"] == "aten.convolution.default"}
    # the add ties b's output to a's; bn and relu follow a; the depthwise conv keeps
    # groups == channels; c reads C channels but its 8 outputs are 8 by coincidence only
    assert shapes == {"a": [(1, 3, 16, 16), (C, 3, 3, 3)], "b": [(1, C, 16, 16), (C, C, 3, 3)],
                      "dw": [(1, C, 16, 16), (C, 1, 3, 3)], "c": [(1, C, 16, 16), (8, C, 1, 1)]}
    total = analysis.total()
    # params by hand: a 27C, bn 2C, b 9C^2, dw 9C, c 8C
    assert total.params == 9 * C**2 + 46 * C
    # Mult-Adds by hand, 256 pixels: a 27C, b 9C^2, dw 9C, c 8C per pixel
    assert sympy.expand(total.madds - 256 * (9 * C**2 + 44 * C)) == 0
    concrete = analyze(Residual(), input_shape=(1, 3, 16, 16)).total()
    assert total.subs({C: 8}) == concrete


def test_widths_and_free_input_sizes_together() -> None:
    total = analyze(Residual(), input_shape=(1, 3, "H", "W"), widths={"b": "C"}).total()
    assert sympy.expand(total.madds - H * W * (9 * C**2 + 44 * C)) == 0


def test_resnet18_stage_width_ties_through_the_residual_adds() -> None:
    model = _meta("resnet18")
    analysis = analyze(model, input_shape=(1, 3, 224, 224), widths={"stages.0.0.bn2": "C"})
    # every add of stage 1 ties the blocks' outputs together and to the stem; the blocks'
    # inner width (64) is equal only by coincidence and stays. By hand: stem conv 147C + bn 2C,
    # per block conv1 in 576C, conv2 out 576C, bn2 2C (x2), next stage's conv1 and shortcut
    # read C: 1152C + 128C; so 3737C on top of the rest.
    assert analysis.total().params == 3737 * C + (11_689_512 - 3737 * 64)
    concrete = analyze(model, input_shape=(1, 3, 224, 224)).total()
    assert analysis.total().subs({C: 64}) == concrete


def _stage_mac(analysis: object) -> object:
    from costmodel.report import by_module

    return next(r["mac"] for r in by_module(analysis) if r["module"] == "stages.0")


def test_shufflenet_v2_stage_width_matches_models_built_at_that_width(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from costmodel.zoo import shufflenet

    # a stage of width X has branches of width X / 2 everywhere: free them all as B
    branches = {"stages.0.0.left.1": "B", "stages.0.*.right.0": "B", "stages.0.*.right.2": "B"}
    symbolic = analyze(_meta("shufflenet_v2_x1_0"), input_shape=(1, 3, 224, 224),
                       widths=branches)
    stage_mac, total = _stage_mac(symbolic), symbolic.total()
    assert stage_mac.free_symbols == {B} and sympy.degree(stage_mac, B) == 2
    for width in (96, 116, 160):
        channels = (24, width, 232, 464, 1024)
        monkeypatch.setitem(shufflenet.SHUFFLENET_V2_CHANNELS, 9.0, channels)
        with torch.device("meta"):
            built = shufflenet.ShuffleNetV2(scale=9.0)
        concrete = analyze(built, input_shape=(1, 3, 224, 224))
        at = {B: width // 2}
        assert all(bool(g.subs(at)) for g in symbolic.guards)
        assert stage_mac.subs(at) == _stage_mac(concrete), width
        assert total.subs(at) == concrete.total(), width


def test_width_errors_name_the_module() -> None:
    with pytest.raises(CostModelError, match="no module matches 'nope'"):
        analyze(Residual(), input_shape=(1, 3, 8, 8), widths={"nope": "C"})

    class Concat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.left, self.right = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 6, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat((self.left(x), self.right(x)), dim=1)

    # a concat's width is the sum of its parts: there is no one size to free
    with pytest.raises(CostModelError, match=r"width of \(model\) is left.weight\[0\] \+ "
                       r"right.weight\[0\], made of several parameter sizes"):
        analyze(Concat(), input_shape=(1, 3, 8, 8), widths={"": "C"})
    # freeing one part is fine: the concat's share follows
    total = analyze(Concat(), input_shape=(1, 3, 8, 8), widths={"left": "C"}).total()
    assert total.params == 4 * C + 24  # left: 3C weights + C biases; right: 18 + 6


class Head(nn.Module):
    """conv (3->8) -> channels last -> LayerNorm(8) -> Linear(8->5), or a literal reshape."""

    def __init__(self, literal_view: bool = False) -> None:
        super().__init__()
        self.literal_view = literal_view
        self.conv = nn.Conv2d(3, 8, 1, bias=False)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.literal_view:
            y = y.view(1, 8, 16)  # a literal 8: the width is fixed here
        return self.fc(self.norm(y.flatten(2).transpose(1, 2)))


def test_layer_norm_and_linear_follow_a_freed_width() -> None:
    analysis = analyze(Head(), input_shape=(1, 3, 4, 4), widths={"conv": "C"})
    # by hand: conv 3C, LayerNorm scale and shift 2C, Linear 5C weights + 5 biases
    assert analysis.total().params == 10 * C + 5
    norm = next(op for op in analysis.ops() if op["module"] == "norm")
    assert norm["input_shapes"][0] == (1, 16, C)


def test_a_width_a_literal_size_fixes_is_an_error() -> None:
    with pytest.raises(CostModelError, match="every size of conv's output 1x8x4x4 is fixed"):
        analyze(Head(literal_view=True), input_shape=(1, 3, 4, 4), widths={"conv": "C"})


def test_cli_cannot_plot_a_symbolic_analysis(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", f"{TINY}:TinyNet", "--symbolic", "H,W", "--plot",
                 str(tmp_path / "types.png")])
    assert code == 2 and "cannot plot a symbolic analysis" in capsys.readouterr().err


def test_symbolic_totals_lambdify_with_numpy() -> None:
    import numpy as np

    total = analyze(_meta("shufflenet_v2_x0_5"), input_shape=(1, 3, "H", "W")).total()
    mac = sympy.lambdify((H, W), total.mac, "numpy")
    hs, ws = np.array([224, 97, 192]), np.array([224, 131, 160])
    expected = [int(total.mac.subs({H: int(h), W: int(w)})) for h, w in zip(hs, ws)]
    assert mac(hs, ws).tolist() == expected


def test_cli_width_frees_a_module_width(capsys: pytest.CaptureFixture[str]) -> None:
    """--width conv=C on TinyNet (conv 3->8 3x3 padding 1 on 16x16, then a linear 8->4): the
    conv's output channels and the linear's input features become C."""
    code = main(["analyze", f"{TINY}:TinyNet", "--width", "conv=C", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    C = symbol("C")
    madds = sympy.sympify(report["totals"]["madds"], locals={"C": C})
    assert sympy.expand(madds - (16 * 16 * 27 * C + 4 * C)) == 0
    # the BN's running mean and variance follow the width: 2C elements, a formula in JSON
    assert sympy.sympify(report["buffers"], locals={"C": C}) == 2 * C
    assert main(["analyze", f"{TINY}:TinyNet", "--width", "conv"]) == 2
    assert "expected MODULE=NAME" in capsys.readouterr().err


def test_width_traces_run_without_the_fake_tensor_cache_and_axioms(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The two ShapeEnv and fake-mode aids that made freeing a ShuffleNetV2 width 2 to 3 times
    slower stay off during a width trace (a guard on the cause, not a timing): no fake-tensor
    cache lookups, no guard implications kept as axioms; the results are checked above."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from costmodel.capture.symdims import SymbolicShapes

    axioms = []
    check = SymbolicShapes.check

    def spy(self: SymbolicShapes) -> None:
        axioms.append(len(self.env.axioms))
        check(self)

    monkeypatch.setattr(SymbolicShapes, "check", spy)
    FakeTensorMode.cache_clear()
    analysis = analyze(Residual(), input_shape=(1, 3, 16, 16), widths={"b": "C"})
    info = FakeTensorMode.cache_info()
    assert analysis.total().params == 9 * C**2 + 46 * C
    assert (info.hits, info.misses) == (0, 0) and axioms == [0]
