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

from costmodel.analysis import Analysis, analyze, analyze_loaded


def _zoo(name: str) -> Callable[[], Analysis]:
    def build() -> Analysis:
        from costmodel.zoo import MODELS

        with torch.device("meta"):
            model = MODELS[name]()
        shape = (1, *model.default_cfg["input_size"]) if hasattr(model, "default_cfg") else None
        return analyze(model.eval(), input_shape=shape, name=f"zoo:{name}")
    return build


def hf_config(model_type: str, **settings: Any) -> Any:
    """A `transformers` config of that type with the given settings."""
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers.AutoConfig.for_model(model_type, **settings)


def _hf(model_type: str, **settings: Any) -> Callable[[], Analysis]:
    def build() -> Analysis:
        from costmodel.capture.hf import load_config

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = load_config(hf_config(model_type, **settings), f"hf:{model_type}")
            return analyze_loaded(loaded)
    return build


#: name -> how to build and analyse it (on meta: nothing is run, only the graph is read)
SOURCES: dict[str, Callable[[], Analysis]] = {
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


def smoke_sources() -> dict[str, Callable[[], Analysis]]:
    def build() -> Analysis:
        with torch.device("meta"):
            model = _Smoke().eval()
        return analyze(model, input_shape=(1, 8, 8, 8), name="smoke")
    return {"smoke": build}
