"""The worker that times whole models in a fresh process (costmodel.latency.isolated)."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from costmodel.errors import CostModelError
from costmodel.latency.isolated import Spec, Worker
from costmodel.latency.protocol import SMOKE

SMOKE_SOURCES = "costmodel.latency.sources:smoke_sources"


def test_a_worker_times_its_models_on_every_request() -> None:
    with Worker(Spec(SMOKE_SOURCES, ["smoke"], protocol=asdict(SMOKE))) as worker:
        first, second = worker.time(), worker.time()
    assert len(first) == len(second) == 1
    assert all(seconds > 0 and isinstance(ok, bool) for seconds, ok in first + second)


@pytest.mark.parametrize(("registry", "names", "says"), [
    (SMOKE_SOURCES, ["no-such-model"], "no model 'no-such-model'"),
    ("costmodel.no_such_module:SOURCES", ["smoke"], "ModuleNotFoundError"),
])
def test_a_worker_that_cannot_build_fails_in_one_line(registry: str, names: list[str],
                                                      says: str) -> None:
    with pytest.raises(CostModelError) as caught:
        Worker(Spec(registry, names, protocol=asdict(SMOKE)))
    message = str(caught.value)
    assert says in message and registry in message and "\n" not in message
