"""Whole models timed in a fresh Python process (a worker), not in the process that asks.

A process's history slows the models it times. On this project's 2-core machine three zoo
models timed by the process that had just run one or two `--quick` calibrations took 9-26%
longer than in a process started at that moment (mobilenet_v2 16.7 ms fresh, 18.2 to 21.9 ms
in the older one, op-dense models the most); `gc.collect` and `gc.freeze` did not bring it
back. Calibration timed its source models in its own process, after thousands of kernel
configurations: over three calibrations a benchmark ran in one process, the sources' times
grew with each (mobilenet_v2 16.3, 19.2, 20.0 ms), while a user's model is timed in a
process of its own.

So the source models (calibrate) and the held-out models (benchmarks/bench_latency.py) are
built and timed by a worker: `python -m costmodel.latency.isolated`, started once, which
builds the models of a registry, answers each `time` request with one pass of the
measurement protocol over all of them, and idles between requests (waiting on its input, it
takes no CPU from the process that times kernels meanwhile). Requests and replies are JSON
lines; whatever the models print goes to the worker's stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from costmodel.errors import CostModelError


@dataclass(frozen=True)
class Spec:
    """What the worker builds and how it times: `registry` names a dict (or a function
    returning one) of loaders, `name -> (device -> LoadedModel)`, as "module:attribute";
    `path` is put first on the worker's sys.path (a benchmark script's folder)."""

    registry: str
    names: list[str]
    device: str = "cpu"
    threads: int | None = None
    clock: str = "wall"
    protocol: dict[str, Any] = field(default_factory=dict)
    path: str | None = None


class Worker:
    """A fresh process holding the spec's models; `time()` is one pass over them all."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (open while it runs)
        self._proc = subprocess.Popen([sys.executable, "-m", "costmodel.latency.isolated"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, text=True)
        self._send(asdict(spec))
        self._receive("ready")

    def time(self) -> list[tuple[float, bool]]:
        """(seconds, settled) per model, in the spec's order."""
        self._send("time")
        reply = self._receive("seconds")
        return list(zip(reply["seconds"], reply["settled"]))

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._send("quit")
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
        self._log.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, message: Any) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            self._fail("it exited")

    def _receive(self, key: str) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        try:
            reply = json.loads(line) if line.strip() else {}
        except ValueError:
            reply = {}
        if "error" in reply:
            self._fail(reply["error"])
        if key not in reply:
            self._fail("it exited" if not line else f"it answered {line.strip()[:200]!r}")
        return reply

    def _fail(self, why: str) -> None:
        self._log.seek(0)
        tail = [x for x in self._log.read().splitlines() if x.strip()][-1:]
        self._proc.kill()
        self._log.close()
        raise CostModelError(f"timing {self.spec.registry} in a fresh process failed: {why}"
                             + (f" ({tail[0].strip()[:300]})" if tail else ""))


def _registry(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("path"):
        sys.path.insert(0, spec["path"])
    module, _, attribute = spec["registry"].partition(":")
    found = getattr(importlib.import_module(module), attribute)
    return found() if callable(found) else found


def serve(replies: IO[str], requests: IO[str]) -> None:
    """The worker's loop: build, then answer `time` requests until `quit` or end of input."""
    import warnings

    import torch

    from costmodel.latency.protocol import Protocol, time_interleaved
    from costmodel.latency.runnable import random_inputs
    from costmodel.latency.timing import CLOCKS, torch_threads

    warnings.filterwarnings("ignore")
    spec = json.loads(requests.readline())
    loaders = _registry(spec)
    missing = [n for n in spec["names"] if n not in loaders]
    if missing:
        raise CostModelError(f"{spec['registry']} has no model {missing[0]!r}")
    device, protocol = spec["device"], Protocol(**spec["protocol"])
    calls = []
    for name in spec["names"]:
        loaded = loaders[name](device)
        model, inputs = loaded.model.eval(), random_inputs(loaded.inputs, device)
        calls.append(lambda m=model, x=inputs: m(*x))
    torch.set_flush_denormal(True)
    reply(replies, {"ready": spec["names"]})
    for line in requests:
        if json.loads(line) != "time":
            break
        with torch_threads(spec["threads"]), torch.inference_mode():
            timed = time_interleaved(calls, protocol, device, CLOCKS[spec["clock"]])
        reply(replies, {"seconds": [t.seconds for t in timed],
                        "settled": [t.settled(protocol.threshold) for t in timed]})


def reply(replies: IO[str], message: dict[str, Any]) -> None:
    replies.write(json.dumps(message) + "\n")
    replies.flush()


def main() -> int:
    replies = os.fdopen(os.dup(1), "w")  # the replies' own channel ...
    os.dup2(2, 1)  # ... and whatever the models print goes to stderr
    sys.stdout = sys.stderr
    try:
        serve(replies, sys.stdin)
    except Exception as exc:  # one line back to the parent, which raises it
        reply(replies, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
