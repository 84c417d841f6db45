"""The measurement protocol on synthetic timings: its statistic, its instability detection
and re-measure, and what it records about the machine."""

from __future__ import annotations

import pytest
import torch

from costmodel.latency.measure import protocol_for
from costmodel.latency.protocol import (
    Protocol,
    Timed,
    environment,
    least_of_round_medians,
    settled,
    spread,
    time_interleaved,
    unstable,
)


def test_least_of_round_medians_ignores_bursts_of_other_load() -> None:
    # round 1: one interrupted sample; round 2: load all round long; round 3: clean
    rounds = [[1.0, 9.0, 1.1], [2.0, 2.1, 2.2], [0.98, 1.02, 5.0]]
    assert least_of_round_medians(rounds) == 1.02
    with pytest.raises(ValueError):
        least_of_round_medians([])


def test_settled_needs_the_two_least_round_medians_to_agree() -> None:
    assert spread([1.0, 1.04, 3.0]) == pytest.approx(0.04)
    assert settled([1.0, 1.04, 3.0], 0.05)  # the slow round does not matter
    assert not settled([1.0, 1.2, 1.3], 0.05)
    assert not settled([1.0], 0.05)  # one round is never seen twice


class FakeClock:
    """A clock that advances only when a fake op 'runs'."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def op(clock: FakeClock, durations: list[float]) -> object:
    """Each call advances the clock by the next duration (the last one repeats)."""
    state = {"i": 0}

    def fn() -> None:
        clock.now += durations[min(state["i"], len(durations) - 1)]
        state["i"] += 1
    return fn


PLAN = Protocol(warmup=1, warmup_s=0.0, sample_s=0.0, per_round=3, rounds=3, threshold=0.05,
                retries=2)


def test_interleaved_rounds_find_the_undisturbed_time_and_settle() -> None:
    clock = FakeClock()
    # 1 warm-up, then round 1 disturbed (3x), rounds 2 and 3 clean
    steady = op(clock, [1.0] + [3.0] * 3 + [1.0] * 100)
    noisy = op(clock, [2.0] + [2.0, 7.0, 2.0] * 50)
    timed = time_interleaved([steady, noisy], PLAN, clock=clock)
    assert timed[0].seconds == 1.0 and timed[1].seconds == 2.0
    assert all(t.settled(PLAN.threshold) and t.retried == 0 for t in timed)
    assert [len(r) for r in timed[0].rounds] == [3, 3, 3]


def test_a_benchmark_that_never_settles_is_remeasured_then_reported() -> None:
    clock = FakeClock()
    drifting = op(clock, [1.0 * 1.3 ** i for i in range(200)])  # every call 30% slower
    steady = op(clock, [1.0] * 200)
    timed = time_interleaved([drifting, steady], PLAN, clock=clock)
    assert timed[0].retried == PLAN.retries  # re-measured as often as allowed
    assert len(timed[0].rounds) == PLAN.rounds * (1 + PLAN.retries)
    assert len(timed[1].rounds) == PLAN.rounds  # the settled one is not re-measured
    assert unstable(["drifting", "steady"], timed, PLAN.threshold) == [
        f"drifting ({100 * timed[0].spread:.0f}%)"]


def test_timed_reads_its_rounds() -> None:
    t = Timed(rounds=[[3.0, 1.0, 2.0], [1.5, 1.5, 1.6]])
    assert t.medians == [2.0, 1.5] and t.seconds == 1.5
    assert t.samples == [3.0, 1.0, 2.0, 1.5, 1.5, 1.6]


def test_validate_protocol_keeps_repeat_and_warmup() -> None:
    assert protocol_for(2, 1).per_round * protocol_for(2, 1).rounds == 2
    assert protocol_for(20, 5).warmup == 5 and protocol_for(20, 5).rounds == 7


def test_environment_records_cpu_threads_torch_and_load() -> None:
    env = environment("cpu")
    assert env["torch"] == torch.__version__ and env["threads"] == torch.get_num_threads()
    assert env["cpu"] and "load_average" in env
