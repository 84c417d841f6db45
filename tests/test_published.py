"""The analyzer against the papers' and the reference implementations' published figures."""

from __future__ import annotations

import pytest
import torch

from costmodel import analyze
from costmodel.report import by_op_type
from costmodel.zoo import MODELS


def _analyze(name: str):
    with torch.device("meta"):
        model = MODELS[name]()
    return analyze(model)


def test_mobilenet_v1_table() -> None:
    """MobileNetV1 1.0-224: 568,740,352 Mult-Adds and the paper's shares, weights only."""
    analysis = _analyze("mobilenet_v1")
    assert analysis.total().madds == 568_740_352
    assert analysis.total(weights_only=True).params == 4_209_088
    rows = {r["op_type"]: r for r in by_op_type(analysis, weights_only=True)}
    expected = {"Conv 1x1": (94.86, 74.59), "Conv DW 3x3": (3.06, 1.06),
                "Conv 3x3": (1.91, 0.02), "Fully Connected": (0.18, 24.33)}
    for op_type, (madds_pct, params_pct) in expected.items():
        assert round(rows[op_type]["madds_pct"], 2) == madds_pct, op_type
        assert round(rows[op_type]["params_pct"], 2) == params_pct, op_type
    assert list(rows)[:4] == list(expected)


PUBLISHED = [
    # name, Mult-Adds, relative tolerance, exact parameter count or None
    ("shufflenet_v2_x0_5", 40.5e6, 0.005, 1_366_792),
    ("shufflenet_v2_x1_0", 144.9e6, 0.005, 2_278_604),
    ("shufflenet_v2_x1_5", 295.8e6, 0.005, 3_503_624),
    ("shufflenet_v2_x2_0", 583.3e6, 0.005, 7_393_996),
    ("mobilenet_v2", 300e6, 0.01, 3_504_872),
    ("resnet50", 4.089e9, 0.001, 25_557_032),
    ("resnet18", 1.814e9, 0.001, 11_689_512),
    ("shufflenet_v1_g1", 143e6, 0.015, None),
    ("shufflenet_v1_g2", 140e6, 0.015, None),
    ("shufflenet_v1_g3", 137e6, 0.015, None),
    ("shufflenet_v1_g4", 133e6, 0.015, None),
    ("shufflenet_v1_g8", 137e6, 0.015, None),
]


@pytest.mark.parametrize(("name", "madds", "rel", "params"), PUBLISHED,
                         ids=[p[0] for p in PUBLISHED])
def test_published_totals(name: str, madds: float, rel: float, params: int | None) -> None:
    analysis = _analyze(name)
    total = analysis.total()
    assert total.madds == pytest.approx(madds, rel=rel)
    if params is not None:
        assert total.params == params
    assert not analysis.unsupported()


@pytest.mark.parametrize("name", [n for n in MODELS if n not in ("llama_7b", "mixtral_8x7b")])
def test_every_zoo_model_is_fully_supported(name: str) -> None:
    """No op of a reference model may fall through as unsupported (a silent zero elsewhere)."""
    analysis = _analyze(name)
    assert not analysis.unsupported()
    assert analysis.total().madds > 0 and analysis.total().mac > 0


def test_params_match_module_parameters() -> None:
    """Every parameter the forward reads is counted once: equals the module's own count."""
    with torch.device("meta"):
        model = MODELS["resnet18"]()
    assert analyze(model).total().params == sum(p.numel() for p in model.parameters())
