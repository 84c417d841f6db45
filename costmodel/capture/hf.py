"""`hf:` targets: a Hugging Face `transformers` model built from its config alone, on meta.

`hf:ORG/NAME` reads the repository's `config.json` (from the local cache when offline; weights
and code are never fetched), `hf:PATH` a folder holding one, and `hf:MODEL_TYPE` (e.g.
`hf:bert`) the library's default config for that type. The model class is the config's first
`architectures` entry (the model as released, head included), else the base model, in the
config's dtype (bfloat16 for a mixture-of-experts config that names none). Inputs follow the
model's main input: token ids, pixels from the config's image size (and frames, for video),
one second of 16 kHz audio, or filter-bank features; `--input-shape` overrides the shapes
(token ids stay int64 unless a shape names its dtype). `transformers` is an optional
dependency: without it an `hf:` target is a one-line error.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from costmodel.capture.spec import InputSpec, LoadedModel, parse_shape
from costmodel.errors import CostModelError

PREFIX = "hf:"
#: token ids per sequence when the target gives no shape (fewer if the model's positions end)
DEFAULT_TOKENS = 128
#: samples of raw audio (one second at 16 kHz, what wav2vec2-style models are trained on)
DEFAULT_AUDIO_SAMPLES = 16000
DEFAULT_IMAGE_SIZE = 224
#: frames of filter-bank features (30 s at a 10 ms hop, what Whisper takes)
DEFAULT_FEATURE_FRAMES = 3000


def is_hf_target(target: str) -> bool:
    return target.startswith(PREFIX)


def rebase(target: str, base: Path) -> str:
    """An `hf:PATH` written relative to `base` (a budget file's folder), as a path from here;
    hf:ORG/NAME and hf:MODEL_TYPE as written."""
    ref = target[len(PREFIX):]
    folder = base / Path(ref).expanduser()
    if ref.startswith((".", "/", "~")) or folder.is_dir():
        return PREFIX + str(folder)
    return target


def load_hf(target: str, input_shapes: Sequence[str] | None = None, device: str = "meta"
            ) -> LoadedModel:
    """Config -> model on meta (on the CPU to run it, --execute) -> inputs named after the
    model's forward arguments."""
    transformers = _transformers(target)
    return load_config(read_config(target, transformers), target, input_shapes, device)


def load_config(config: Any, target: str, input_shapes: Sequence[str] | None = None,
                device: str = "meta") -> LoadedModel:
    """`load_hf` for a config object already at hand (the coverage benchmark's)."""
    transformers = _transformers(target)
    model = build_model(config, transformers, target, device)
    names, specs = default_inputs(model, config, target)
    if input_shapes:
        if len(input_shapes) > len(names):
            raise CostModelError(f"{target}: {len(input_shapes)} --input-shape given for "
                                 f"{len(names)} inputs ({', '.join(names)})")
        specs = [parse_shape(text, default.dtype) for text, default in zip(input_shapes, specs)]
        names = names[:len(specs)]
    _pass_as_keywords(model, names)
    notes = [f"built from its config alone ({type(model).__name__}); inputs "
             + ", ".join(f"{n} {'x'.join(map(str, s.shape))}" for n, s in zip(names, specs))]
    return LoadedModel(model, target, specs, notes)


def _transformers(target: str) -> Any:
    try:
        import transformers
    except ImportError:
        raise CostModelError(f"{target}: needs the transformers library "
                             "(pip install 'costmodel[bench]' or pip install transformers)"
                             ) from None
    transformers.logging.set_verbosity_error()  # its warnings would precede our one line
    return transformers


def read_config(target: str, transformers: Any) -> Any:
    """The config of `hf:PATH`, `hf:ORG/NAME` or `hf:MODEL_TYPE`; remote code is refused."""
    ref = target[len(PREFIX):]
    if not ref:
        raise CostModelError(f"{target}: name a model: hf:ORG/NAME, hf:PATH or hf:MODEL_TYPE")
    folder = Path(ref).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise CostModelError(f"{target}: no config.json in {folder}")
        return _from_pretrained(transformers, str(folder), target)
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise CostModelError(f"{target}: no such folder")
    if "/" in ref:
        return _from_pretrained(transformers, ref, target)
    try:
        return transformers.AutoConfig.for_model(ref)
    except ValueError:
        raise CostModelError(f"{target}: unknown model type {ref!r} (a transformers model "
                             "type such as bert, llama or vit; or hf:ORG/NAME, hf:PATH)"
                             ) from None


def _from_pretrained(transformers: Any, ref: str, target: str) -> Any:
    try:
        return transformers.AutoConfig.from_pretrained(ref, trust_remote_code=False)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise CostModelError(f"{target}: the model's code lives in its repository "
                                 "(trust_remote_code); costmodel runs only the transformers "
                                 "library's own models") from None
        raise CostModelError(f"{target}: cannot read config.json: {_one_line(exc)}") from None
    except OSError as exc:
        raise CostModelError(f"{target}: cannot get config.json (not cached, or no network, or "
                             f"no such repository): {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def build_model(config: Any, transformers: Any, target: str, device: str = "meta"
                ) -> nn.Module:
    """The config's architecture (else the base model) on `device`, in the config's
    dtype, without a KV cache (a forward pass is analysed) or downloaded backbones."""
    for key, value in (("use_cache", False), ("use_pretrained_backbone", False)):
        if hasattr(config, key):
            setattr(config, key, value)
    if getattr(config, "dtype", None) is None and _is_moe(config):
        config.dtype = torch.bfloat16  # grouped-matmul experts have a meta kernel for bf16 only
    classes = [getattr(transformers, a, None) for a in getattr(config, "architectures", None)
               or []]
    model_class = next((c for c in classes if c is not None), None) or _base_class(config,
                                                                                transformers)
    try:
        with torch.device(device), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            if model_class is not None:
                model = model_class._from_config(config)
            else:
                model = transformers.AutoModel.from_config(config)
    except Exception as exc:  # a config the library cannot build: one line, whatever it is
        raise CostModelError(f"{target}: cannot build the model from its config: "
                             f"{type(exc).__name__}: {_one_line(exc)}") from exc
    return model.eval()


def _base_class(config: Any, transformers: Any) -> Any:
    """AutoModel's class for the config; the first where it knows several (Funnel)."""
    try:
        mapped = transformers.MODEL_MAPPING[type(config)]
    except (KeyError, ValueError):
        return None  # AutoModel.from_config then says what is wrong
    return mapped[0] if isinstance(mapped, (tuple, list)) else mapped


def _attribute(config: Any, key: str) -> Any:
    """A config attribute or None: some configs raise their own errors for attributes they
    define per layer (dots3_note's `AmbiguousGlobalPerLayerAttributeError`), not AttributeError."""
    try:
        return getattr(config, key, None)
    except Exception:  # a config's property may raise anything; absent is what we need
        return None


def _is_moe(config: Any) -> bool:
    counts = [_attribute(config, k) for k in ("num_local_experts", "num_experts",
                                              "n_routed_experts", "moe_num_experts")]
    return any(isinstance(c, int) and c > 1 for c in counts)


def _float_dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def default_inputs(model: nn.Module, config: Any, target: str
                   ) -> tuple[list[str], list[InputSpec]]:
    """(forward argument names, shapes) of the model's main input, and of the decoder's token
    ids for an encoder-decoder."""
    main = getattr(model, "main_input_name", "input_ids")
    dtype = _float_dtype(model)
    if main == "input_ids":
        spec = InputSpec((1, _tokens(config)), torch.int64)
    elif main == "pixel_values":
        size = _config_value(config, "image_size", DEFAULT_IMAGE_SIZE)
        height, width = (size, size) if isinstance(size, int) else tuple(size)[-2:]
        channels = _config_value(config, "num_channels", 3)
        frames = getattr(config, "num_frames", None)  # a video model: frames before channels
        spec = InputSpec((1, *([frames] if frames else []), channels, height, width), dtype)
    elif main == "input_values":
        spec = InputSpec((1, DEFAULT_AUDIO_SAMPLES), dtype)
    elif main == "input_features" and hasattr(config, "num_mel_bins"):
        # Whisper-style encoders take exactly 2 x max_source_positions frames (30 s)
        frames = 2 * _config_value(config, "max_source_positions", 1500)
        spec = InputSpec((1, config.num_mel_bins, frames), dtype)
    elif main == "input_features" and hasattr(config, "input_feat_per_channel"):
        # Speech2Text-style: (frames, features); 3000 frames (30 s at a 10 ms hop) or fewer
        # where the positions after the convolutions' subsampling end sooner
        limit = config.max_source_positions * 2 ** getattr(config, "num_conv_layers", 0)
        features = config.input_feat_per_channel * getattr(config, "input_channels", 1)
        spec = InputSpec((1, min(DEFAULT_FEATURE_FRAMES, limit), features), dtype)
    else:
        raise CostModelError(f"{target}: no default for the main input {main!r}: pass "
                             "--input-shape")
    names, specs = [main], [spec]
    forward = inspect.signature(model.forward).parameters
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in forward:
        names.append("decoder_input_ids")
        specs.append(InputSpec((1, _tokens(config, decoder=True)), torch.int64))
    return names, specs


def _config_value(config: Any, key: str, default: Any) -> Any:
    """A config's value, or its vision (sub-)config's, or `default`."""
    for source in (config, getattr(config, "vision_config", None)):
        value = getattr(source, key, None) if source is not None else None
        if value is not None:
            return value
    return default


def _tokens(config: Any, decoder: bool = False) -> int:
    """DEFAULT_TOKENS, or fewer where the model's learned positions end sooner."""
    keys = ["max_position_embeddings", "n_positions", "max_target_positions" if decoder
            else "max_source_positions"]
    limits = [v for k in keys if isinstance(v := getattr(config, k, None), int) and v > 0]
    return min([DEFAULT_TOKENS, *limits])


def _pass_as_keywords(model: nn.Module, names: list[str]) -> None:
    """The tracer calls model(*inputs); a transformers forward wants decoder ids (and others)
    by name, so positional inputs are handed on as keywords."""

    def as_keywords(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (), {**dict(zip(names, args)), **kwargs}

    model.register_forward_pre_hook(as_keywords, with_kwargs=True)
