"""Edges of loading and tracing: models with tensors on two devices, torch's own logging on a
failed trace, and the names a TARGET error lists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from costmodel import analyze
from costmodel.cli import main
from costmodel.zoo import MODELS


class PartlyOnCpu(nn.Module):
    """Built under torch.device("meta") except one parameter made with the legacy
    torch.Tensor constructor, which ignores the device context (wav2vec2's masked_spec_embed)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.device("meta"):
            self.fc = nn.Linear(4, 3)
        self.scale = nn.Parameter(torch.Tensor(3).uniform_())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale


def test_a_model_with_tensors_on_meta_and_cpu_is_traced_on_meta() -> None:
    model = PartlyOnCpu()
    assert model.scale.device.type == "cpu" and model.fc.weight.device.type == "meta"
    total = analyze(model, input_shape=(2, 4)).total()
    assert total.madds == 2 * 4 * 3  # rows x in x out
    assert total.params == 4 * 3 + 3 + 3
    assert model.scale.device.type == "cpu"  # the model itself is left as it was


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_transformers_speech_encoders_built_on_meta(kind: str) -> None:
    """wav2vec2 and HuBERT keep CPU tensors when built on meta (masked_spec_embed, the
    weight-norm parametrization of the positional convolution); FlopCounterMode counts them."""
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(
        kind, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4)
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(config).eval()
    assert any(p.device.type == "cpu" for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, 800, device="meta"))
    assert analyze(model, input_shape=(1, 800)).total().madds * 2 == counter.get_total_flops()


def test_a_cpu_model_that_rejects_its_input_prints_one_line(tmp_path: Path) -> None:
    """torch's fake-tensor logger would print its own traceback before the one-line error (in
    a fresh interpreter: pytest's log capture would hide it)."""
    file = tmp_path / "net.py"
    file.write_text("from torch import nn\n"
                    "model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(288, 10))\n")
    argv = [sys.executable, "-m", "costmodel.cli", "analyze", str(file), "--input-shape",
            "1,3,16,16"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "rejects input shape 1x3x16x16" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_unknown_zoo_name_lists_the_zoo_factories(capfd: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", "costmodel.zoo:nosuch"])
    _, err = capfd.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1
    listed = err.split("models found: ")[1].rstrip(")\n").split(", ")
    assert set(MODELS) <= set(listed)
    assert "channel_shuffle" not in listed  # a function that needs arguments is no factory


def test_a_file_with_one_annotated_factory_needs_no_name(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "net.py"
    file.write_text("from torch import nn\n\ninput_shape = (2, 4)\n\n\n"
                    "def build() -> nn.Module:\n    return nn.Linear(4, 3)\n\n\n"
                    "def helper(x):\n    return x\n")
    code = main(["analyze", str(file), "--format", "json"])
    out, err = capfd.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["model"] == f"{file}:build"
    assert report["totals"]["madds"] == 2 * 4 * 3


class ChecksValuesUnlessTracing(nn.Module):
    """Skips a value check when its input is a fake tensor, as transformers' `is_tracing` does
    before its causal-mask and padding checks (GPT-2, LLaMA, Whisper, BART...)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch._subclasses.fake_tensor import is_fake

        if not is_fake(x) and bool((x == 0).all()):  # .item(): impossible on meta
            return x[..., :3]
        return self.fc(x)


def test_a_value_check_that_tracing_skips_is_traced_on_fake_tensors() -> None:
    with torch.device("meta"):
        model = ChecksValuesUnlessTracing()
    analysis = analyze(model, input_shape=(5, 4))
    assert analysis.total().madds == 5 * 4 * 3
    assert analysis.total().params == 4 * 3 + 3
    assert any(note.startswith("traced on fake tensors") for note in analysis.notes)


class PartlyOnCpuAndChecksValues(PartlyOnCpu):
    """wav2vec2's CPU parameter and transformers' value checks in one model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch._subclasses.fake_tensor import is_fake

        if not is_fake(x) and bool((x == 0).all()):
            return x[..., :3]
        return super().forward(x)


def test_a_model_partly_on_cpu_retried_on_fake_tensors_keeps_one_device() -> None:
    analysis = analyze(PartlyOnCpuAndChecksValues(), input_shape=(2, 4))
    assert analysis.total().madds == 2 * 4 * 3
    assert any(note.startswith("traced on fake tensors") for note in analysis.notes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape", [(4, 8), (4, 8, 9), (2, 8, 5, 7), (2, 8, 3, 5, 7)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("where", ["meta", "fake cpu", "fake meta"])
def test_batch_norm_short_way_gives_what_torch_gives(
        dtype: torch.dtype, shape: tuple[int, ...], channels_last: bool, affine: bool,
        training: bool, where: str) -> None:
    """The recorder's short way through batch norm (training or eval; on meta, or on fake
    tensors of concrete sizes on either device) returns tensors of the shapes, strides and
    dtypes torch's own kernel returns there."""
    from contextlib import nullcontext

    from torch._subclasses.fake_tensor import FakeTensorMode

    from costmodel.capture.trace import _call

    mode = FakeTensorMode() if where.startswith("fake") else nullcontext()
    device = "cpu" if where == "fake cpu" else "meta"
    with mode:
        x = torch.empty(shape, dtype=dtype, device=device)
        if channels_last and x.ndim in (4, 5):
            x = x.to(memory_format=torch.channels_last if x.ndim == 4
                     else torch.channels_last_3d)
        weight = torch.empty(8, dtype=dtype, device=device) if affine else None
        running = torch.empty(8, dtype=dtype, device=device)
        args = (x, weight, weight, running, running, training, 0.1, 1e-5)
        torch_s = torch.ops.aten.native_batch_norm.default(*args)
    ours = _call(torch.ops.aten.native_batch_norm.default, args, {})
    assert [(t.shape, t.stride(), t.dtype, t.device) for t in ours] == \
        [(t.shape, t.stride(), t.dtype, t.device) for t in torch_s]
    if where.startswith("fake"):
        assert all(type(t).__name__ == "FakeTensor" for t in ours)
