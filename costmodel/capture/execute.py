"""What `--execute` needs besides the tracer: a model that can run on the CPU, and real inputs.

Shape-only tracing stops where control flow depends on tensor values (`if x.sum() > 0`,
`nonzero`, `.item()`, a router's `torch.where(idx == i)` expert loop). Executing the model once
on real CPU tensors records the same graph for one concrete input instead, so its costs hold
for that input: random floats (standard normal), integer ids drawn uniformly from the range the
model declares (its first `nn.Embedding`'s `num_embeddings`, else a `vocab_size` attribute of
the model or its `config`), zeros where it declares none, and boolean masks all True. Inputs
are seeded (0), and so is a model built for the run, so two runs agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from costmodel.capture.spec import InputSpec
from costmodel.errors import CostModelError

SEED = 0

#: Text of errors that mean the model wanted a GPU.
_GPU_ONLY = ("'CUDA' backend", "not compiled with CUDA", "NVIDIA driver", "CUDA error",
             "no CUDA GPUs", "cuda")


def check_runs_on_cpu(model: nn.Module, where: str) -> None:
    """A one-line error unless every parameter and buffer holds real data on the CPU."""
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        kind = tensor.device.type
        if kind == "cpu":
            continue
        if kind == "meta":
            raise CostModelError(
                f"{where}: --execute needs real weights, but {name} is on the meta device: "
                f"build the model on the CPU")
        raise CostModelError(
            f"{where}: needs a GPU ({name} is on {tensor.device}); --execute runs the model "
            f"on the CPU only")


def integer_range(model: nn.Module) -> int | None:
    """The exclusive upper bound the model declares for integer inputs (token ids), or None."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            return int(module.num_embeddings)
    for owner in (model, getattr(model, "config", None)):
        size = getattr(owner, "vocab_size", None)
        if isinstance(size, int) and size > 0:
            return size
    return None


def real_inputs(model: nn.Module, specs: Sequence[InputSpec], where: str
                ) -> tuple[list[torch.Tensor], str]:
    """Seeded CPU tensors of the given shapes and dtypes, and a note saying what they are."""
    if any(isinstance(d, str) for spec in specs for d in spec.shape):
        raise CostModelError(f"{where}: --execute runs on one concrete input: give every size "
                             f"as a number (no free dimensions)")
    generator = torch.Generator().manual_seed(SEED)
    high = integer_range(model)
    inputs, kinds = [], {}
    for spec in specs:
        shape, dtype = tuple(int(d) for d in spec.shape), spec.dtype
        if dtype == torch.bool:
            inputs.append(torch.ones(shape, dtype=dtype))
            kinds["bool"] = "masks all True"
        elif dtype.is_floating_point or dtype.is_complex:
            inputs.append(torch.randn(shape, dtype=dtype, generator=generator))
            kinds["float"] = "floats standard normal"
        elif high is not None:
            inputs.append(torch.randint(0, high, shape, dtype=dtype, generator=generator))
            kinds["int"] = f"integers uniform in [0, {high})"
        else:
            inputs.append(torch.zeros(shape, dtype=dtype))
            kinds["int"] = "integers all zero"
    note = (f"Executed on one random input (--execute, seed {SEED}: {', '.join(kinds.values())})"
            f": the costs of value-dependent parts (routing, branches) are for that input.")
    return inputs, note


def explain_failure(exc: BaseException, where: str) -> str:
    """One line for a model that failed while executing on the CPU."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    kind = type(exc).__name__
    if "'CPU' backend" in text:
        op = text.split("'")[1] if text.count("'") >= 2 else "an op"
        return f"{where}: needs a GPU: {op} has no CPU kernel; --execute runs on the CPU only"
    if any(marker in text for marker in _GPU_ONLY):
        return f"{where}: needs a GPU ({kind}: {text}); --execute runs on the CPU only"
    return f"{where}: failed while executing on the CPU: {kind}: {text}"
