"""Time and peak memory of costmodel.analyze on LLaMA-7B built on meta, in-process and via the CLI.

Usage::

    python benchmarks/bench_llama.py [--model llama_7b] [--tracemalloc] [--cli-runs K]

In-process: builds the model from its zoo factory under ``torch.device("meta")`` (timed on its
own), runs ``costmodel.analyze(model, inputs=model.example_inputs())`` twice (first call, then
warm), and reports wall times and the process's peak resident set size (``ru_maxrss``) along
the way. With ``--tracemalloc`` a third analyze() runs under tracemalloc for the peak of
Python-level allocations (tracemalloc slows Python code down, so that run's time is reported apart).
Mult-Adds are printed next to the closed form
``n_layers * (4 S d^2 + 3 S d hidden + 2 S^2 d) + S d vocab``.

CLI: ``costmodel analyze costmodel.zoo:MODEL`` under ``/usr/bin/time -v`` (max RSS, elapsed
wall), or, where that does not exist, as a subprocess measured with ``RUSAGE_CHILDREN``.
The figures are printed as markdown tables, then the aims, each met or missed (exit code 1 if
one is missed): Mult-Adds equal to the closed form; for the CLI, every run under 2 GiB of peak
memory and under 60 s of wall time (without CLI runs, the in-process peak and analyze() time).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
import warnings

import torch
from tabulate import tabulate

import costmodel
from costmodel.zoo import MODELS, LlamaDecoder


def max_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def closed_form(model: LlamaDecoder, seq_len: int) -> int:
    """Mult-Adds of one forward pass, written out from the model's hyper-parameters."""
    s, d, hidden = seq_len, model.dim, model.hidden_dim
    return model.n_layers * (4 * s * d * d + 3 * s * d * hidden + 2 * s * s * d) \
        + s * d * model.vocab_size


def cli_costmodel() -> list[str]:
    """The `costmodel` command next to this interpreter, or `python -m costmodel.cli`."""
    exe = shutil.which("costmodel", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "costmodel.cli"]


def run_cli(target: str) -> tuple[float, float, str]:
    """Run `costmodel analyze TARGET`; return wall seconds, max RSS MiB and how it was measured."""
    cmd = [*cli_costmodel(), "analyze", target]
    gnu_time = "/usr/bin/time"
    if os.path.exists(gnu_time):
        start = time.perf_counter()
        proc = subprocess.run([gnu_time, "-v", *cmd], capture_output=True, text=True,
                              check=True)
        wall = time.perf_counter() - start
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        elapsed = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)",
                            proc.stderr)
        if elapsed:
            h, m, s = elapsed.groups()
            wall = int(h or 0) * 3600 + int(m) * 60 + float(s)
        if rss:
            return wall, int(rss.group(1)) / 1024, "/usr/bin/time -v"
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, rss_kib / 1024, "subprocess + RUSAGE_CHILDREN"


def main(argv: list[str] | None = None) -> int:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama_7b",
                        choices=[n for n in MODELS if n.startswith("llama")])
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also run analyze() under tracemalloc for its Python peak")
    parser.add_argument("--cli-runs", type=int, default=1, help="CLI runs (0: skip)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {load:.2f}\n")

    rss_start = max_rss_mib()
    start = time.perf_counter()
    with torch.device("meta"):
        model = MODELS[args.model]()
    assert isinstance(model, LlamaDecoder)
    build_s = time.perf_counter() - start
    rss_built = max_rss_mib()
    inputs = model.example_inputs()
    seq_len = inputs[0].shape[1]

    start = time.perf_counter()
    analysis = costmodel.analyze(model, inputs=inputs)
    analyze_s = time.perf_counter() - start
    rss_after = max_rss_mib()
    start = time.perf_counter()
    costmodel.analyze(model, inputs=inputs)
    again_s = time.perf_counter() - start
    madds = analysis.total().madds
    n_ops = len(analysis.ops())

    rows = [
        ["model", f"{args.model}: {model.n_layers} layers, d={model.dim}, "
                  f"hidden={model.hidden_dim}, S={seq_len}, vocab={model.vocab_size}"],
        ["op nodes in the graph", n_ops],
        ["build on meta (s)", f"{build_s:.2f}"],
        ["analyze() wall, first call in the process (s)", f"{analyze_s:.2f}"],
        ["analyze() wall, second call (s)", f"{again_s:.2f}"],
        ["ru_maxrss after imports (MiB)", f"{rss_start:.0f}"],
        ["ru_maxrss after build (MiB)", f"{rss_built:.0f}"],
        ["ru_maxrss after two analyze() (MiB)", f"{rss_after:.0f}"],
    ]
    if args.tracemalloc:
        tracemalloc.start()
        start = time.perf_counter()
        costmodel.analyze(model, inputs=inputs)
        traced_s = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows += [["tracemalloc peak of a third analyze() (MiB)", f"{peak / 2**20:.0f}"],
                 ["  that run's wall under tracemalloc (s)", f"{traced_s:.2f}"]]
    expected = closed_form(model, seq_len)
    rows += [
        ["Mult-Adds, costmodel", f"{int(madds):,}"],
        ["Mult-Adds, closed form", f"{expected:,}"],
        ["difference", f"{int(madds) - expected:,}"],
        ["params", f"{int(analysis.total().params):,}"],
    ]
    print(tabulate(rows, headers=["in-process", "value"], tablefmt="github",
                   disable_numparse=True))

    worst_wall, worst_rss = build_s + analyze_s, rss_after
    if args.cli_runs:
        target = f"costmodel.zoo:{args.model}"
        cli_rows = []
        runs = [run_cli(target) for _ in range(args.cli_runs)]
        for i, (wall, rss, how) in enumerate(runs):
            cli_rows.append([i + 1, f"{wall:.2f}", f"{rss:.0f}", how])
        print(f"\nCLI: costmodel analyze {target}\n")
        print(tabulate(cli_rows, headers=["run", "wall s", "max RSS MiB", "measured with"],
                       tablefmt="github", disable_numparse=True))
        worst_wall, worst_rss = max(r[0] for r in runs), max(r[1] for r in runs)
    where = "CLI, worst run" if args.cli_runs else "in-process, build + first analyze()"
    aims = [("Mult-Adds equal the closed form", int(madds) == expected),
            (f"peak memory under 2 GiB ({where}: {worst_rss:.0f} MiB)", worst_rss < 2048),
            (f"wall time under 60 s ({where}: {worst_wall:.2f} s)", worst_wall < 60)]
    print("\nAims\n")
    print(tabulate([[aim, "met" if met else "MISSED"] for aim, met in aims],
                   headers=["aim", "result"], tablefmt="github", disable_numparse=True))
    return 0 if all(met for _, met in aims) else 1


if __name__ == "__main__":
    sys.exit(main())
