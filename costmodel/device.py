"""Where a measurement runs: the one check of a device name that every measuring command shares
(bench, calibrate, validate), so that a GPU that is not there is an error, never a silent CPU
run."""

from __future__ import annotations

import torch

from costmodel.errors import CostModelError


def resolve_device(name: str, what: str = "--device") -> torch.device:
    """"cpu" or "cuda", the latter only where torch sees a GPU; `what` names where the name came
    from, for the message."""
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise CostModelError(f"{what} cuda: no CUDA GPU is available to torch "
                                 f"{torch.__version__} on this machine")
        return torch.device("cuda")
    raise CostModelError(f"{what} {name}: unknown device (expected cpu or cuda)")
