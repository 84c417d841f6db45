"""The optimizer's update step, per parameter element: SGD with momentum, Adam and AdamW.

Each update is counted as the element-wise arithmetic torch's optimizers run, one FLOP per
elementary operation (the rule of elementwise.py), with the learning rate and the bias
corrections folded into per-tensor scalars (computed once per tensor, not counted):

- SGD with momentum: buf = momentum * buf + g (2), p = p - lr * buf (2): 4 FLOPs; it reads p,
  g and buf and writes buf and p: MAC 5 per element. One state per element (the momentum
  buffer).
- Adam: m = lerp(m, g, 1 - beta1) (3), v = beta2 * v + (1 - beta2) * g * g (4),
  denom = sqrt(v) / sqrt(bias correction 2) + eps (3), p = p - step * m / denom (3): 13 FLOPs;
  reads p, g, m, v, writes p, m, v: MAC 7. Two states per element (exp_avg, exp_avg_sq) and a
  one-element float32 `step` tensor per parameter tensor.
- AdamW: Adam plus the decoupled weight decay p = p * (1 - lr * wd) (1): 14 FLOPs, MAC 7.

No Mult-Adds: nothing is contracted. Weight decay in SGD and Adam (off by default) and Nesterov
momentum are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from costmodel.cost import Cost, Num


@dataclass(frozen=True)
class OptimizerRule:
    """Per element of the parameters: FLOPs, MAC, and optimizer states (in the parameters'
    dtype); plus the float32 scalar states each parameter tensor carries."""

    flops: int
    mac: int
    states: int
    scalar_states: int = 0


OPTIMIZERS: dict[str, OptimizerRule] = {
    "sgd": OptimizerRule(flops=4, mac=5, states=1),
    "adam": OptimizerRule(flops=13, mac=7, states=2, scalar_states=1),
    "adamw": OptimizerRule(flops=14, mac=7, states=2, scalar_states=1),
}
SCALAR_STATE_BYTES = 4  # torch keeps Adam's `step` as a float32 tensor of one element


def optimizer_step(name: str, elements: Num, itemsize: int = 4) -> Cost:
    """Cost of one update of `elements` parameter elements."""
    rule = OPTIMIZERS[name]
    return Cost(flops=rule.flops * elements, mac=rule.mac * elements,
                mac_bytes=rule.mac * elements * itemsize)


def optimizer_state_bytes(name: str, elements: Num, tensors: int, itemsize: int = 4) -> Num:
    """Bytes of the optimizer's state for `elements` parameter elements in `tensors` tensors."""
    rule = OPTIMIZERS[name]
    return rule.states * elements * itemsize + rule.scalar_states * tensors * SCALAR_STATE_BYTES
