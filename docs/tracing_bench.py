"""Time the ways of capturing a model's ops that docs/tracing.md compares, costmodel's own
tracer among them.

    .venv/bin/python docs/tracing_bench.py [resnet50|llama_tiny|llama_2l_7b ...]

Every model is built on the meta device (no memory is allocated for weights or activations);
each method runs once to warm up, then three times; the minimum is printed in milliseconds.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils.flop_counter import FlopCounterMode

from costmodel.load import InputSpec
from costmodel.trace import trace
from costmodel.zoo import LlamaDecoder, llama_tiny, resnet50

REPEATS = 3


def build(name: str) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    with torch.device("meta"):
        if name == "resnet50":
            return resnet50().eval(), (torch.empty(1, 3, 224, 224),)
        if name == "llama_tiny":
            model = llama_tiny().eval()
        elif name == "llama_2l_7b":  # two LLaMA-7B layers: d 4096, 32 heads, 11008, 2048 tokens
            model = LlamaDecoder(n_layers=2).eval()
        else:
            raise SystemExit(f"unknown model {name}")
    return model, model.example_inputs()


def methods(model: nn.Module, args: tuple[torch.Tensor, ...]) -> dict[str, Callable[[], object]]:
    def flop_counter() -> object:
        with FlopCounterMode(display=False) as counter:
            model(*args)
        return counter.get_total_flops()

    def flop_counter_no_grad() -> object:
        with torch.no_grad():
            return flop_counter()

    def forward(*inputs: torch.Tensor) -> object:
        return model(*inputs)

    # make_fx records module stacks only for a callable that carries `_orig_mod` (as
    # torch.export's wrapper does); given the module itself it silently records none.
    forward._orig_mod = model  # type: ignore[attr-defined]

    def fx(no_grad: bool, **options: bool) -> Callable[[], object]:
        f = forward if options.get("record_module_stack") else model

        def run() -> object:
            with torch.no_grad() if no_grad else torch.enable_grad():
                graph = make_fx(f, **options)(*args)
            if options.get("record_module_stack"):
                calls = [n for n in graph.graph.nodes if n.op == "call_function"]
                assert all(n.meta.get("nn_module_stack") for n in calls), "no module stacks"
            return graph

        return run

    def export(no_grad: bool = False, decompose: bool = False) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad() if no_grad else torch.enable_grad():
                program = torch.export.export(model, args, strict=False)
                return program.run_decompositions() if decompose else program

        return run

    specs = [InputSpec(tuple(a.shape), a.dtype) for a in args]

    def recorder() -> object:
        return trace(model, specs)  # costmodel's tracer: eval, no_grad, on meta

    return {
        "costmodel.trace (dispatch-mode recorder), no_grad": recorder,
        "FlopCounterMode, run on meta": flop_counter,
        "FlopCounterMode, run on meta, no_grad": flop_counter_no_grad,
        "make_fx (post-dispatch, no module stacks)": fx(False),
        "make_fx (post-dispatch, no module stacks), no_grad": fx(True),
        "make_fx with module stacks": fx(False, record_module_stack=True),
        "make_fx with module stacks, no_grad": fx(True, record_module_stack=True),
        "make_fx pre_dispatch with module stacks": fx(False, pre_dispatch=True,
                                                      record_module_stack=True),
        "make_fx pre_dispatch with module stacks, no_grad": fx(True, pre_dispatch=True,
                                                               record_module_stack=True),
        "torch.export non-strict": export(),
        "torch.export non-strict, no_grad": export(no_grad=True),
        "torch.export + run_decompositions": export(decompose=True),
        "torch.export + run_decompositions, no_grad": export(no_grad=True, decompose=True),
    }


def best_ms(fn: Callable[[], object]) -> float:
    fn()  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main(names: list[str]) -> None:
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in names:
        model, args = build(name)
        print(f"\n{name}: inputs {[tuple(a.shape) for a in args]}")
        for label, fn in methods(model, args).items():
            print(f"  {label:<52} {best_ms(fn):8.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1:] or ["resnet50", "llama_tiny", "llama_2l_7b"])
