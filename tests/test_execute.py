"""--execute: recording the graph while the model runs on real CPU tensors.

Expectations are closed forms derived by hand (an expert loop's Mult-Adds are the router's plus
tokens x top-k passes through one expert, whatever the routing), torch's FlopCounterMode on
the same model run on another input, and the shape-only trace of models that need no values.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from costmodel import analyze
from costmodel.analysis import Analysis
from costmodel.capture.execute import real_inputs
from costmodel.capture.load import InputSpec, import_namespace
from costmodel.capture.trace import trace_executing
from costmodel.cli import main
from costmodel.cost import Cost
from costmodel.errors import CostModelError
from costmodel.report import render
from costmodel.views.moe import summarize as moe_summary

aten = torch.ops.aten
MODELS = Path(__file__).parent / "models"
LOOP = str(MODELS / "expert_loop.py")
ExpertLoopMoE = import_namespace(LOOP, is_file=True).ExpertLoopMoE

TOKENS, DIM, HIDDEN, EXPERTS, TOP_K = 32, 16, 24, 4, 2


def expert_loop_madds(tokens: int) -> int:
    """Router (tokens x dim x experts), then tokens x top_k rows through an expert's two
    linears (dim -> hidden -> dim): the rows routed sum to tokens x top_k."""
    return tokens * DIM * EXPERTS + tokens * TOP_K * 2 * DIM * HIDDEN


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expert_loop_counts_every_expert_exactly_whatever_the_routing(seed: int) -> None:
    torch.manual_seed(seed)
    model = ExpertLoopMoE(DIM, HIDDEN, EXPERTS, TOP_K)
    analysis = analyze(model, input_shape=(TOKENS, DIM), execute=True)
    assert analysis.total().madds == expert_loop_madds(TOKENS)
    assert not analysis.unsupported()
    rows = [sum(op["cost"].madds for op in analysis.ops()
                if op["module"].startswith(f"experts.{i}.")) // (2 * DIM * HIDDEN)
            for i in range(EXPERTS)]
    assert sum(rows) == TOKENS * TOP_K
    assert len(set(rows)) > 1  # an uneven split: the routing really varied among experts
    with FlopCounterMode(display=False) as counter:  # torch, on a different input
        model(torch.randn(TOKENS, DIM))
    assert 2 * analysis.total().madds == counter.get_total_flops()


def test_expert_loop_moe_report_counts_top_k_of_the_experts_as_active() -> None:
    analysis = analyze(ExpertLoopMoE(DIM, HIDDEN, EXPERTS, TOP_K), input_shape=(TOKENS, DIM),
                       execute=True)
    router, expert = DIM * EXPERTS, 2 * DIM * HIDDEN
    moe = moe_summary(analysis)
    assert moe is not None and moe.layers[0].experts_seen == EXPERTS
    assert moe.total_params == router + EXPERTS * expert
    assert moe.active_params == router + TOP_K * expert


def test_shape_only_trace_of_an_expert_loop_names_execute(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "analyze", LOOP)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "control flow depends on tensor values" in err and "--execute" in err


def costed_ops(analysis: Analysis) -> list[tuple[str, tuple[Any, ...], Cost]]:
    """Every op but the views (a meta kernel may add a detach), with its output shape (a CPU
    kernel may leave an unused extra output empty) and cost."""
    return [(op["target"], op["output_shapes"][0], op["cost"]) for op in analysis.ops()
            if op["op_type"] != "View"]


def test_execute_records_the_same_graph_as_the_shape_only_trace() -> None:
    """Where no control flow depends on values, both traces see the same ops and shapes."""
    for target, shape in (("costmodel.zoo:llama_tiny", None), ("costmodel.zoo:mixtral_tiny", None),
                          ("costmodel.zoo:shufflenet_v2_x0_5", (1, 3, 64, 64))):
        shapes = analyze(target, input_shape=shape)
        executed = analyze(target, input_shape=shape, execute=True)
        assert executed.total() == shapes.total(), target
        assert costed_ops(executed) == costed_ops(shapes), target
        assert moe_summary(executed) == moe_summary(shapes)


class Gated(nn.Module):
    """Runs its second layer only when the first one's output has a positive element."""

    def __init__(self, positive: bool) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        with torch.no_grad():
            self.a.weight.zero_()
            self.a.bias.fill_(1.0 if positive else -1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        if h.max() > 0:
            h = self.b(h)
        return h


def test_value_branch_counts_the_branch_taken() -> None:
    with pytest.raises(CostModelError, match="--execute"):
        analyze(Gated(True).to("meta"), input_shape=(4, 8))
    assert analyze(Gated(True), input_shape=(4, 8), execute=True).total().madds == 2 * 4 * 8 * 8
    assert analyze(Gated(False), input_shape=(4, 8), execute=True).total().madds == 4 * 8 * 8


def test_every_format_says_the_costs_are_for_that_input(
        capsys: pytest.CaptureFixture[str]) -> None:
    outputs = {fmt: run(capsys, "analyze", LOOP, "--execute", "--format", fmt)
               for fmt in ("table", "markdown", "json", "csv")}
    assert all(code == 0 for code, _, _ in outputs.values())
    for fmt in ("table", "markdown"):
        assert "Executed on one random input (--execute" in outputs[fmt][1]
    report = json.loads(outputs["json"][1])
    assert report["executed"] is True
    assert any("--execute" in note and "for that input" in note for note in report["notes"])
    assert report["totals"]["madds"] == expert_loop_madds(TOKENS)
    text = outputs["csv"][1]
    assert text.startswith("# Executed on one random input (--execute")
    rows = list(csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")))
    assert sum(int(r["madds"]) for r in rows) == expert_loop_madds(TOKENS)


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(7, 4)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.embed(ids) * mask[..., None] + x


def test_integer_inputs_are_in_the_declared_range_and_zeros_otherwise() -> None:
    specs = [InputSpec((4, 50), torch.long), InputSpec((4, 50), torch.bool),
             InputSpec((4, 50, 4), torch.float32)]
    (ids, mask, x), note = real_inputs(Tokens(), specs, "tokens")
    assert ids.min() >= 0 and ids.max() < 7 and len(ids.unique()) == 7
    assert bool(mask.all()) and x.std() > 0.5
    assert "integers uniform in [0, 7)" in note
    plain = nn.Linear(2, 2)
    (zeros,), note = real_inputs(plain, [InputSpec((3,), torch.int64)], "plain")
    assert not zeros.any() and "integers all zero" in note
    plain.vocab_size = 5
    (ids,), _ = real_inputs(plain, [InputSpec((200,), torch.int64)], "plain")
    assert set(ids.tolist()) == set(range(5))
    repeat, _ = real_inputs(Tokens(), specs, "tokens")
    assert torch.equal(repeat[0], real_inputs(Tokens(), specs, "tokens")[0][0])  # seeded
    analysis = analyze(Tokens(), inputs=[torch.zeros(4, 50, dtype=torch.long),
                                         torch.zeros(4, 50, dtype=torch.bool),
                                         torch.zeros(4, 50, 4)], execute=True)
    assert not analysis.unsupported()


def test_a_model_that_needs_a_gpu_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "analyze", str(MODELS / "cuda_only.py"), "--execute")
    assert code == 2 and out == ""
    assert err.strip() == ("costmodel: error: " + str(MODELS / "cuda_only.py") + ":FlashOnly: "
                           "needs a GPU: aten::_flash_attention_forward has no CPU kernel; "
                           "--execute runs on the CPU only")
    model = nn.Linear(2, 2)
    with FakeTensorMode():
        model.weight = nn.Parameter(torch.empty(2, 2, device="cuda"))
    with pytest.raises(CostModelError, match=r"needs a GPU \(weight is on cuda:0\)"):
        analyze(model, input_shape=(1, 2), execute=True)


def test_bad_execute_requests_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with torch.device("meta"):
        model = nn.Linear(2, 2)
    with pytest.raises(CostModelError, match="weight is on the meta device"):
        analyze(model, input_shape=(1, 2), execute=True)
    code, _, err = run(capsys, "analyze", LOOP, "--execute", "--symbolic", "T")
    assert code == 2 and "cannot free sizes" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "analyze", LOOP, "--execute", "--input-shape", "T,16")
    assert code == 2 and "concrete input" in err and len(err.strip().splitlines()) == 1


def test_render_of_an_executed_mixtral_keeps_its_moe_line() -> None:
    text = render(analyze("costmodel.zoo:mixtral_tiny", execute=True))
    assert "MoE: 2 layers of 4 experts, top 2" in text
    assert "integers uniform in [0, 256)" in text


def test_executed_trace_keeps_shapes_not_data() -> None:
    """Nodes hold meta copies, so the recorded graph pins no activation in memory, and a
    loop that frees and reallocates tensors (ids reused) still wires every op to its real
    producer: the linears' inputs are the shapes the router sent."""
    model = ExpertLoopMoE(DIM, HIDDEN, EXPERTS, TOP_K)
    traced, _ = trace_executing(model, [InputSpec((TOKENS, DIM))], "loop")
    values = [node.meta.get("val") for node in traced.graph.nodes]
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    linears = [node for node in traced.graph.nodes if node.target is aten.linear.default]
    for node in linears:
        x, w = node.args[0].meta["val"], node.args[1].meta["val"]
        assert x.shape[-1] == w.shape[-1]


# --- --execute on every command that takes a TARGET ---------------------------------------------

LOOP_PARAMS = DIM * EXPERTS + EXPERTS * 2 * DIM * HIDDEN  # the router, each expert's 2 linears


@pytest.mark.parametrize("argv", [
    ["lint", LOOP, "--format", "json"],
    ["memory", LOOP, "--format", "json"],
    ["predict", LOOP, "--profile", "snapdragon-855-cpu", "--format", "json"],
    ["diff", LOOP, LOOP, "--format", "json"],
    ["check", LOOP, "--format", "json"],
], ids=lambda argv: argv[0])
def test_every_command_taking_a_target_executes(capsys: pytest.CaptureFixture[str],
                                                argv: list[str]) -> None:
    """Without --execute the expert loop cannot be traced (exit 2, the error names the flag);
    with it each command reports the costs of the run: the closed-form Mult-Adds, and the
    parameters' bytes."""
    code, _, err = run(capsys, *argv)
    assert code == 2 and "--execute" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, *argv, "--execute")
    assert code == 0, err
    report = json.loads(out)
    if argv[0] == "memory":
        assert report["params_bytes"] == 4 * LOOP_PARAMS
        assert report["executed"] is True
        code, out, _ = run(capsys, "memory", LOOP, "--execute")
        assert code == 0 and "Executed on one random input (--execute, seed 0" in out
    elif argv[0] == "lint":
        assert report["schema"] == "costmodel-lint/1"
        assert report["totals"]["mac"] == analyze(ExpertLoopMoE(DIM, HIDDEN, EXPERTS, TOP_K),
                                                  input_shape=(TOKENS, DIM),
                                                  execute=True).total().mac
    elif argv[0] == "predict":  # contractions: 2 FLOPs per Mult-Add
        linears = [n for n in report["nodes"] if n["op_type"] == "Fully Connected"]
        assert sum(n["flops"] for n in linears) == 2 * expert_loop_madds(TOKENS)
    else:
        assert str(expert_loop_madds(TOKENS)) in out


def test_baseline_and_check_execute_and_budget_files_can_ask_for_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "lock.json"
    code, _, err = run(capsys, "baseline", LOOP, "--execute", "-o", str(lock))
    assert code == 0, err
    (entry,) = json.loads(lock.read_text())["models"].values()
    assert entry["totals"]["madds"] == expert_loop_madds(TOKENS)
    budget = tmp_path / "costmodel.toml"
    budget.write_text(f'[models.loop]\ntarget = "{LOOP}"\nexecute = true\n'
                      f'max_madds = {expert_loop_madds(TOKENS)}\n')
    code, out, err = run(capsys, "check", "--config", str(budget))
    assert code == 0, err + out
    budget.write_text(f'[models.loop]\ntarget = "{LOOP}"\nexecute = "yes"\n')
    code, _, err = run(capsys, "check", "--config", str(budget))
    assert code == 2 and "execute: expected true or false" in err


def test_memory_of_an_executed_run_is_that_of_the_shape_only_trace() -> None:
    """A model whose control flow needs no values: the executed run's liveness (real storages)
    gives the same peak as the shape-only trace; parameters are their bytes."""
    from costmodel.views.memory import memory

    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.GELU(),
                          nn.Linear(64, 8))
    executed = memory(analyze(model, input_shape=(4, 16), execute=True, storages=True))
    traced = memory(analyze(model, input_shape=(4, 16), storages=True))
    assert executed.peak_bytes == traced.peak_bytes
    assert executed.peak_activation_bytes == traced.peak_activation_bytes
    assert executed.params_bytes == 4 * (16 * 64 + 64 + 64 * 64 + 64 + 64 * 8 + 8)
