"""costmodel lint: each rule on a model built to break it, with the MAC at stake derived by hand
from the paper's equations; the zoo's sanity cases; the command line's formats and errors.

Notation: h*w = 64 (8x8 maps), batch 1, 1x1 bias-free convolutions. A 1x1 conv c1 -> c2 in g
groups moves h*w*(c1 + c2) + c1*c2/g elements (equation 5); an element-wise op reads each
input once and writes its output once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import costmodel
from costmodel.budget.config import load_config
from costmodel.cli import main
from costmodel.errors import CostModelError
from costmodel.lint.render import render, to_json
from costmodel.lint.rules import lint
from costmodel.lint.settings import Settings, Thresholds, settings

MODELS = Path(__file__).parent / "models"
NETS = str(MODELS / "lint_nets.py")
HW = 64


def findings(target: str, input_shape: tuple[int, ...] | None = None,
             **thresholds: float) -> list:
    chosen = Settings(thresholds=Thresholds(**thresholds))
    return lint(costmodel.analyze(f"{NETS}:{target}", input_shape=input_shape), chosen).findings


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_g1_unequal_widths_exact_excess() -> None:
    """16 -> 64 at h*w = 64: MAC = 64*80 + 1024 = 6144; B = 65536, and equation 3's bound
    2*sqrt(h*w*B) + B/(h*w) = 2*2048 + 1024 = 5120: 1024 at stake, h*w*(sqrt(c1)-sqrt(c2))^2.
    64 -> 16 is the same. The first conv reads the model's input and is not judged."""
    found = findings("unequal_stack")
    assert [(f.rule, f.module, f.mac_excess, f.mac, f.madds) for f in found] == [
        ("G1", "1", 1024, 6144, 65536), ("G1", "2", 1024, 6144, 65536)]
    assert found[0].nodes == ["convolution_default_1"]
    assert "16 -> 64" in found[0].message and "32 -> 32" in found[0].message
    assert findings("unequal_stack", g1_min_ratio=4.5) == []


def test_g2_grouped_exact_excess() -> None:
    """32 -> 32 in 8 groups: MAC = 64*64 + 32*32/8 = 4224. At equal Mult-Adds an ungrouped
    32 -> 4 conv moves 64*36 + 128 = 2432: 1792 at stake = h*w*c2*(g-1)/g (equation 6).
    The depthwise conv is not a G2 finding."""
    found = [f for f in findings("grouped_stack") if f.rule == "G2"]
    assert [(f.module, f.mac_excess, f.mac) for f in found] == [
        ("1", 1792, 4224), ("2", 1792, 4224), ("3", 1792, 4224)]
    assert not [f for f in findings("grouped_stack", g2_max_groups=8) if f.rule == "G2"]


def test_g3_four_parallel_branches() -> None:
    """Four 16 -> 16 convs on one input (4 * (2*64*16 + 256) = 9216) and the three adds that
    join them (3 * 3*64*16 = 9216). One conv doing their 4*64*256 Mult-Adds at equal widths is
    32 -> 32: 2*64*32 + 1024 = 5120. At stake: 18432 - 5120 = 13312 = 13*h*w*c. The serial
    block before it (one branch) is not flagged."""
    found = [f for f in findings("parallel_block") if f.rule == "G3"]
    assert len(found) == 1
    (f,) = found
    assert (f.module, f.mac_excess, f.madds) == ("1", 13312, 4 * HW * 256)
    assert f.details["branches"] == 4 and f.details["series"] == 1
    assert len(f.nodes) == 7
    assert "4 parallel branches" in f.message
    assert not [f for f in findings("parallel_block", g3_max_branches=4) if f.rule == "G3"]


def test_g3_many_small_ops_in_series() -> None:
    """Ops per Mult-Add: the model's own 16 -> 32 conv 1/32768, blocks 1 and 2
    2/(2*64*32*32) = 1/65536, median 3/131072; block 3 4/(64*(256 + 64 + 64 + 256)) =
    4/40960, 4.27x the median. Its convs move
    2*(64*40 + 256) + 2*(64*16 + 64) = 7808; one conv of equal widths sqrt(640) doing 40960
    Mult-Adds moves 2*64*sqrt(640) + 640 = 3878.2: 3930 at stake."""
    found = [f for f in findings("fragmented_block") if f.rule == "G3"]
    assert [(f.module, f.mac_excess, f.madds) for f in found] == [("3", 3930, 40960)]
    assert found[0].details["branches"] == 1 and found[0].details["series"] == 4
    assert found[0].details["density_ratio"] == pytest.approx(4 * 131072 / (40960 * 3))
    assert not [f for f in findings("fragmented_block", g3_max_density=4.3) if f.rule == "G3"]


def test_g3_counts_tokens_for_linear_layers() -> None:
    """Three 8 -> 8 linears on 4 tokens (3 * (32 + 64 + 32) = 384) and two adds (2 * 96):
    576. One layer of equal widths doing their 3*4*64 = 768 Mult-Adds over the 4 tokens is
    sqrt(192) wide and moves 2*4*sqrt(192) + 192 = 302.85: 273 at stake."""
    found = [f for f in findings("three_linears", (1, 4, 8)) if f.rule == "G3"]
    assert [(f.module, f.mac_excess, f.madds) for f in found] == [("0", 273, 768)]
    assert found[0].details["branches"] == 3


def test_g4_relu_and_add_heavy_block() -> None:
    """Block 1: conv 2*64*16 + 256 = 2304, two ReLUs 2 * 2*1024, one add 3*1024: element-wise
    MAC 7168 of 9472 (76%), which is all at stake."""
    found = [f for f in findings("relu_add") if f.rule == "G4"]
    assert [(f.module, f.mac_excess, f.mac) for f in found] == [("1", 7168, 9472)]
    assert "2 Activation, 1 Elementwise" in found[0].message
    assert "76%" in found[0].message
    assert not [f for f in findings("relu_add", g4_max_share=0.8) if f.rule == "G4"]


def test_min_share_drops_small_findings() -> None:
    """The whole unequal stack moves 2304 + 2 * 6144 = 14592; 1024 is 7.0% of it."""
    assert len(findings("unequal_stack", min_share=0.07)) == 2
    assert findings("unequal_stack", min_share=0.071) == []


# --- the zoo: what the paper says of these architectures ----------------------------------------

def zoo_summary(name: str) -> dict:
    return to_json(lint(costmodel.analyze(f"costmodel.zoo:{name}")))["summary"]


def test_shufflenet_v2_is_nearly_clean() -> None:
    summary = zoo_summary("shufflenet_v2_x1_0")
    assert sum(s["count"] for s in summary.values()) <= 2
    assert summary["G2"]["count"] == summary["G3"]["count"] == summary["G4"]["count"] == 0


def test_shufflenet_v1_groups() -> None:
    g1, g3, g8 = (zoo_summary(f"shufflenet_v1_g{g}")["G2"] for g in (1, 3, 8))
    assert g1 == {"count": 0, "mac_excess": 0}
    assert g3["count"] > 0 and g8["count"] > 0
    assert g8["mac_excess"] > g3["mac_excess"]


def test_resnet_bottleneck_and_mobilenet_v1() -> None:
    assert zoo_summary("resnet50")["G4"]["count"] > 0
    assert zoo_summary("mobilenet_v1")["G2"]["count"] == 0


# --- the command line ---------------------------------------------------------------------------

def test_json_contract_and_fail_on(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "lint", f"{NETS}:grouped_stack", "--format", "json",
                       "--rules", "G2", "--fail-on", "G2")
    assert code == 1
    report = json.loads(out)
    assert report["schema"] == "costmodel-lint/1"
    assert report["model"].endswith("lint_nets.py:grouped_stack")
    assert {"rule", "module", "nodes", "message", "mac_excess", "madds", "mac"} <= set(
        report["findings"][0])
    assert report["summary"] == {"G2": {"count": 3, "mac_excess": 3 * 1792}}
    code, _, _ = run(capsys, "lint", f"{NETS}:grouped_stack", "--rules", "G1,G2",
                     "--fail-on", "G1")
    assert code == 0


def test_table_markdown_github(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "lint", f"{NETS}:unequal_stack")
    assert code == 0
    assert "2 findings, MAC at stake 2.05K" in out and "MACs" not in out
    _, out, _ = run(capsys, "lint", f"{NETS}:unequal_stack", "--format", "markdown")
    assert out.startswith("## costmodel lint") and "| G1" in out
    _, out, _ = run(capsys, "lint", f"{NETS}:unequal_stack", "--format", "github",
                    "--fail-on", "G1")
    assert out.count("::error title=costmodel lint G1") == 2


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_thresholds_from_the_budget_file(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "pyproject.toml",
                   '[tool.costmodel.models.net]\ntarget = "costmodel.zoo:resnet18"\n\n'
                   '[tool.costmodel.lint]\nrules = ["G1"]\ng1_min_ratio = 5\n'
                   'min_share = "0.5%"\n')
    code, out, _ = run(capsys, "lint", f"{NETS}:unequal_stack", "--config", str(config),
                       "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["findings"] == [] and report["rules"] == ["G1"]
    assert report["thresholds"]["min_share"] == 0.005
    assert load_config(config).models[0].name == "net"   # check reads the same file
    _, out, _ = run(capsys, "lint", f"{NETS}:unequal_stack", "--config", str(config),
                    "--format", "json", "--g1-min-ratio", "4")
    assert len(json.loads(out)["findings"]) == 2   # the command line wins


@pytest.mark.parametrize(("argv", "message"), [
    (["--rules", "G5"], "--rules: unknown rule 'G5'"),
    (["--fail-on", "G9"], "--fail-on: unknown rule 'G9'"),
    (["--rules", "G1", "--fail-on", "G2"], "--fail-on G2: not among the rules that run"),
    (["--g1-min-ratio", "wide"], "--g1-min-ratio: bad value 'wide'"),
    (["--g2-max-groups", "0"], "--g2-max-groups: bad value '0'"),
    (["--min-share=-1%"], "--min-share: bad value '-1%'"),
    (["--config", "missing.toml"], "missing.toml: no such file"),
])
def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                               message: str) -> None:
    code, out, err = run(capsys, "lint", f"{NETS}:unequal_stack", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize(("toml", "message"), [
    ("[tool.costmodel.lint]\ng1_ratio = 3\n", "pyproject.toml:2: tool.costmodel.lint.g1_ratio: "
                                             "unknown key"),
    ("[tool.costmodel.lint]\nrules = 3\n", "pyproject.toml:2: tool.costmodel.lint.rules: "
                                          "expected rule names"),
    ("[tool.costmodel.lint]\n\ng4_max_share = \"lots\"\n",
     "pyproject.toml:3: tool.costmodel.lint.g4_max_share: bad value 'lots'"),
    ("[tool.costmodel]\nlint = 3\n", "pyproject.toml:2: tool.costmodel.lint: expected a table"),
    ("[tool.costmodel.lint\n", "pyproject.toml:1: malformed TOML"),
])
def test_malformed_lint_table(tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str,
                              message: str) -> None:
    config = write(tmp_path / "pyproject.toml", toml)
    code, _, err = run(capsys, "lint", f"{NETS}:unequal_stack", "--config", str(config))
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_settings_merge() -> None:
    table = {"fail_on": (["g4"], "f:1: fail_on"), "g4_max_share": ("25%", "f:2: g4_max_share")}
    chosen = settings(table, None, None, {"g3_max_branches": "3"})
    assert chosen.fail_on == ("G4",) and chosen.rules == ("G1", "G2", "G3", "G4")
    assert chosen.thresholds.g4_max_share == 0.25 and chosen.thresholds.g3_max_branches == 3
    with pytest.raises(CostModelError, match="f:2: g4_max_share: bad value"):
        settings({"g4_max_share": ("x", "f:2: g4_max_share")}, None, None, {})


def test_render_lists_every_rule_that_ran() -> None:
    result = lint(costmodel.analyze(f"{NETS}:relu_add"),
                  Settings(rules=("G2", "G4")))
    text = render(result)
    assert "G2" in text and "G4" in text and "G1 " not in text


class _Attention(torch.nn.Module):
    """A transformer's attention block, its projections separate (q, k, v) or fused (qkv)."""

    def __init__(self, d: int = 64, heads: int = 4, fused: bool = False) -> None:
        super().__init__()
        self.heads, self.fused = heads, fused
        if fused:
            self.qkv = torch.nn.Linear(d, 3 * d, bias=False)
        else:
            self.q, self.k, self.v = (torch.nn.Linear(d, d, bias=False) for _ in range(3))
        self.o = torch.nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        parts = self.qkv(x).chunk(3, -1) if self.fused else (self.q(x), self.k(x), self.v(x))
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in parts)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(out.transpose(1, 2).reshape(b, s, d))


def test_g3_counts_q_k_v_projections_as_one_logical_matmul() -> None:
    """q, k and v read one input and feed one attention op: one matmul, not 3 branches. The
    message says so and prices the fused projection: the input read once instead of 3 times,
    2 x 32 tokens x 64 = 4096 fewer elements, which is the MAC the same block written with one
    fused qkv layer (a hand-built model) really saves."""
    torch.manual_seed(0)
    separate = costmodel.analyze(torch.nn.Sequential(_Attention()), input_shape=(1, 32, 64))
    fused = costmodel.analyze(torch.nn.Sequential(_Attention(fused=True)),
                              input_shape=(1, 32, 64))
    saving = separate.total().mac - fused.total().mac
    assert saving == 2 * 32 * 64
    result = lint(separate, Settings(thresholds=Thresholds(g3_max_density=100.0)))
    assert not [f for f in result.findings if f.rule == "G3"]  # one branch: no finding
    (f,) = [f for f in lint(separate, Settings(thresholds=Thresholds(
        g3_max_density=0.1))).findings if f.rule == "G3"]
    assert f.details["branches"] == 1
    assert f.details["fused_projection_saving"] == [saving]
    assert "0.q, 0.k, 0.v read one input and feed one attention op: counted as one logical " \
           "matmul (fused into one projection they would read it once, 4.10K fewer " \
           "elements)" in f.message
    assert "1 parallel branch," in f.message


def test_g3_three_linears_that_feed_no_attention_stay_three_branches() -> None:
    found = [f for f in findings("three_linears", (1, 4, 8)) if f.rule == "G3"]
    assert found[0].details["branches"] == 3 and found[0].details["fused_projections"] == []
    assert "logical matmul" not in found[0].message


def test_g3_on_a_transformers_llama_attention() -> None:
    """transformers' LlamaAttention (q_proj, k_proj, v_proj, rotary embeddings, SDPA): the
    projections are one logical matmul, whatever else the block is flagged for."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=1, num_attention_heads=4,
                                      num_key_value_heads=2, vocab_size=100)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config).eval()
    analysis = costmodel.analyze(model, input_shape=(1, 16), dtype=torch.int64)
    found = [f for f in lint(analysis, Settings(thresholds=Thresholds(g3_max_density=0.1))
                             ).findings if f.rule == "G3" and f.module.endswith("self_attn")]
    (f,) = found
    assert f.details["branches"] == 1
    (group,) = f.details["fused_projections"]
    assert sorted(analysis.graph.nodes[n]["module"].rsplit(".", 1)[1] for n in group) == [
        "k_proj", "q_proj", "v_proj"]
    assert f.details["fused_projection_saving"] == [2 * 16 * 64]
