"""Time `costmodel check` end to end, as a CI job runs it, over six zoo models.

Usage::

    python benchmarks/bench_check.py [--models NAME ...] [--runs N] [--keep DIR]

In a temporary project it writes a costmodel.toml declaring the models (input 1x3x224x224,
a max_mac budget each and a baseline), runs `costmodel baseline` once, then `costmodel check`
`--runs` times (default 3) as subprocesses, so each wall time includes interpreter start-up and
the torch import, as in CI. It prints the wall times and, from one `--format json` run, how long
each model took inside the process. The aim: under 30 s for the six default models; the exit
code is 1 when it is missed, as for the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

DEFAULT_MODELS = ["mobilenet_v1", "mobilenet_v2", "shufflenet_v1_g3", "shufflenet_v2_x1_0",
                  "resnet18", "resnet50"]
AIM_SECONDS = 30.0


def costmodel_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m costmodel.cli`."""
    script = Path(sys.executable).with_name("costmodel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "costmodel.cli"]


def write_project(root: Path, models: list[str]) -> None:
    lines = ['baseline = "costmodel.lock.json"', 'tolerance = "0.5%"', ""]
    for name in models:
        lines += [f"[models.{name}]", f'target = "costmodel.zoo:{name}"',
                  'input_shape = "1,3,224,224"', 'max_mac = "1G"', ""]
    (root / "costmodel.toml").write_text("\n".join(lines))


def timed(argv: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR", help="build the project in DIR and keep it")
    args = parser.parse_args()

    root = Path(args.keep or tempfile.mkdtemp(prefix="bench_check_"))
    root.mkdir(parents=True, exist_ok=True)
    write_project(root, args.models)
    cli = costmodel_command()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}, load average {load:.2f}, "
          f"{len(args.models)} models, input 1x3x224x224\n")

    seconds, done = timed([*cli, "baseline"], root)
    if done.returncode != 0:
        sys.exit(f"costmodel baseline failed ({done.returncode}): {done.stderr.strip()}")
    rows = [["costmodel baseline", f"{seconds:.2f}", f"{seconds:.2f}", f"{seconds:.2f}", 1]]
    times = []
    for _ in range(args.runs):
        seconds, done = timed([*cli, "check"], root)
        if done.returncode != 0:
            sys.exit(f"costmodel check exited {done.returncode}: {done.stderr.strip()}")
        times.append(seconds)
    rows.append(["costmodel check", f"{statistics.median(times):.2f}", f"{min(times):.2f}",
                 f"{max(times):.2f}", len(times)])
    seconds, done = timed([*cli, "check", "--format", "json"], root)
    report = json.loads(done.stdout)
    rows.append(["costmodel check --format json", f"{seconds:.2f}", f"{seconds:.2f}",
                 f"{seconds:.2f}", 1])
    print(tabulate(rows, ["command", "median s", "min s", "max s", "runs"],
                   tablefmt="github", disable_numparse=True))
    print()
    per_model = [[m["name"], f"{m['seconds']:.2f}", m["ok"]] for m in report["models"]]
    per_model.append(["(sum)", f"{sum(m['seconds'] for m in report['models']):.2f}", ""])
    print(tabulate(per_model, ["model (inside check)", "s", "ok"], tablefmt="github",
                   disable_numparse=True))
    met = statistics.median(times) < AIM_SECONDS
    print(f"\naim: check over {len(args.models)} models under {AIM_SECONDS:.0f} s: "
          f"{'met' if met else 'MISSED'} (median {statistics.median(times):.2f} s)")
    if not args.keep:
        shutil.rmtree(root)
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
