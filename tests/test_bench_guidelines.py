"""`costmodel bench guidelines`: the smoke test runs the quick suite end to end and checks the
structure of what it reports (four experiments, every row measured, tau computed), never a
speed; bad input is one line and exit 2."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from costmodel.bench.throughput import (
    QUICK,
    Timing,
    _settled,
    machine,
    measure,
    measure_together,
)
from costmodel.cli import main
from costmodel.zoo.guidelines import variants


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_quick_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figure = tmp_path / "bench.png"
    code, out, err = run(capsys, "bench", "guidelines", "--quick", "--format", "json",
                         "--plot", str(figure), "--quiet")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["schema"] == "costmodel-bench-guidelines/1" and report["quick"] is True
    m = report["machine"]
    assert m["torch"] == torch.__version__ and m["threads"] == 1 and m["cpu"]
    assert [e["experiment"] for e in report["experiments"]] == ["G1", "G2", "G3", "G4"]
    expected = {v.name: v for v in variants(quick=True)}
    rows = [r for e in report["experiments"] for r in e["rows"]]
    assert sorted(r["name"] for r in rows) == sorted(expected)
    for e in report["experiments"]:
        assert -1 <= e["tau_paper"] <= 1 and -1 <= e["tau_mac"] <= 1
        assert e["platform"] == ("ARM" if e["experiment"] == "G1" else "CPU")
        for r in e["rows"]:
            speed = r["images_per_s"]
            assert speed["repeats"] >= QUICK.min_repeats
            assert 0 < speed["min"] <= speed["median"] <= speed["max"]
            assert r["madds"] > 0 and r["mac"] > 0
            assert r["input_shape"] == list(expected[r["name"]].input_shape)
    assert figure.stat().st_size > 10_000


def test_table_has_the_papers_columns(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "bench", "guidelines", "--quick", "--quiet", "--threads", "1")
    assert code == 0
    assert out.startswith("costmodel bench guidelines --quick:") and "1 threads" in out
    assert out.count("Kendall's tau") == 4 and "Paper ARM /s" in out and "Paper CPU /s" in out
    assert "MACs" not in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--device", "tpu"], "--device tpu: unknown device"),
    (["--threads", "0"], "--threads 0: must be at least 1"),
])
def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                               message: str) -> None:
    code, out, err = run(capsys, "bench", "guidelines", "--quick", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "bench", "guidelines", "--device", "cuda")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--device cuda: no CUDA GPU" in err


def test_measure_repeats_until_settled() -> None:
    model = torch.nn.Conv2d(4, 4, 1)
    timing = measure(model, torch.randn(2, 4, 8, 8), QUICK)
    assert QUICK.min_repeats <= len(timing.seconds) <= QUICK.max_repeats
    assert timing.batch == 2
    assert timing.worst <= timing.median <= timing.best
    assert math.isclose(timing.median, 2 / statistics.median(timing.seconds))


def test_settled_and_timing_by_hand() -> None:
    assert _settled([1.0, 1.0, 1.0, 1.01], 0.02)
    assert not _settled([1.0, 1.0, 2.0, 2.0], 0.02)
    t = Timing((0.5, 0.25, 1.0), batch=1, stable=True)
    assert (t.worst, t.median, t.best) == (1.0, 2.0, 4.0)


def test_models_measured_together_get_a_timing_each() -> None:
    cases = [(torch.nn.Conv2d(4, c, 1), torch.randn(1, 4, 8, 8)) for c in (4, 8, 16)]
    timings = measure_together(cases, QUICK)
    assert len(timings) == 3
    assert len({len(t.seconds) for t in timings}) == 1   # one sample of each per round


def test_machine_records_what_the_figures_need() -> None:
    info = machine(torch.device("cpu"))
    assert {"cpu", "threads", "torch", "device"} <= set(info)
