"""Reference models written from their papers, for checking the cost model against.

Every entry of :data:`MODELS` is a zero-argument factory, also importable by name from this
package (so ``costmodel.zoo:resnet50`` names a factory). Models use plain :mod:`torch.nn`
layers and default initialisation only, so they can be built and run on the ``meta`` device::

    with torch.device("meta"):
        model = MODELS["resnet50"]()

Input convention: image models carry ``default_cfg = {"input_size": (3, H, W)}`` (a batch of
one is prepended by the caller); the language models provide ``example_inputs()``. The
LLaMA and Mixtral prefill and decode factories (``llama_tiny_decode(past=31)``,
``mixtral_8x7b_prefill(tokens=4096)``...) are not in :data:`MODELS`:
they take a size argument, which ``costmodel analyze --free`` can leave as a symbol.

:mod:`costmodel.zoo.guidelines` holds the ShuffleNetV2 paper's benchmark networks (one per
guideline, ``variants()``), named like ``costmodel.zoo.guidelines:g2_g8_x1``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .llama import (
    KVCache,
    LlamaDecoder,
    RMSNorm,
    llama_7b,
    llama_7b_decode,
    llama_7b_prefill,
    llama_tiny,
    llama_tiny_decode,
    llama_tiny_prefill,
)
from .mixtral import (
    MixtralDecoder,
    mixtral_8x7b,
    mixtral_8x7b_decode,
    mixtral_8x7b_prefill,
    mixtral_tiny,
    mixtral_tiny_decode,
    mixtral_tiny_prefill,
)
from .mobilenet import MobileNetV1, MobileNetV2, mobilenet_v1, mobilenet_v2
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from .shufflenet import (
    ShuffleNetV1,
    ShuffleNetV2,
    channel_shuffle,
    shufflenet_v1_g1,
    shufflenet_v1_g2,
    shufflenet_v1_g3,
    shufflenet_v1_g4,
    shufflenet_v1_g8,
    shufflenet_v2_x0_5,
    shufflenet_v2_x1_0,
    shufflenet_v2_x1_5,
    shufflenet_v2_x2_0,
)

#: Zero-argument model factories by name.
MODELS: dict[str, Callable[[], nn.Module]] = {
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "shufflenet_v1_g1": shufflenet_v1_g1,
    "shufflenet_v1_g2": shufflenet_v1_g2,
    "shufflenet_v1_g3": shufflenet_v1_g3,
    "shufflenet_v1_g4": shufflenet_v1_g4,
    "shufflenet_v1_g8": shufflenet_v1_g8,
    "shufflenet_v2_x0_5": shufflenet_v2_x0_5,
    "shufflenet_v2_x1_0": shufflenet_v2_x1_0,
    "shufflenet_v2_x1_5": shufflenet_v2_x1_5,
    "shufflenet_v2_x2_0": shufflenet_v2_x2_0,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "llama_7b": llama_7b,
    "llama_tiny": llama_tiny,
    "mixtral_8x7b": mixtral_8x7b,
    "mixtral_tiny": mixtral_tiny,
}

__all__ = [
    "MODELS",
    "BasicBlock",
    "Bottleneck",
    "KVCache",
    "LlamaDecoder",
    "MixtralDecoder",
    "MobileNetV1",
    "MobileNetV2",
    "RMSNorm",
    "ResNet",
    "ShuffleNetV1",
    "ShuffleNetV2",
    "channel_shuffle",
    "llama_7b",
    "llama_7b_decode",
    "llama_7b_prefill",
    "llama_tiny",
    "llama_tiny_decode",
    "llama_tiny_prefill",
    "mixtral_8x7b",
    "mixtral_8x7b_decode",
    "mixtral_8x7b_prefill",
    "mixtral_tiny",
    "mixtral_tiny_decode",
    "mixtral_tiny_prefill",
    "mobilenet_v1",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "shufflenet_v1_g1",
    "shufflenet_v1_g2",
    "shufflenet_v1_g3",
    "shufflenet_v1_g4",
    "shufflenet_v1_g8",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]
