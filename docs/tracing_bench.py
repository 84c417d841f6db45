"""Time the ways of capturing a model's ops that docs/tracing.md compares, costmodel's own
tracer among them, and show what each one records.

    .venv/bin/python docs/tracing_bench.py [resnet50|llama_tiny|llama_2l_7b ...]
    .venv/bin/python docs/tracing_bench.py --ops [MODEL]

Every model is built on the meta device (no memory is allocated for weights or activations);
each method runs once to warm up, then three times; the minimum is printed in milliseconds.
`--ops` prints, for each method that builds a graph, its op count, how many ops carry a module
stack and how many of the ops that matter for counting (linear layers, attention, the products
and transposes they lower to) it has, then the attention count of FlopCounterMode on meta and
on CPU tensors against costmodel and the model's closed form (default model: llama_tiny).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils.flop_counter import FlopCounterMode

import costmodel
from costmodel.capture.load import InputSpec
from costmodel.capture.trace import trace
from costmodel.zoo import LlamaDecoder, llama_tiny, resnet50

REPEATS = 3


def build(name: str, device: str = "meta") -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    with torch.device(device):
        if name == "resnet50":
            return resnet50().eval(), (torch.empty(1, 3, 224, 224),)
        if name == "llama_tiny":
            model = llama_tiny().eval()
        elif name == "llama_2l_7b":  # two LLaMA-7B layers: d 4096, 32 heads, 11008, 2048 tokens
            model = LlamaDecoder(n_layers=2).eval()
        else:
            raise SystemExit(f"unknown model {name}")
    return model, tuple(torch.zeros(a.shape, dtype=a.dtype, device=device)
                        for a in model.example_inputs())


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

    def whole() -> object:
        return costmodel.analyze(model, inputs=args)  # trace, graph and costs

    return {
        "costmodel.capture.trace (dispatch-mode recorder), no_grad": recorder,
        "costmodel.analyze (recorder + graph + costs)": whole,
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


#: ops worth counting: what linear layers and attention stay as, or lower to
WATCHED = ("linear", "scaled_dot_product_attention", "t", "mm", "addmm", "bmm", "_softmax")


def fx_graph(result: object) -> torch.fx.Graph:
    """The torch.fx graph of an ExportedProgram, a GraphModule or a costmodel Traced."""
    graph = getattr(result, "graph", None)
    assert isinstance(graph, torch.fx.Graph), type(result)
    return graph


def show_ops(name: str) -> None:
    """What each graph-building method records, and who counts attention."""
    model, args = build(name)
    print(f"{name}: inputs {[tuple(a.shape) for a in args]}")
    skip = ("costmodel.analyze", "FlopCounterMode")
    for label, fn in methods(model, args).items():
        if label.startswith(skip) or (label.endswith("no_grad") and "costmodel" not in label):
            continue
        calls = [n for n in fx_graph(fn()).nodes
                 if n.op == "call_function" and "getitem" not in str(n.target)]
        stacks = sum(1 for n in calls if n.meta.get("nn_module_stack"))
        names = Counter(getattr(n.target, "__name__", str(n.target)).split(".")[0]
                        for n in calls)
        watched = {k: names[k] for k in WATCHED if names[k]}
        print(f"  {label:<52} {len(calls):4d} ops {stacks:4d} with module stack {watched}")
    with FlopCounterMode(display=False) as meta_counter, torch.no_grad():
        model(*args)
    cpu_model, cpu_args = build(name, "cpu")
    with FlopCounterMode(display=False) as cpu_counter, torch.no_grad():
        cpu_model(*cpu_args)
    print(f"  FlopCounterMode on meta: {_flops(meta_counter)}")
    print(f"  FlopCounterMode on cpu:  {_flops(cpu_counter)}")
    madds = costmodel.analyze(model, inputs=args).total().madds
    closed = model.mult_adds() if hasattr(model, "mult_adds") else "n/a"
    print(f"  costmodel: madds {madds} 2*madds {2 * madds} closed form {closed}")


def _flops(counter: FlopCounterMode) -> tuple[int, dict[str, int]]:
    per_op = counter.get_flop_counts().get("Global", {})
    return counter.get_total_flops(), {str(k): v for k, v in per_op.items()}


def main(names: list[str]) -> None:
    warnings.simplefilter("ignore")
    if names[:1] == ["--ops"]:
        show_ops(names[1] if len(names) > 1 else "llama_tiny")
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in names:
        model, args = build(name)
        print(f"\n{name}: inputs {[tuple(a.shape) for a in args]}")
        for label, fn in methods(model, args).items():
            print(f"  {label:<52} {best_ms(fn):8.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1:] or ["resnet50", "llama_tiny", "llama_2l_7b"])
