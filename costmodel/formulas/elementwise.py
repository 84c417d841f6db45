"""Element-wise arithmetic, activations and softmax.

FLOPs per output element follow one rule: every elementary operation counts 1, and so does every
math-library call (exp, log, tanh, erf, sqrt...). The per-op counts below are that rule applied
to each op's defining formula. Mult-Adds are 0. MAC reads every tensor argument at its own size
(a broadcast operand is read once, not per use) and writes the output; an in-place op reads and
writes its first argument.
"""

from __future__ import annotations

from costmodel.cost import Cost, Num
from costmodel.formulas.registry import OpCall, register

#: FLOPs per output element of each activation, from its definition.
ACTIVATION_FLOPS: dict[str, int] = {
    "relu": 1,  # max(x, 0)
    "threshold": 1,  # x > t ? x : v
    "relu6": 2,  # min(max(x, 0), 6)
    "hardtanh": 2,  # clamp(x, lo, hi)
    "leaky_relu": 2,  # x > 0 ? x : a * x
    "prelu": 2,  # as leaky_relu, with a learned slope
    "_prelu_kernel": 2,
    "rrelu": 2,
    "rrelu_with_noise": 2,
    "elu": 4,  # x > 0 ? x : a * (exp(x) - 1)
    "celu": 5,  # x > 0 ? x : a * (exp(x / a) - 1)
    "selu": 5,  # s * elu(x)
    "gelu": 5,  # x * 0.5 * (1 + erf(x / sqrt(2))); 9 with approximate='tanh'
    "sigmoid": 4,  # 1 / (1 + exp(-x))
    "silu": 5,  # x * sigmoid(x)
    "tanh": 1,
    "hardswish": 5,  # x * clamp(x + 3, 0, 6) / 6
    "hardsigmoid": 4,  # clamp(x + 3, 0, 6) / 6
    "softplus": 3,  # log(1 + exp(x))
    "mish": 5,  # x * tanh(softplus(x))
    "log_sigmoid": 5,  # -softplus(-x)
    "log_sigmoid_forward": 5,
    "softsign": 3,  # x / (1 + |x|)
    "tanhshrink": 2,  # x - tanh(x)
    "hardshrink": 2,
    "softshrink": 3,
    "glu": 5,  # a * sigmoid(b), per output element
}
GELU_TANH_FLOPS = 9  # 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))

#: FLOPs per output element of element-wise arithmetic; ops not listed here count 1.
ARITHMETIC_FLOPS: dict[str, int] = {"clamp": 2, "lerp": 3, "addcmul": 3, "addcdiv": 3,
                                    "hypot": 3, "logit": 3, "xlogy": 2}
ARITHMETIC_ONE = [
    "add", "sub", "mul", "div", "rsub", "true_divide", "floor_divide", "neg", "abs", "sign",
    "sgn", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt",
    "reciprocal", "square", "pow", "float_power", "sin", "cos", "tan", "asin", "acos", "atan",
    "atan2", "sinh", "cosh", "asinh", "acosh", "atanh", "erf", "erfc", "erfinv", "floor", "ceil",
    "round", "trunc", "frac", "fmod", "remainder", "clamp_min", "clamp_max", "minimum",
    "maximum", "fmin", "fmax", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or",
    "logical_xor", "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not",
    "bitwise_left_shift", "bitwise_right_shift", "where", "masked_fill", "isnan", "isinf",
    "isfinite", "nan_to_num", "sigmoid_backward", "copysign", "heaviside", "signbit",
]

#: FLOPs per element of softmax and log-softmax: max, subtract, exp, sum, divide (or log).
SOFTMAX_FLOPS = 5


def elementwise(elements: Num, flops_per_element: Num = 1, operands: int = 1,
                itemsize: int = 4) -> Cost:
    """Cost of an element-wise op over `elements` outputs reading `operands` same-size inputs."""
    mac = elements * (operands + 1)
    return Cost(flops=elements * flops_per_element, mac=mac, mac_bytes=mac * itemsize)


def _with_inplace(names: list[str]) -> list[str]:
    return names + [n + "_" for n in names]


def _per_element(flops: int):
    def formula(call: OpCall) -> Cost:  # FLOPs by `elementwise`; MAC of the real operands
        return Cost(flops=elementwise(call.out.numel, flops).flops) + call.io()

    return formula


for _name, _flops in ACTIVATION_FLOPS.items():
    if _name != "gelu":
        register(_with_inplace([_name]), "Activation")(_per_element(_flops))


@register(_with_inplace(["gelu"]), "Activation")
def _gelu(call: OpCall) -> Cost:
    tanh = call.kwargs.get("approximate", call.arg(1, "approximate", "none")) == "tanh"
    per = GELU_TANH_FLOPS if tanh else ACTIVATION_FLOPS["gelu"]
    return Cost(flops=call.out.numel * per) + call.io()


for _name in ARITHMETIC_ONE:
    register(_with_inplace([_name]), "Elementwise")(_per_element(1))
for _name, _flops in ARITHMETIC_FLOPS.items():
    register(_with_inplace([_name]), "Elementwise")(_per_element(_flops))

register(["softmax", "_softmax", "_safe_softmax", "log_softmax", "_log_softmax"],
         "Activation")(_per_element(SOFTMAX_FLOPS))
