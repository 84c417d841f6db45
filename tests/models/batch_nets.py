"""Model files for the batch tests: factories that succeed, raise, hang or kill their process.

`COUNT_FILE`, when set in the environment, gets one line per factory call: the tests read it
to prove that --resume builds no model twice.
"""

import os
import signal
import time

from torch import nn

input_shape = (1, 4)


def _count(name: str) -> None:
    path = os.environ.get("COSTMODEL_TEST_COUNT_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(name + "\n")


def small() -> nn.Module:
    """Linear 4 -> 3: 12 Mult-Adds."""
    _count("small")
    return nn.Linear(4, 3)


def wide() -> nn.Module:
    """Linear 4 -> 5 then 5 -> 2: 30 Mult-Adds."""
    _count("wide")
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))


def broken() -> nn.Module:
    _count("broken")
    raise ZeroDivisionError("a factory that raises")


def hangs() -> nn.Module:
    _count("hangs")
    time.sleep(600)
    return nn.Linear(4, 3)


def exits() -> nn.Module:
    """Ends its process at once, as a crash in native code would."""
    _count("exits")
    os._exit(3)


def killed() -> nn.Module:
    """SIGKILL, as the kernel's out-of-memory killer sends it."""
    _count("killed")
    os.kill(os.getpid(), signal.SIGKILL)
    return nn.Linear(4, 3)
