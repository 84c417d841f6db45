"""The command line: formats, targets, input resolution, and one-line errors with exit code 2."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from costmodel.cli import main

MODELS = Path(__file__).parent / "models"
TINY = str(MODELS / "tiny_net.py")
# conv 3->8 3x3 on 16x16, then linear 8->4
TINY_MADDS = 16 * 16 * 8 * 3 * 9 + 8 * 4


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_follows_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "analyze", f"{TINY}:TinyNet", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["schema"] == "costmodel/1"
    assert report["inputs"] == [{"shape": [1, 3, 16, 16], "dtype": "float32"}]
    assert set(report["totals"]) == {"madds", "flops", "mac", "mac_bytes", "params"}
    assert report["totals"]["madds"] == TINY_MADDS
    assert report["totals"]["params"] == 8 * 3 * 9 + 2 * 8 + 8 * 4 + 4
    row_keys = {"op_type", "count", "madds", "madds_pct", "params", "params_pct", "mac",
                "mac_pct"}
    assert all(row_keys <= set(r) for r in report["by_op_type"])
    node_keys = {"name", "target", "op_type", "module", "input_shapes", "output_shape",
                 "madds", "flops", "mac", "params"}
    assert all(node_keys <= set(n) for n in report["nodes"])
    assert report["unsupported"] == []
    assert sum(r["madds_pct"] for r in report["by_op_type"]) == pytest.approx(100)


def test_csv_is_exact_and_markdown_is_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "analyze", f"{TINY}:TinyNet", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sum(int(r["madds"]) for r in rows) == TINY_MADDS
    _, out, _ = run(capsys, "analyze", f"{TINY}:TinyNet", "--format", "markdown",
                    "--by", "module")
    assert "| Module" in out and "conv" in out


def test_output_file_and_by_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "report.txt"
    code, out, _ = run(capsys, "analyze", f"{TINY}:TinyNet", "--by", "node", "-o", str(target))
    assert code == 0 and out == ""
    text = target.read_text()
    assert "Conv 3x3" in text and "Fully Connected" in text


def test_input_shape_flag_and_several_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "analyze", f"{TINY}:make_two_inputs", "--input-shape", "2,3,4",
                       "--input-shape", "2,4,5", "--format", "json")
    assert code == 0
    assert json.loads(out)["totals"]["madds"] == 2 * 3 * 4 * 5


def test_zoo_target_uses_default_cfg(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "analyze", "costmodel.zoo:mobilenet_v1", "--weights-only")
    assert code == 0
    assert "94.86%" in out and "74.59%" in out and "568.74M" in out


BAD = [
    (["analyze", "no/such/model.py"], "no such file"),
    (["analyze", f"{TINY}:Nope"], "no attribute 'Nope'"),
    (["analyze", f"{TINY}:TinyNet", "--input-shape", "1,5,16,16"], "rejects input shape"),
    (["analyze", f"{TINY}:TinyNet", "--input-shape", "1,a-b"], "bad --input-shape"),
    (["analyze", f"{TINY}:DataDependent", "--input-shape", "2,2"], "cannot trace"),
    (["analyze", f"{TINY}:TinyNet", "--format", "yaml"], "invalid choice"),
    (["analyze", f"{TINY}:TinyNet", "--dtype", "float99"], "unknown dtype"),
    (["analyze", TINY], "name the model"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    _, err = capsys.readouterr()
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_syntax_error_names_file_and_line(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\n\ndef f(:\n    pass\n")
    code, _, err = run(capsys, "analyze", f"{broken}:f")
    assert code == 2
    assert f"{broken}:3: syntax error" in err and len(err.strip().splitlines()) == 1


def test_no_input_spec_says_how_to_give_one(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "net.py"
    file.write_text("from torch import nn\nmodel = nn.Linear(3, 4)\n")
    code, _, err = run(capsys, "analyze", str(file))
    assert code == 2 and "--input-shape" in err


def test_real_process_exit_code_and_debug_traceback() -> None:
    """End to end in a fresh interpreter: exit 2 and one line; --debug shows the traceback."""
    argv = [sys.executable, "-m", "costmodel.cli", "analyze", f"{TINY}:Nope"]
    plain = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1
    debug = subprocess.run([*argv, "--debug"], capture_output=True, text=True, check=False)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_meta_construction_falls_back_to_cpu_and_says_so(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "analyze", f"{TINY}:NeedsData", "--input-shape", "2,4", "-v",
                         "--format", "json")
    assert code == 0
    assert "built on the CPU" in err
    report = json.loads(out)
    assert report["totals"]["madds"] == 2 * 4 * 4
    assert report["totals"]["params"] == 4 * 4 + 4  # the unused layer is not counted...
    assert any("never read" in note and "unused.weight" in note  # ...and the report says so
               for note in report["notes"])


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figure = tmp_path / "types.png"
    code, _, _ = run(capsys, "analyze", f"{TINY}:TinyNet", "--plot", str(figure))
    assert code == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run(capsys, "analyze", f"{TINY}:TinyNet", "--plot",
                       str(tmp_path / "no" / "dir" / "x.png"))
    assert code == 2 and "cannot write" in err and len(err.strip().splitlines()) == 1


def test_module_tree_keeps_its_indentation(capsys: pytest.CaptureFixture[str]) -> None:
    """Children are indented two spaces per level below their parent in the table."""
    _, out, _ = run(capsys, "analyze", f"{TINY}:TinyNet", "--by", "module")
    names = [line.split()[0] for line in out.splitlines() if line.startswith(("(model)", "  "))]
    assert names == ["(model)", "conv", "bn", "fc"]
    assert any(line.startswith("  conv ") for line in out.splitlines())


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    """`costmodel analyze ... | head -1`: the closed pipe is not an error to report."""
    argv = [sys.executable, "-m", "costmodel.cli", "analyze", f"{TINY}:TinyNet", "--format",
            "json"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # no reader left: the report's first write fails with EPIPE
        err = proc.stderr.read()
        code = proc.wait()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 141


def test_dtype_applies_to_shapes_from_the_file(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """--dtype sets the dtype of inputs given as bare shapes (the file's input_shape), as it does
    for --input-shape; before, it was silently float32."""
    code, out, _ = run(capsys, "analyze", f"{TINY}:TinyNet", "--dtype", "float16",
                       "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["inputs"] == [{"shape": [1, 3, 16, 16], "dtype": "float16"}]
