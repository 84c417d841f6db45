"""Where a measurement runs, for every measuring command (bench, calibrate, validate): the one
check of a device name, so that a GPU that is not there is an error, never a silent CPU run,
and the processor's name that the figures are recorded with."""

from __future__ import annotations

import platform

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


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith(("model name", "Hardware", "Processor")):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
