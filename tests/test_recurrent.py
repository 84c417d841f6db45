"""Recurrent layers and bilinear: Mult-Adds derived by hand from the weight shapes."""

from __future__ import annotations

import pytest
from torch import nn

from costmodel import Analysis, analyze


def _op(analysis: Analysis, op_type: str) -> dict:
    (op,) = [o for o in analysis.ops() if o["op_type"] == op_type]
    return op


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_two_layers(bidirectional: bool) -> None:
    t, b, i, h = 5, 3, 8, 16
    dirs = 2 if bidirectional else 1
    lstm = nn.LSTM(i, h, num_layers=2, bidirectional=bidirectional)
    op = _op(analyze(lstm, input_shape=(t, b, i)), "Recurrent")
    per_step = dirs * (4 * h * i + 4 * h * h) + dirs * (4 * h * dirs * h + 4 * h * h)
    assert op["cost"].madds == t * b * per_step
    biases = 2 * dirs * 2 * 4 * h
    gates = 2 * dirs * h * 18  # 3 sigmoids (4), 2 tanh, 3 products, 1 add per hidden unit
    assert op["cost"].flops == 2 * t * b * per_step + t * b * (biases + gates)


def test_gru_batch_first_and_projected_lstm() -> None:
    gru = _op(analyze(nn.GRU(8, 16, batch_first=True), input_shape=(3, 5, 8)), "Recurrent")
    assert gru["cost"].madds == 15 * (3 * 16 * 8 + 3 * 16 * 16)
    lstm = _op(analyze(nn.LSTM(8, 16, proj_size=4), input_shape=(5, 3, 8)), "Recurrent")
    assert lstm["cost"].madds == 15 * (64 * 8 + 64 * 4 + 4 * 16)


def test_bilinear() -> None:
    op = _op(analyze(nn.Bilinear(4, 5, 6), input_shape=[(7, 4), (7, 5)]), "Fully Connected")
    assert op["cost"].madds == 7 * 6 * 4 * (5 + 1)
    assert op["cost"].mac == 7 * 4 + 7 * 5 + 6 * 4 * 5 + 6 + 7 * 6
