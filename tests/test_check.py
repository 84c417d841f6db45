"""`costmodel check`, `baseline` and `diff` end to end through the real CLI, on a temporary
project whose model has one layer of width WIDTH, so that widening a layer is a file edit.

Hand-derived costs of that model (input 1x3x8x8, so 64 positions; MAC = elements read + written):
  stem    conv 3->4 1x1:  MAC 3*64 + 3*4 + 4*64 = 460,         Mult-Adds 3*4*64 = 768
  body.0  conv 4->W 1x1:  MAC 4*64 + 4*W + W*64 = 256 + 68W,   Mult-Adds 4*W*64 = 256W
  body.1  relu:           MAC W*64 + W*64 = 128W
  body.2  conv W->4 1x1:  MAC W*64 + W*4 + 4*64 = 256 + 68W,   Mult-Adds 256W
  mean over 8x8:          MAC 4*64 + 4 = 260
  head    linear 4->2:    MAC 4 + 8 + 2 = 14,                  Mult-Adds 8
so MAC = 1246 + 264W, Mult-Adds = 776 + 512W, params = 12 + 4W + 4W + 8 = 20 + 8W.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from costmodel.budget.config import parse_number, parse_tolerance
from costmodel.cli import main
from costmodel.errors import CostModelError

MODEL = '''\
import torch
from torch import nn

WIDTH = {width}
input_shape = (1, 3, 8, 8)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1, bias=False)
        self.body = nn.Sequential(nn.Conv2d(4, WIDTH, 1, bias=False), nn.ReLU(),
                                  nn.Conv2d(WIDTH, 4, 1, bias=False))
        self.head = nn.Linear(4, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)).mean((2, 3)))
'''

PYPROJECT = '''\
[project]
name = "demo"

[tool.costmodel]
{extra}
[tool.costmodel.models.net]
target = "model.py:Net"
{limits}
'''


def mac(width: int) -> int:
    return 1246 + 264 * width


def madds(width: int) -> int:
    return 776 + 512 * width


def body0_mac(width: int) -> int:
    return 256 + 68 * width


class Project:
    """A temporary project: model.py, pyproject.toml, and the working directory set to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = root / "costmodel.lock.json"
        self.width(8)
        self.config()

    def width(self, width: int) -> None:
        (self.root / "model.py").write_text(MODEL.format(width=width))

    def config(self, limits: str = "", extra: str = 'baseline = "costmodel.lock.json"') -> Path:
        path = self.root / "pyproject.toml"
        path.write_text(PYPROJECT.format(limits=limits, extra=extra))
        return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)
    # model.py is rewritten within the same second, at times with the same size: a cached .pyc
    # could then pass for the new source
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    return Project(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_baseline_is_sorted_stable_and_exact(project: Project,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "baseline")
    assert code == 0 and "wrote 1 model to" in err
    text = project.lock.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    net = data["models"]["net"]
    assert net["totals"]["mac"] == mac(8) == 3358
    assert net["totals"]["madds"] == madds(8)
    assert net["totals"]["params"] == 20 + 8 * 8
    assert net["totals"]["mac_bytes"] == 4 * mac(8)
    assert net["modules"]["body.0"] == {"count": 1, "mac": body0_mac(8), "madds": 256 * 8,
                                        "flops": 2 * 256 * 8, "params": 32}
    assert net["modules"]["body.1"]["mac"] == 128 * 8
    assert net["op_types"]["Activation"]["mac"] == 128 * 8
    assert net["op_types"]["Conv 1x1"]["mac"] == 460 + 2 * body0_mac(8)
    assert net["inputs"] == [{"shape": [1, 3, 8, 8], "dtype": "float32"}]
    assert net["target"] == "model.py:Net"  # as written: the same lock on every machine
    assert run(capsys, "baseline")[0] == 0
    assert project.lock.read_text() == text  # the same model gives the same bytes


def test_same_model_passes(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "baseline")
    code, out, _ = run(capsys, "check")
    assert code == 0
    assert "ok, 1 model" in out and "unchanged from the baseline" in out


def test_widening_a_layer_fails_naming_the_module_and_mac_delta(
        project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "baseline")
    project.width(16)
    code, out, _ = run(capsys, "check")
    assert code == 1
    assert "FAIL" in out and "above the baseline" in out
    delta = mac(16) - mac(8)
    assert delta == 2112
    assert re.search(r"^\s+MAC\s+3,358\s+5,470\s+\+2,112\s", out, re.MULTILINE)
    body0 = re.search(r"^\s+body\.0\s+(\S+)\s+(\S+)\s+(\S+)\s", out, re.MULTILINE)
    assert body0 is not None, out
    assert body0.groups() == (f"{body0_mac(8):,}", f"{body0_mac(16):,}",
                              f"+{body0_mac(16) - body0_mac(8):,}")  # 800 -> 1,344: +544
    code, out, _ = run(capsys, "check", "--format", "json")
    assert code == 1
    report = json.loads(out)
    model = report["models"][0]
    assert model["totals"]["mac"] == {"before": 3358, "after": 5470, "delta": 2112,
                                      "pct": pytest.approx(100 * 2112 / 3358, abs=1e-4)}
    modules = {m["name"]: m for m in model["modules"]}
    assert modules["body.0"]["mac"]["delta"] == 544
    assert modules["body.1"]["mac"]["delta"] == 128 * 8
    assert model["modules"][0]["name"] == "body"  # moved most: the whole block
    assert [f["kind"] for f in model["findings"]] == ["regression"]


def test_shrinking_passes_shows_the_improvement_and_update_records_it(
        project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "baseline")
    project.width(4)
    code, out, _ = run(capsys, "check")
    assert code == 0
    assert f"improved: MAC 3,358 -> {mac(4):,} (-1,056, -31.45%)" in out
    assert re.search(r"^\s+body\.0\s+800\s+528\s+-272\s", out, re.MULTILINE)
    code, out, _ = run(capsys, "check", "--update-baseline")
    assert code == 0 and "updated" in out
    assert json.loads(project.lock.read_text())["models"]["net"]["totals"]["mac"] == mac(4)
    code, out, _ = run(capsys, "check")
    assert code == 0 and "unchanged from the baseline" in out


def test_tolerance_is_the_allowed_growth(project: Project,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "baseline")
    project.width(9)  # Mult-Adds grow most: 4,872 -> 5,384 is +10.509%
    assert madds(9) / madds(8) == pytest.approx(1.10509, abs=1e-5)
    assert run(capsys, "check", "--tolerance", "10.6%")[0] == 0
    code, out, _ = run(capsys, "check", "--tolerance", "10.5%")
    assert code == 1 and "by more than 10.5%" in out and "Mult-Adds 4,872 -> 5,384" in out
    project.config(extra='baseline = "costmodel.lock.json"\ntolerance = "10.6%"')
    assert run(capsys, "check")[0] == 0


def test_max_mac_just_below_fails_and_just_above_passes(
        project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    path = project.config(limits='max_mac = "3.357K"', extra="")  # budgets only
    code, out, _ = run(capsys, "check")
    assert code == 1
    assert "MAC 3,358 exceeds tool.costmodel.models.net.max_mac = 3,357 by 1" in out
    project.config(limits="max_mac = 3358", extra="")
    code, out, _ = run(capsys, "check")
    assert code == 0 and "EXCEEDED" not in out
    project.config(limits='max_mac = "3.359K"', extra="")
    assert run(capsys, "check")[0] == 0
    assert path.exists()


def test_limits_per_module_and_op_type(project: Project,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    limits = ('[tool.costmodel.models.net.modules."body.0"]\nmax_mac = 799\n'
              '[tool.costmodel.models.net.op_types]\nActivation = { max_mac = 1024 }\n')
    path = project.config(limits=limits, extra="")
    code, out, _ = run(capsys, "check", "--format", "json")
    assert code == 1
    checks = {c["key"]: c for c in json.loads(out)["models"][0]["limits"]}
    body0 = checks['tool.costmodel.models.net.modules."body.0".max_mac']
    assert (body0["value"], body0["max"], body0["ok"]) == (800, 799, False)
    act = checks["tool.costmodel.models.net.op_types.Activation.max_mac"]
    assert (act["value"], act["ok"]) == (1024, True)
    finding = json.loads(out)["models"][0]["findings"][0]
    assert finding["line"] == line_of(path, "max_mac = 799")
    assert "module 'body.0'" in finding["message"]


def test_models_missing_from_either_side_are_reported(
        project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "baseline")
    project.config(limits='\n[tool.costmodel.models.big]\ntarget = "model.py:Net"\n'
                                    'input_shape = "1,3,16,16"\n')
    code, out, _ = run(capsys, "check")
    assert code == 1 and "big: not in the baseline" in out
    path = project.config()
    path.write_text(path.read_text().replace("models.net]", "models.other]"))
    code, out, _ = run(capsys, "check", "--format", "json")
    assert code == 1
    kinds = {m["name"]: [f["kind"] for f in m["findings"]] for m in json.loads(out)["models"]}
    assert kinds == {"other": ["not-in-baseline"], "net": ["no-model"]}


def test_junit_has_one_testcase_per_model(project: Project,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    project.config(limits='max_mac = 3000\n\n[tool.costmodel.models.small]\n'
                          'target = "model.py:Net"\ninput_shape = [1, 3, 4, 4]\n', extra="")
    code, out, _ = run(capsys, "check", "--format", "junit")
    assert code == 1
    root = ET.fromstring(out.encode())
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["net", "small"]
    assert root.get("tests") == "2" and root.get("failures") == "1"
    assert cases[0].find("failure") is not None and cases[1].find("failure") is None
    assert "max_mac = 3,000" in cases[0].find("failure").get("message")
    code, out, _ = run(capsys, "check", "--format", "junit", "-o", "junit.xml")
    assert code == 1 and out == ""
    assert len(ET.parse("junit.xml").getroot().findall("./testsuite/testcase")) == 2


WORKFLOW_COMMAND = re.compile(
    r"^::(error|warning|notice|group|endgroup)"
    r"( [a-z]+=[^,:\n]*(,[a-z]+=[^,:\n]*)*)?::[^\n\r]*$")


def test_github_lines_are_workflow_commands(project: Project,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "baseline")
    path = project.config(limits="max_mac = 3000")
    project.width(9)
    code, out, _ = run(capsys, "check", "--format", "github", "--tolerance", "0.5%")
    assert code == 1
    lines = out.splitlines()
    group = lines.index("::group::costmodel check report")
    assert lines[-1] == "::endgroup::"
    for line in lines[:group + 1]:
        assert WORKFLOW_COMMAND.match(line), line
    errors = [line for line in lines if line.startswith("::error ")]
    assert len(errors) == 2
    assert errors[0].startswith(f"::error file=pyproject.toml,line={line_of(path, 'max_mac')},")
    assert errors[1].startswith("::error file=costmodel.lock.json,line=3,")
    assert "0.5%25" in errors[1]  # '%' escaped as the runner expects


BAD_CONFIG = [
    ("malformed", "max_mac 1", "malformed TOML: Expected '='", "max_mac 1"),
    ("unknown-key", 'max_macs = "1M"', "max_macs: unknown key", "max_macs"),
    ("bad-si", 'max_mac = "6.5X"', "max_mac: bad number '6.5X'", "max_mac"),
    ("fraction", 'max_params = "1.2345K"', "must be a whole", "max_params"),
    ("bad-shape", "input_shape = true", "input_shape: expected a shape", "input_shape"),
    ("unknown-module", '[tool.costmodel.models.net.modules."body.9"]\nmax_mac = 1',
     "has no module 'body.9'", "max_mac = 1"),
]


@pytest.mark.parametrize(("limits", "message", "key_line"),
                         [b[1:] for b in BAD_CONFIG], ids=[b[0] for b in BAD_CONFIG])
def test_bad_budget_file_is_one_line_naming_file_key_and_line(
        project: Project, capsys: pytest.CaptureFixture[str], limits: str, message: str,
        key_line: str) -> None:
    path = project.config(limits=limits, extra="")
    code, out, err = run(capsys, "check")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert message in err
    assert f"costmodel: error: pyproject.toml:{line_of(path, key_line)}:" in err


def test_missing_target_and_missing_model_file(project: Project,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = project.root / "costmodel.toml"
    path.write_text('[models.net]\ninput_shape = "1,3,8,8"\n')
    code, _, err = run(capsys, "check")
    assert code == 2 and "costmodel.toml:1: models.net: missing target" in err
    path.write_text('[models.net]\n\ntarget = "nope.py:Net"\n')
    code, _, err = run(capsys, "check")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "error: costmodel.toml:3: models.net.target: nope.py: no such file" in err
    code, _, err = run(capsys, "check", "--config", "missing.toml")
    assert code == 2 and "missing.toml: no such file" in err


def test_bad_lock_file_and_no_models(project: Project, capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    project.lock.write_text('{"schema": "costmodel-lock/1",\n "models": {,}}\n')
    code, _, err = run(capsys, "check")
    assert code == 2 and "error: costmodel.lock.json:2: not valid JSON" in err
    (project.root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    code, _, err = run(capsys, "check")
    assert code == 2 and "no models to check" in err


def test_targets_on_the_command_line(project: Project,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "baseline", "model.py:Net", "-o", "targets.json")
    assert code == 0
    assert set(json.loads(Path("targets.json").read_text())["models"]) == {"model.py:Net"}
    project.width(16)
    code, out, _ = run(capsys, "check", "model.py:Net", "--baseline", "targets.json")
    assert code == 1 and "+2,112" in out


def test_diff_of_targets_and_lock_files(project: Project,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "baseline", "-o", "before.json")
    project.width(16)
    run(capsys, "baseline", "-o", "after.json")
    for a, b in [("before.json", "after.json"), ("before.json", "model.py:Net")]:
        code, out, _ = run(capsys, "diff", a, b, "--format", "json")
        assert code == 0
        (model,) = json.loads(out)["models"]
        assert model["totals"]["mac"]["delta"] == mac(16) - mac(8)
        modules = {m["name"]: m["mac"] for m in model["modules"]}
        assert modules["body.0"] == {"before": 800, "after": 1344, "delta": 544,
                                     "pct": 68.0}
        assert modules["stem"]["delta"] == 0  # diff lists unchanged rows too
    code, out, _ = run(capsys, "diff", "model.py:Net", "model.py:Net", "--input-shape",
                       "1,3,16,16")
    assert code == 0 and re.search(r"^\s+MAC\s+(\S+)\s+\1\s+\+0\s", out, re.MULTILINE)
    code, _, err = run(capsys, "diff", "before.json", "nope.json")
    assert code == 2 and "nope.json: no such baseline file" in err


def test_numbers_and_tolerances() -> None:
    assert parse_number("6.5M", "k") == 6_500_000
    assert parse_number("2G", "k") == 2 * 10**9
    assert parse_number("1_000", "k") == 1000
    assert parse_number(6.5e6, "k") == 6_500_000
    assert parse_number("64MB", "k", allow_bytes=True) == 64_000_000
    for bad in ("6.5X", "M", "1.5", "-3", True, "64MB", [1]):
        with pytest.raises(CostModelError):
            parse_number(bad, "k")
    assert parse_tolerance("0.5%") == parse_tolerance(0.5) == parse_tolerance("0.5")
    assert float(parse_tolerance("0.5%")) == 0.005
    with pytest.raises(CostModelError):
        parse_tolerance("-1%")


def test_exit_code_1_from_a_real_process(project: Project,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A CI runner sees the process's status, not main()'s return value."""
    assert run(capsys, "baseline")[0] == 0
    project.width(16)
    failed = subprocess.run([sys.executable, "-m", "costmodel.cli", "check"],
                            capture_output=True, text=True, check=False)
    assert failed.returncode == 1 and "body.0" in failed.stdout


DOCS = Path(__file__).parent.parent / "docs" / "ci.md"


def test_docs_budget_files_and_commands_are_valid(project: Project) -> None:
    """Every TOML block of docs/ci.md loads; every command it shows (the workflow's, the
    hooks', the examples') parses."""
    from costmodel.budget.config import load_config
    from costmodel.cli import build_parser

    text = DOCS.read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        path = project.root / "pyproject.toml"
        path.write_text(block)
        assert load_config(path).models
    hooks = (Path(__file__).parent.parent / ".pre-commit-hooks.yaml").read_text()
    commands = re.findall(r"^\s*(?:\$ |run: |entry: )(costmodel [^\n]*)$", text + hooks,
                          re.MULTILINE)
    assert any("--format github" in c for c in commands), commands
    assert len(re.findall(r"entry: costmodel check", hooks)) == 1
    for command in commands:
        args = build_parser().parse_args(command.split()[1:])
        assert args.command in {"check", "baseline", "diff", "analyze"}
