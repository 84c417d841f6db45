"""Op coverage and count agreement on `transformers` architectures that nobody here wrote.

Usage::

    python benchmarks/bench_coverage.py [--models TYPE ...] [--format markdown|json]
                                        [--no-reference] [--full-size] [--quiet]

Each architecture is built from the library's default config for its model type, made small
(2 layers, width 64, a 1,000-token vocabulary, 4 experts: see SMALL and EXTRA; the point is op
coverage and count agreement, not size), through the same path as `costmodel analyze
hf:MODEL_TYPE` (costmodel/capture/hf.py: on meta, inputs from the model's main input); with
`--full-size`, at the default config's own sizes, without torch's reference. Per model:

* analysed: yes, `yes (fake)` where the meta trace stopped at a value check that the model
  skips on fake tensors (transformers' `is_tracing`) and the retry on fake tensors went through;
  `execute` when only `analyze(..., execute=True)` did (tried only when the
  installed costmodel has that keyword); no, with the error's line;
* the unsupported ops and their counts;
* Mult-Adds, costmodel's, and torch's: FlopCounterMode over a real forward pass of the same
  config on the CPU (random weights; token ids drawn in the vocabulary; eager attention and
  eager experts, so that torch counts every matmul: its CPU attention and grouped-matmul
  kernels would count zero), FLOPs / 2; and the difference in %;
* the analysis time (build not included; one run, on whatever load the machine carries).

The run ends with the aims (every model analysed, no unsupported op, every count within 1% of
torch's), each met or missed; the exit code is 1 when one is missed.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tabulate import tabulate
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from costmodel.analysis import analyze, analyze_loaded
from costmodel.capture import hf
from costmodel.errors import CostModelError

#: (model type, family), the architectures tried
MODELS: list[tuple[str, str]] = [
    ("gpt2", "decoder"), ("gpt_neox", "decoder"), ("gptj", "decoder"), ("codegen", "decoder"),
    ("opt", "decoder"), ("bloom", "decoder"), ("falcon", "decoder"), ("mpt", "decoder"),
    ("gpt_bigcode", "decoder"), ("xglm", "decoder"), ("biogpt", "decoder"),
    ("llama", "decoder"), ("mistral", "decoder"), ("qwen2", "decoder"), ("qwen3", "decoder"),
    ("gemma", "decoder"), ("gemma2", "decoder"), ("phi", "decoder"), ("phi3", "decoder"),
    ("starcoder2", "decoder"), ("olmo", "decoder"), ("granite", "decoder"),
    ("cohere", "decoder"), ("stablelm", "decoder"),
    ("bert", "encoder"), ("roberta", "encoder"), ("distilbert", "encoder"),
    ("albert", "encoder"), ("electra", "encoder"), ("deberta-v2", "encoder"),
    ("mpnet", "encoder"), ("modernbert", "encoder"), ("mobilebert", "encoder"),
    ("squeezebert", "encoder"), ("convbert", "encoder"), ("canine", "encoder"),
    ("big_bird", "encoder"), ("longformer", "encoder"), ("funnel", "encoder"),
    ("xlnet", "encoder"), ("fnet", "encoder"), ("esm", "encoder"),
    ("t5", "encoder-decoder"), ("mt5", "encoder-decoder"), ("umt5", "encoder-decoder"),
    ("longt5", "encoder-decoder"), ("bart", "encoder-decoder"), ("mbart", "encoder-decoder"),
    ("pegasus", "encoder-decoder"), ("marian", "encoder-decoder"),
    ("blenderbot", "encoder-decoder"), ("m2m_100", "encoder-decoder"),
    ("led", "encoder-decoder"),
    ("vit", "vision"), ("deit", "vision"), ("beit", "vision"), ("dinov2", "vision"),
    ("clip_vision_model", "vision"), ("siglip_vision_model", "vision"), ("yolos", "vision"),
    ("swin", "vision"), ("convnext", "vision"), ("convnextv2", "vision"),
    ("resnet", "vision"), ("regnet", "vision"), ("mobilenet_v2", "vision"),
    ("efficientnet", "vision"), ("mobilevit", "vision"), ("levit", "vision"),
    ("poolformer", "vision"), ("segformer", "vision"), ("dpt", "vision"),
    ("videomae", "video"),
    ("wav2vec2", "speech"), ("hubert", "speech"), ("wavlm", "speech"), ("sew", "speech"),
    ("unispeech", "speech"), ("data2vec-audio", "speech"), ("whisper", "speech"),
    ("speech_to_text", "speech"),
    ("mamba", "state-space"), ("mamba2", "state-space"), ("rwkv", "state-space"),
    ("recurrent_gemma", "state-space"),
    ("mixtral", "MoE"), ("qwen2_moe", "MoE"), ("olmoe", "MoE"), ("phimoe", "MoE"),
    ("granitemoe", "MoE"), ("jamba", "MoE"), ("switch_transformers", "MoE"),
    ("deepseek_v3", "MoE"),
]

#: sizes set wherever a config has the key: small and mutually consistent
SMALL: dict[str, Any] = {
    "num_hidden_layers": 2, "n_layer": 2, "num_layers": 2, "n_layers": 2,
    "encoder_layers": 2, "decoder_layers": 2, "num_decoder_layers": 2,
    "hidden_size": 64, "n_embd": 64, "d_model": 64, "dim": 64,
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "num_heads": 4,
    "encoder_attention_heads": 4, "decoder_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 16, "d_kv": 16,
    "intermediate_size": 128, "n_inner": 128, "d_ff": 128, "ffn_dim": 128,
    "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
    "vocab_size": 1000,
    "num_local_experts": 4, "num_experts": 4, "num_experts_per_tok": 2,
    "moe_intermediate_size": 64, "shared_expert_intermediate_size": 128,
}
#: per model type, on top of SMALL (a vision model keeps its widths: its defaults are small;
#: None keeps the library's default)
EXTRA: dict[str, dict[str, Any]] = {
    "vit": {"image_size": 64}, "deit": {"image_size": 64}, "beit": {"image_size": 64},
    "dinov2": {"image_size": 64},
    "swin": {"depths": [1, 1, 2, 1], "embed_dim": 32, "num_heads": [1, 2, 4, 8]},
    "convnext": {"depths": [1, 1, 2, 1], "hidden_sizes": [32, 64, 128, 256]},
    "resnet": {"depths": [1, 1, 1, 1]}, "regnet": {"depths": [1, 1, 1, 1]},
    "segformer": {"depths": [1, 1, 1, 1]},
    "whisper": {"max_source_positions": 100, "max_target_positions": 64},
    "mamba2": {"num_heads": 8, "head_dim": 16, "n_groups": 1, "expand": 2},
    "gpt_neox": {"rotary_pct": 0.5}, "gptj": {"rotary_dim": 8}, "codegen": {"rotary_dim": 8},
    "efficientnet": {"image_size": 224}, "squeezebert": {"embedding_size": 64},
    "esm": {"pad_token_id": 1, "mask_token_id": 2}, "funnel": {"block_sizes": [1, 1, 1]},
    "videomae": {"image_size": 64, "num_frames": 4},
    "switch_transformers": {"num_sparse_encoder_layers": 2, "num_sparse_decoder_layers": 2},
    "deepseek_v3": {"head_dim": 8, "num_key_value_heads": 4, "qk_rope_head_dim": 8,
                    "qk_nope_head_dim": 8, "v_head_dim": 16, "kv_lora_rank": 32,
                    "q_lora_rank": 32, "n_routed_experts": 4, "n_group": 1, "topk_group": 1,
                    "first_k_dense_replace": 1},
}


@dataclass
class Row:
    model: str
    family: str
    analysed: str = "no"
    unsupported: dict[str, int] = field(default_factory=dict)
    madds: int | None = None
    torch_madds: int | None = None
    seconds: float | None = None
    error: str = ""

    @property
    def diff_pct(self) -> float | None:
        if self.madds is None or not self.torch_madds:
            return None
        return 100 * (self.madds - self.torch_madds) / self.torch_madds


def small_config(transformers: Any, model_type: str, full_size: bool = False) -> Any:
    """The default config with SMALL and EXTRA applied, passed to the constructor so that the
    sizes derived from them (per-layer lists, stage names) follow; as it is with `full_size`."""
    if full_size:
        return transformers.AutoConfig.for_model(model_type)
    defaults = transformers.AutoConfig.for_model(model_type).to_dict()
    extra = EXTRA.get(model_type, {})
    sizes = {k: v for k, v in SMALL.items() if k in defaults and not isinstance(defaults[k], list)}
    sizes.update(extra)
    sizes = {k: v for k, v in sizes.items() if v is not None}  # None in EXTRA: the default
    vocab = sizes.get("vocab_size", defaults.get("vocab_size"))
    for key, value in defaults.items():  # special tokens inside the smaller vocabulary
        if key.endswith("token_id") and isinstance(value, int) and vocab and value >= vocab:
            sizes[key] = 2
    return transformers.AutoConfig.for_model(model_type, **sizes)


def ours(config: Any, target: str, row: Row) -> hf.LoadedModel | None:
    """costmodel's analysis of the config, as `costmodel analyze hf:TYPE` runs it."""
    try:
        loaded = hf.load_config(config, target)
    except CostModelError as exc:
        row.error = str(exc)
        return None
    start = time.perf_counter()
    try:
        analysis = analyze_loaded(loaded)
        row.analysed = "yes"
    except CostModelError as exc:
        row.error = str(exc)
        if "execute" not in inspect.signature(analyze).parameters:
            return loaded
        try:  # as `costmodel analyze hf:TYPE --execute`: built on the CPU, run once
            executed = hf.load_config(copy.deepcopy(config), target, device="cpu")
            analysis = analyze_loaded(executed, execute=True)
            row.analysed, row.error = "execute", ""
        except CostModelError as exc2:
            row.error = str(exc2)
            return loaded
    row.seconds = time.perf_counter() - start
    row.madds = int(analysis.total().madds)
    row.unsupported = dict(analysis.unsupported())
    if any(note.startswith("traced on fake tensors") for note in analysis.notes):
        row.analysed += " (fake)"
    return loaded


def reference(transformers: Any, config: Any, loaded: hf.LoadedModel) -> int:
    """FlopCounterMode over a real CPU forward pass of the same config, FLOPs / 2."""
    config = copy.deepcopy(config)
    config._attn_implementation = "eager"
    config._experts_implementation = "eager"
    config.dtype = torch.float32
    torch.manual_seed(0)
    model_class = type(loaded.model)
    model = model_class._from_config(config, dtype=torch.float32).eval()
    vocab = getattr(config, "vocab_size", None) or 2
    names, _ = hf.default_inputs(model, config, "reference")
    inputs = {name: torch.randint(0, vocab, s.shape) if not s.dtype.is_floating_point
              else torch.randn(s.shape) for name, s in zip(names, loaded.inputs)}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs)
    return counter.get_total_flops() // 2


def run(models: list[tuple[str, str]], with_reference: bool, quiet: bool,
        full_size: bool = False) -> list[Row]:
    import transformers

    transformers.logging.set_verbosity_error()
    rows = []
    for model_type, family in tqdm(models, disable=quiet or not sys.stderr.isatty(),
                                   file=sys.stderr):
        row = Row(model_type, family)
        rows.append(row)
        try:
            config = small_config(transformers, model_type, full_size)
        except Exception as exc:  # a type this transformers does not have
            row.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            continue
        loaded = ours(config, f"hf:{model_type}", row)
        if loaded is None or not with_reference:
            continue
        try:
            row.torch_madds = reference(transformers, config, loaded)
        except Exception as exc:  # torch's own run failing is a finding, not a crash
            row.error = (row.error + " | " if row.error else "") + \
                f"torch: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return rows


def table(rows: list[Row]) -> str:
    body = []
    for r in rows:
        diff = r.diff_pct
        body.append([
            r.model, r.family, r.analysed,
            ", ".join(f"{k.removeprefix('aten.')} x{v}" for k, v in r.unsupported.items()),
            f"{r.madds:,}" if r.madds is not None else "",
            f"{r.torch_madds:,}" if r.torch_madds is not None else "",
            f"{diff:+.2f}%" if diff is not None else "",
            f"{r.seconds:.2f}" if r.seconds is not None else "",
            r.error[:90],
        ])
    headers = ["model", "family", "analysed", "unsupported ops", "Mult-Adds",
               "torch Mult-Adds", "diff", "s", "error"]
    if not any(r.error for r in rows):  # the column would be empty
        headers, body = headers[:-1], [line[:-1] for line in body]
    return tabulate(body, headers=headers, tablefmt="github")


def aims(rows: list[Row], with_reference: bool) -> list[tuple[str, bool]]:
    analysed = sum(r.analysed != "no" for r in rows)
    clean = sum(r.analysed != "no" and not r.unsupported for r in rows)
    result = [(f"every model analysed ({analysed}/{len(rows)})", analysed == len(rows)),
              (f"no unsupported op ({clean}/{len(rows)} clean)", clean == len(rows))]
    if with_reference:
        close = sum(r.diff_pct is not None and abs(r.diff_pct) <= 1 for r in rows)
        result.append((f"Mult-Adds within 1% of torch ({close}/{len(rows)})",
                       close == len(rows)))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", metavar="TYPE",
                        help="model types to try (default: all of MODELS)")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip torch's count (a real CPU forward pass per model)")
    parser.add_argument("--full-size", action="store_true",
                        help="the library's default configs as they are (no torch reference: "
                             "a real forward pass of every full-size model is out of reach)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    families = dict(MODELS)
    models = [(m, families.get(m, "?")) for m in args.models] if args.models else MODELS
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    with_reference = not (args.no_reference or args.full_size)
    rows = run(models, with_reference, args.quiet, args.full_size)
    elapsed = time.perf_counter() - start
    goals = aims(rows, with_reference)
    if args.format == "json":
        print(json.dumps({"schema": "costmodel-bench-coverage/1", "seconds": elapsed,
                          "models": [{**asdict(r), "diff_pct": r.diff_pct} for r in rows],
                          "aims": [{"aim": a, "met": ok} for a, ok in goals]}, indent=1))
    else:
        print(table(rows))
        print(f"\n{len(rows)} models in {elapsed:.0f} s (torch {torch.__version__}).\n")
        for aim, ok in goals:
            print(f"- {aim}: {'met' if ok else 'MISSED'}")
    return 0 if all(ok for _, ok in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
