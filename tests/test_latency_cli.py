"""calibrate, predict and validate on the command line: the smoke calibration, the profile
directory, reports, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from costmodel.cli import main
from costmodel.latency.classes import CLASSES
from costmodel.latency.predict import PYTHON_TYPES
from costmodel.latency.profile import machine_profile_name, read_profile

TINY = str(Path(__file__).parent / "models" / "tiny_net.py") + ":TinyNet"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "profiles"
    monkeypatch.setenv("COSTMODEL_PROFILE_DIR", str(folder))
    return folder


def test_smoke_calibration_writes_a_complete_measured_profile(smoke_profile: Path) -> None:
    profile = read_profile(smoke_profile)
    assert profile.measured and profile.threads == 1 and profile.device == "cpu"
    assert profile.torch == torch.__version__
    assert set(profile.efficiency) == set(CLASSES)
    assert profile.peak("float32") > 0 and profile.memory_bandwidth > 0
    assert profile.overhead_s > 0 and profile.bandwidth_curve


def test_calibrate_saves_under_the_machine_name(capsys: pytest.CaptureFixture[str],
                                                profiles: Path) -> None:
    code, out, err = run(capsys, "calibrate", "--smoke", "--threads", "1", "-q")
    assert code == 0
    saved = profiles / f"{machine_profile_name('cpu', 1)}.json"
    assert saved.is_file() and str(saved) in err
    assert "Compute eff." in out
    # predict with no --profile now finds it, and does not calibrate again
    code, out, err = run(capsys, "predict", TINY, "--threads", "1", "--format", "json")
    assert code == 0 and "calibrating" not in err
    assert json.loads(out)["profile"] == machine_profile_name("cpu", 1)


def test_predict_calibrates_first_when_the_machine_has_no_profile(
        capsys: pytest.CaptureFixture[str], profiles: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import costmodel.latency.calibrate as calibrate_module

    monkeypatch.setattr(calibrate_module, "DEFAULT_MODE", "smoke")
    code, out, err = run(capsys, "predict", TINY, "--threads", "1", "--format", "json")
    assert code == 0 and "calibrating this machine" in err
    name = machine_profile_name("cpu", 1)
    assert (profiles / f"{name}.json").is_file()
    assert json.loads(out)["profile"] == name


def test_predict_formats(capsys: pytest.CaptureFixture[str], smoke_profile: Path,
                         tmp_path: Path) -> None:
    png = tmp_path / "roof.png"
    code, out, _ = run(capsys, "predict", TINY, "--profile", str(smoke_profile),
                       "--plot", str(png))
    assert code == 0 and png.stat().st_size > 0
    assert "Conv 3x3" in out and "Top" in out and "predicted" in out
    code, out, _ = run(capsys, "predict", TINY, "--profile", "nvidia-a100-sxm4-80gb",
                       "--by", "node", "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("name,op_type")
    code, out, _ = run(capsys, "predict", TINY, "--profile", "nvidia-a100-sxm4-80gb",
                       "--by", "module", "--format", "json")
    report = json.loads(out)
    assert report["schema"] == "costmodel-predict/1" and report["device"] == "cuda"
    assert {r["module"] for r in report["by_module"]} >= {"conv", "bn", "fc"}


def test_validate_runs_the_model(capsys: pytest.CaptureFixture[str],
                                 smoke_profile: Path) -> None:
    code, out, _ = run(capsys, "validate", TINY, "--profile", str(smoke_profile),
                       "--repeat", "2", "--warmup", "1", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["schema"] == "costmodel-validate/1"
    runs = report["totals"]["measured_runs_s"]
    assert report["totals"]["measured_s"] == min(runs) > 0  # two rounds of one run each
    # --repeat 2: two rounds of one run; the protocol re-measures (up to twice) a model whose
    # rounds disagree, whether or not the new rounds then settle
    retries = report["protocol"]["retries"]
    assert len(runs) in {2 * (1 + k) for k in range(retries + 1)}
    assert report["settled"] or len(runs) == 2 * (1 + retries)
    assert report["protocol"]["rounds"] == 2 and report["environment"]["torch"]
    types = {r["op_type"]: r for r in report["by_op_type"]}
    assert {"Conv 3x3", "Norm", "Activation", "Fully Connected"} <= set(types)
    kernels = [r for t, r in types.items() if t not in PYTHON_TYPES]
    assert all(r["measured_s"] > 0 for r in kernels)  # every op matched a profiled one
    assert all(types[t]["measured_s"] == 0 for t in PYTHON_TYPES if t in types)


def test_validate_on_the_cpu_clock_times_every_op(capsys: pytest.CaptureFixture[str],
                                                   smoke_profile: Path) -> None:
    code, out, _ = run(capsys, "validate", TINY, "--profile", str(smoke_profile),
                       "--repeat", "2", "--warmup", "1", "--clock", "cpu", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["clock"] == "cpu"
    assert all(r["measured_s"] > 0 for r in report["by_op_type"]
               if r["op_type"] not in PYTHON_TYPES)
    # each op is timed once (not also the ops it calls): the sum stays near the whole run's
    assert report["totals"]["measured_ops_s"] <= 3 * max(report["totals"]["measured_runs_s"])


@pytest.mark.parametrize(("argv", "message"), [
    (["calibrate", "--device", "tpu"], "--device tpu: unknown device"),
    (["calibrate", "--threads", "0"], "--threads must be at least 1"),
    (["calibrate", "--threads", "two"], "invalid int value"),
    (["predict", TINY, "--profile", "nope"], "unknown profile 'nope'"),
    (["predict", TINY, "--profile", "missing.json"], "missing.json: cannot read profile"),
    (["predict", TINY, "--profile", "nvidia-h100-sxm", "--threads", "-1"],
     "--threads must be at least 1"),
    (["predict", TINY, "--profile", "snapdragon-855-cpu", "--threads", "2"],
     "measured with 4 threads"),
    (["validate", TINY, "--profile", "nvidia-h100-sxm", "--clock", "cpu"], "cuda"),
])
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str],
                                          message: str) -> None:
    code, _, err = run_error(capsys, argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def run_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    try:
        return run(capsys, *argv)
    except SystemExit as exc:  # argparse's own errors
        out, err = capsys.readouterr()
        return int(exc.code or 0), out, err


def test_cuda_without_a_gpu(capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, "calibrate", "--device", "cuda")
    assert code == 2 and err.strip() == ("costmodel: error: --device cuda: no CUDA GPU is "
                                         f"available to torch {torch.__version__} on this "
                                         "machine")


def test_malformed_profile_names_the_key(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path, smoke_profile: Path) -> None:
    data = json.loads(smoke_profile.read_text())
    del data["efficiency"]["attention"]["memory"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    code, _, err = run(capsys, "predict", TINY, "--profile", str(bad))
    assert code == 2
    assert err.strip() == f"costmodel: error: {bad}: missing key 'efficiency.attention.memory'"
