"""The source models whose op configurations calibration harvests (docs/latency.md).

A fixed, named set, chosen to cover every kernel class the zoo, the guideline networks and
`transformers` models run: dense, pointwise, depthwise and grouped convolutions, batch-1 and
token-shaped linear layers, attention, batch/layer/RMS norms, ReLU/ReLU6/SiLU/GELU/hardswish/
sigmoid, squeeze-excite's broadcasting multiply, global and windowed pooling, cat/split/
shuffle/pad/transpose copies, reductions and embeddings. No model validated against
measurement may be one of them (benchmarks/bench_latency.py checks): a prediction for a model
whose own configurations were timed would be a measurement.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from costmodel.capture.spec import InputSpec, LoadedModel

#: how a source is loaded: on meta for its graph, on the CPU with random weights to run whole
Source = Callable[[str], LoadedModel]


def _zoo(name: str) -> Source:
    def load(device: str) -> LoadedModel:
        from costmodel.zoo import MODELS

        with torch.device(device), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = MODELS[name]().eval()
        size = model.default_cfg["input_size"] if hasattr(model, "default_cfg") else (3, 224,
                                                                                     224)
        return LoadedModel(model, f"zoo:{name}", [InputSpec((1, *size))])
    return load


def hf_config(model_type: str, **settings: Any) -> Any:
    """A `transformers` config of that type with the given settings."""
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers.AutoConfig.for_model(model_type, **settings)


def _hf(model_type: str, **settings: Any) -> Source:
    def load(device: str) -> LoadedModel:
        from costmodel.capture.hf import load_config

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_config(hf_config(model_type, **settings), f"hf:{model_type}",
                               device=device)
    return load


#: name -> how to load it: on meta its graph is harvested; on the CPU it runs whole once, to
#: measure what its kernels cost inside a forward pass (calibrate.in_model)
SOURCES: dict[str, Source] = {
    "zoo:mobilenet_v2": _zoo("mobilenet_v2"),
    "zoo:shufflenet_v2_x1_0": _zoo("shufflenet_v2_x1_0"),
    "zoo:shufflenet_v1_g3": _zoo("shufflenet_v1_g3"),
    "zoo:resnet18": _zoo("resnet18"),
    "hf:efficientnet (B0)": _hf("efficientnet", image_size=224, width_coefficient=1.0,
                                depth_coefficient=1.0, hidden_dim=1280),
    "hf:vit (192 wide, 6 layers)": _hf("vit", hidden_size=192, num_hidden_layers=6,
                                       num_attention_heads=3, intermediate_size=768),
    "hf:levit (128S)": _hf("levit"),
    "hf:bert (256 wide, 4 layers)": _hf("bert", hidden_size=256, num_hidden_layers=4,
                                        num_attention_heads=4, intermediate_size=1024),
    "hf:llama (256 wide, 4 layers)": _hf("llama", hidden_size=256, num_hidden_layers=4,
                                         num_attention_heads=4, num_key_value_heads=4,
                                         intermediate_size=688, vocab_size=8000),
    "hf:regnet (Y-040 default)": _hf("regnet"),
}


class _Smoke(nn.Module):
    """A few ops of several classes at tiny sizes: what a smoke calibration harvests."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        y = y + self.pw(self.dw(y))
        return self.fc(y.mean((2, 3)))


def smoke_sources() -> dict[str, Source]:
    def load(device: str) -> LoadedModel:
        with torch.device(device), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = _Smoke().eval()
        return LoadedModel(model, "smoke", [InputSpec((1, 8, 8, 8))])
    return {"smoke": load}
