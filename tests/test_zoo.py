"""The reference models reproduce their papers' published Mult-Adds and parameter counts.

Mult-Adds are measured independently of the cost model, with PyTorch's own
``FlopCounterMode`` (FLOPs / 2, conv and matmul ops only, bias not counted) on ``meta``
tensors, so nothing here allocates real weights.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import costmodel.zoo as zoo
from costmodel.zoo import (
    MODELS,
    LlamaDecoder,
    MixtralDecoder,
    MobileNetV1,
    MobileNetV2,
    ShuffleNetV1,
    ShuffleNetV2,
    channel_shuffle,
)
from costmodel.zoo.llama import RMSNorm, apply_rotary, rotary_tables

EXPECTED_NAMES = {
    "mobilenet_v1",
    "mobilenet_v2",
    "shufflenet_v1_g1",
    "shufflenet_v1_g2",
    "shufflenet_v1_g3",
    "shufflenet_v1_g4",
    "shufflenet_v1_g8",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "resnet18",
    "resnet50",
    "llama_7b",
    "llama_tiny",
    "mixtral_8x7b",
    "mixtral_tiny",
}


def build_meta(factory: object) -> nn.Module:
    """Call a zero-argument factory with ``meta`` as the default device."""
    assert callable(factory)
    with torch.device("meta"):
        model = factory()
    assert isinstance(model, nn.Module)
    return model.eval()


def example_inputs(model: nn.Module) -> tuple[torch.Tensor, ...]:
    """The loader's convention: ``example_inputs()`` or a batch of one ``default_cfg`` image."""
    if hasattr(model, "example_inputs"):
        return model.example_inputs()
    return (torch.zeros(1, *model.default_cfg["input_size"], device="meta"),)


def mult_adds(model: nn.Module, inputs: tuple[torch.Tensor, ...] | None = None) -> int:
    """Mult-Adds of one forward pass, as ``FlopCounterMode`` FLOPs / 2."""
    inputs = example_inputs(model) if inputs is None else inputs
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_weights(model: nn.Module) -> int:
    """Parameters with two or more dims: conv kernels, linear weights, embeddings."""
    return sum(p.numel() for p in model.parameters() if p.dim() >= 2)


def rel(measured: float, published: float) -> float:
    return abs(measured - published) / published


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_registry_names_and_module_level_factories() -> None:
    assert set(MODELS) == EXPECTED_NAMES
    for name, factory in MODELS.items():
        assert getattr(zoo, name) is factory
        assert name in zoo.__all__


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_every_model_builds_and_runs_on_meta(name: str) -> None:
    model = build_meta(MODELS[name])
    assert all(p.device.type == "meta" for p in model.parameters())
    assert all(b.device.type == "meta" for b in model.buffers())
    inputs = example_inputs(model)
    with torch.no_grad():
        out = model(*inputs)
    assert out.device.type == "meta"
    if isinstance(model, (LlamaDecoder, MixtralDecoder)):
        assert len(inputs) == 1
        assert inputs[0].dtype == torch.long
        assert inputs[0].device.type == "meta"
        assert tuple(inputs[0].shape) == (1, model.seq_len)
        assert tuple(out.shape) == (1, model.seq_len, model.vocab_size)
    else:
        input_size = model.default_cfg["input_size"]
        assert len(input_size) == 3 and input_size[0] == 3
        assert tuple(out.shape) == (1, 1000)


# ---------------------------------------------------------------------------------------------
# MobileNet V1 / V2
# ---------------------------------------------------------------------------------------------


def test_mobilenet_v1_exact() -> None:
    model = build_meta(MobileNetV1)
    assert model.default_cfg == {"input_size": (3, 224, 224)}
    assert mult_adds(model) == 568_740_352
    assert n_weights(model) == 4_209_088


@pytest.mark.parametrize(
    ("width_mult", "resolution", "published_madds_m", "published_weights_m"),
    [
        # Table 6 (width multiplier at 224) and Table 7 (resolution at width 1.0).
        (0.75, 224, 325, 2.6),
        (0.5, 224, 149, 1.3),
        (0.25, 224, 41, 0.5),
        (1.0, 192, 418, 4.2),
        (1.0, 160, 290, 4.2),
        (1.0, 128, 186, 4.2),
    ],
)
def test_mobilenet_v1_multipliers(
    width_mult: float, resolution: int, published_madds_m: float, published_weights_m: float
) -> None:
    with torch.device("meta"):
        model = MobileNetV1(width_mult=width_mult, resolution=resolution)
    assert model.default_cfg == {"input_size": (3, resolution, resolution)}
    assert rel(mult_adds(model), published_madds_m * 1e6) < 0.005
    assert round(n_weights(model) / 1e6, 1) == published_weights_m


def test_mobilenet_v2_params_and_madds() -> None:
    model = build_meta(MobileNetV2)
    assert n_params(model) == 3_504_872
    assert rel(mult_adds(model), 300e6) < 0.01


# ---------------------------------------------------------------------------------------------
# ShuffleNet V1 / V2
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "published_madds_m"), [(1, 143), (2, 140), (3, 137), (4, 133), (8, 137)]
)
def test_shufflenet_v1_madds(groups: int, published_madds_m: float) -> None:
    model = build_meta(MODELS[f"shufflenet_v1_g{groups}"])
    assert rel(mult_adds(model), published_madds_m * 1e6) < 0.015


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_shufflenet_v1_stage_shapes(groups: int) -> None:
    """Stage outputs have the paper's channels at 28, 14 and 7 pixels."""
    with torch.device("meta"):
        model = ShuffleNetV1(groups=groups)
    x = model.maxpool(model.stem(torch.zeros(1, 3, 224, 224, device="meta")))
    assert tuple(x.shape) == (1, 24, 56, 56)
    expected = {
        1: (144, 288, 576),
        2: (200, 400, 800),
        3: (240, 480, 960),
        4: (272, 544, 1088),
        8: (384, 768, 1536),
    }[groups]
    for stage, channels, size in zip(model.stages, expected, (28, 14, 7), strict=True):
        x = stage(x)
        assert tuple(x.shape) == (1, channels, size, size)
    first = model.stages[0][0]
    assert first.compress[0].groups == 1
    assert first.expand[0].groups == groups
    assert model.stages[0][1].compress[0].groups == groups


@pytest.mark.parametrize("scale", [0.25, 0.5, 1.5, 2.0])
@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_shufflenet_v1_scaled_builds(groups: int, scale: float) -> None:
    with torch.device("meta"):
        model = ShuffleNetV1(groups=groups, scale=scale)
    assert tuple(model(torch.zeros(1, 3, 224, 224, device="meta")).shape) == (1, 1000)


@pytest.mark.parametrize(
    ("scale", "params", "published_madds_m"),
    [
        (0.5, 1_366_792, 40.5),
        (1.0, 2_278_604, 144.9),
        (1.5, 3_503_624, 295.8),
        (2.0, 7_393_996, 583.3),
    ],
)
def test_shufflenet_v2(scale: float, params: int, published_madds_m: float) -> None:
    name = "shufflenet_v2_x" + str(scale).replace(".", "_")
    model = build_meta(MODELS[name])
    assert isinstance(model, ShuffleNetV2)
    assert n_params(model) == params
    assert rel(mult_adds(model), published_madds_m * 1e6) < 0.005


def test_channel_shuffle_interleaves_groups() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]


# ---------------------------------------------------------------------------------------------
# ResNet
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "published_madds"),
    [("resnet18", 11_689_512, 1.814e9), ("resnet50", 25_557_032, 4.089e9)],
)
def test_resnet(name: str, params: int, published_madds: float) -> None:
    model = build_meta(MODELS[name])
    assert n_params(model) == params
    assert rel(mult_adds(model), published_madds) < 0.001


# ---------------------------------------------------------------------------------------------
# LLaMA
# ---------------------------------------------------------------------------------------------


def llama_closed_form(n_layers: int, seq: int, dim: int, hidden: int, vocab: int) -> int:
    return n_layers * (4 * seq * dim * dim + 3 * seq * dim * hidden + 2 * seq * seq * dim) + (
        seq * dim * vocab
    )


def test_llama_tiny_closed_form() -> None:
    model = build_meta(MODELS["llama_tiny"])
    expected = llama_closed_form(2, 32, 64, 172, 256)
    assert expected == 3_948_544
    assert mult_adds(model) == expected
    assert model.mult_adds() == expected


def test_llama_7b_widths_two_layers_closed_form() -> None:
    with torch.device("meta"):
        model = LlamaDecoder(n_layers=2, seq_len=128).eval()
    expected = llama_closed_form(2, 128, 4096, 11008, 32000)
    assert mult_adds(model) == expected
    assert model.mult_adds() == expected


def test_llama_7b_on_meta() -> None:
    model = build_meta(MODELS["llama_7b"])
    assert n_params(model) == 6_738_415_616
    assert mult_adds(model) == llama_closed_form(32, 2048, 4096, 11008, 32000)
    # The rotary tables are derived data, not part of a checkpoint.
    assert not any(key.startswith("rope_") for key in model.state_dict())


def test_llama_tiny_is_causal_on_cpu() -> None:
    torch.manual_seed(0)
    model = MODELS["llama_tiny"]().eval()
    tokens = torch.randint(0, 256, (2, 32))
    changed = tokens.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % 256
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert a.shape == (2, 32, 256)
    torch.testing.assert_close(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


def test_rmsnorm_formula() -> None:
    norm = RMSNorm(4, eps=0.0)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.tensor([[3.0, 4.0, 0.0, 0.0]])  # rms = sqrt(25 / 4) = 2.5
    torch.testing.assert_close(norm(x), torch.tensor([[1.2, 3.2, 0.0, 0.0]]))


def test_rotary_is_a_rotation_of_pairs() -> None:
    cos, sin = rotary_tables(head_dim=8, seq_len=5)
    assert cos.shape == sin.shape == (5, 4)
    x = torch.randn(1, 2, 5, 8)
    y = apply_rotary(x, cos, sin)
    # Norms of every pair are preserved and position 0 is untouched.
    torch.testing.assert_close(
        y.view(1, 2, 5, 4, 2).norm(dim=-1), x.view(1, 2, 5, 4, 2).norm(dim=-1)
    )
    torch.testing.assert_close(y[:, :, 0], x[:, :, 0])
    # Pair 0 at position m turns by m radians (theta ** 0 == 1).
    m = 3
    angle = torch.tensor(float(m))
    x0, x1 = x[0, 0, m, 0], x[0, 0, m, 1]
    expected = torch.stack(
        (x0 * angle.cos() - x1 * angle.sin(), x0 * angle.sin() + x1 * angle.cos())
    )
    torch.testing.assert_close(y[0, 0, m, :2], expected)
