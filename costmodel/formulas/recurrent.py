"""Recurrent layers (LSTM, GRU, Elman RNN) as one op each, and the bilinear layer.

RNN Mult-Adds: at every time step each weight matrix (input-hidden, hidden-hidden and an LSTM's
projection) multiplies one vector per batch row: steps * batch * sum of the 2-D weights' sizes,
over all layers and directions. FLOPs: 2 * Mult-Adds, the bias adds, and the gate arithmetic
per hidden unit per step (LSTM 18: three sigmoids, two tanh, three products, one add; GRU 14:
two sigmoids, one tanh, three products, two adds; Elman 1). MAC reads the input, the initial
states and every weight once, and writes the outputs.
Bilinear: y_k = x1^T W_k x2 + b_k, computed as W_k x2 then a dot with x1:
rows * out * in1 * (in2 + 1) Mult-Adds.
"""

from __future__ import annotations

from costmodel.cost import Cost, div
from costmodel.formulas.elementwise import ACTIVATION_FLOPS
from costmodel.formulas.registry import OpCall, register

_SIGMOID, _TANH = ACTIVATION_FLOPS["sigmoid"], ACTIVATION_FLOPS["tanh"]
GATE_FLOPS = {"lstm": 3 * _SIGMOID + 2 * _TANH + 3 + 1, "gru": 2 * _SIGMOID + _TANH + 3 + 2,
              "rnn_tanh": _TANH, "rnn_relu": ACTIVATION_FLOPS["relu"]}


GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


@register(list(GATE_FLOPS), "Recurrent")
def _rnn(call: OpCall) -> Cost:
    name = call.target.overloadpacket.__name__
    at = 1 if call.target._overloadname == "data" else 0  # .data has batch_sizes first
    x, weights = call.args[0], call.args[2 + at]
    layers, bidirectional = call.args[4 + at], call.args[7 + at]
    steps_rows = x.shape[0] if at else div(x.numel, x.shape[-1])  # time * batch
    matrices = sum((w.numel for w in weights if w.ndim == 2), 0)
    biases = sum((w.numel for w in weights if w.ndim == 1), 0)
    # weights come in one group per layer and direction, each led by its (gates * H, in) matrix
    group = len(weights) // (layers * (2 if bidirectional else 1))
    hidden_units = sum((div(w.shape[0], GATES[name]) for w in weights[::group]), 0)
    madds = steps_rows * matrices
    flops = 2 * madds + steps_rows * (biases + hidden_units * GATE_FLOPS[name])
    return Cost(madds=madds, flops=flops) + call.io()


@register("bilinear", "Fully Connected")
def _bilinear(call: OpCall) -> Cost:
    x1, w = call.args[0], call.args[2]
    out, in1, in2 = w.shape
    rows = div(x1.numel, in1)
    madds = rows * out * in1 * (in2 + 1)
    bias = call.arg(3, "bias") is not None
    return Cost(madds=madds, flops=2 * madds + (rows * out if bias else 0)) + call.io()
