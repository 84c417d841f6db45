"""Element-wise arithmetic, activations and softmax.

FLOPs per output element follow one rule: every elementary operation counts 1, and so does every
math-library call (exp, log, tanh, erf, sqrt...). The per-op counts below are that rule applied
to each op's defining formula. Mult-Adds are 0. MAC reads every tensor argument at its own size
(a broadcast operand is read once, not per use) and writes the output; an in-place op reads and
writes its first argument.

Complex numbers count real multiplies and adds: a complex multiply is 4 multiplies and 2 adds
(6), a complex add 2, a complex number times a real one 2; the table `COMPLEX_FLOPS` has the
rest, and an op on complex numbers that it does not list counts its real count once per real
component (2). `polar` builds r (cos t + i sin t): 2 library calls and 2 multiplies. MAC counts
a complex element as one element, and `mac_bytes` at the complex dtype's size (8 bytes for
complex64). `view_as_complex` and `view_as_real` are views (movement.py).
"""

from __future__ import annotations

from costmodel.cost import Cost, Num
from costmodel.formulas.registry import OpCall, TensorMeta, register

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

#: FLOPs per element on complex numbers, in real operations: (every operand complex, a real
#: operand among them). Unary ops have one entry (their operand is complex).
COMPLEX_FLOPS: dict[str, tuple[int, int]] = {
    "mul": (6, 2),  # (a + bi)(c + di) = (ac - bd) + (ad + bc)i: 4 mul, 2 add; times real: 2
    "div": (11, 2),  # ((ac + bd) + (bc - ad)i) / (c^2 + d^2): 6 mul, 3 add, 2 div; by real: 2
    "true_divide": (11, 2),
    "add": (2, 1),  # (a + c) + (b + d)i; plus a real: only the real part, 1
    "sub": (2, 1),
    "rsub": (2, 1),
    "neg": (2, 2),
    "abs": (4, 4),  # sqrt(a^2 + b^2): 2 mul, 1 add, sqrt
    "reciprocal": (5, 5),  # (a - bi) / (a^2 + b^2): 2 mul, 1 add, 2 div
    "square": (5, 5),  # (a^2 - b^2) + 2ab i: 3 mul, 1 sub, 1 doubling
    "exp": (5, 5),  # e^a (cos b + i sin b): 3 library calls, 2 mul
    "sgn": (6, 6),  # z / |z|: abs 4, 2 div
}
#: polar(r, t) = r cos t + i r sin t: cos, sin, 2 multiplies
POLAR_FLOPS = 4


def _is_complex(value: object) -> bool:
    return isinstance(value, complex) or (isinstance(value, TensorMeta)
                                          and value.dtype.is_complex)


def complex_flops(name: str, operands: list[object], real_flops: Num) -> Num | None:
    """FLOPs per element of op `name` where a complex number is among `operands`, else None."""
    complex_operands = [_is_complex(o) for o in operands]
    if not any(complex_operands):
        return None
    base = name[:-1] if name.endswith("_") else name
    if base in COMPLEX_FLOPS:
        both, mixed = COMPLEX_FLOPS[base]
        return both if all(complex_operands) else mixed
    return 2 * real_flops  # once per real component


def elementwise(elements: Num, flops_per_element: Num = 1, operands: int = 1,
                itemsize: int = 4) -> Cost:
    """Cost of an element-wise op over `elements` outputs reading `operands` same-size inputs."""
    mac = elements * (operands + 1)
    return Cost(flops=elements * flops_per_element, mac=mac, mac_bytes=mac * itemsize)


def _with_inplace(names: list[str]) -> list[str]:
    return names + [n + "_" for n in names]


def _per_element(flops: int):
    def formula(call: OpCall) -> Cost:  # FLOPs by `elementwise`; MAC of the real operands
        name = call.target.overloadpacket.__name__
        per = complex_flops(name, [a for a in call.args[:2] if not isinstance(a, (list, tuple))],
                            flops)
        return Cost(flops=elementwise(call.out.numel, flops if per is None else per).flops) \
            + call.io()

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


@register("polar", "Elementwise")
def _polar(call: OpCall) -> Cost:
    """r (cos t + i sin t): 2 library calls and 2 multiplies per element."""
    return Cost(flops=call.out.numel * POLAR_FLOPS) + call.io()


@register("angle", "Elementwise")
def _angle(call: OpCall) -> Cost:
    """atan2(b, a) of a complex number (1); of a real one, a sign test (1)."""
    return Cost(flops=call.out.numel) + call.io()


@register(["complex", "conj_physical", "conj_physical_"], "Elementwise")
def _complex_parts(call: OpCall) -> Cost:
    """`complex(re, im)` interleaves two real tensors (a copy: 0 FLOPs); `conj_physical`
    negates each imaginary part (1)."""
    flops = 0 if call.target.overloadpacket.__name__ == "complex" else call.out.numel
    return Cost(flops=flops) + call.io()
