"""`costmodel batch` against one worker and against a shell loop of `costmodel analyze`.

Usage::

    python benchmarks/bench_batch.py [--rounds N] [--targets PATTERN ...] [--format markdown|json]

The collection is the zoo and the ShuffleNetV2 guideline networks (`costmodel.zoo:*`,
`costmodel.zoo.guidelines:*`). Three ways to get its table, each a fresh process as a user
runs it (start-up, cluster start and torch imports included):

* ``batch -w2``: ``costmodel batch ... --workers 2``;
* ``batch -w1``: the same with one worker;
* ``shell loop``: ``for t in ...; do costmodel analyze "$t" --format json; done``, which pays
  Python's and torch's start-up once per model.

The three run in rounds, interleaved (the order rotating), and each is scored by its least wall
time over the rounds: on a shared machine a run is only ever slowed down. The load average
before and after is printed, since other processes share the cores. Every batch row's totals
are checked against the shell loop's JSON (a mismatch exits 1). Aims: >= 1.7x over one worker,
>= 5x over the shell loop.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from costmodel.batch import expand  # noqa: E402
from costmodel.batch.rows import read  # noqa: E402

DEFAULT_TARGETS = ["costmodel.zoo:*", "costmodel.zoo.guidelines:*"]
AIMS = {"batch -w1": 1.7, "shell loop": 5.0}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def run_batch(patterns: list[str], workers: int, folder: Path) -> tuple[float, Path]:
    out = folder / f"batch-w{workers}.csv"
    command = [sys.executable, "-m", "costmodel.cli", "batch", *patterns, "--workers",
               str(workers), "-o", str(out), "--quiet"]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=_env(), stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, out


def run_loop(targets: list[str], folder: Path) -> tuple[float, Path]:
    out = folder / "loop.jsonl"
    python = shlex.quote(sys.executable)
    quoted = " ".join(shlex.quote(t) for t in targets)
    script = (f'for t in {quoted}; do {python} -m costmodel.cli analyze "$t" --format json '
              f'| tr -d "\\n"; echo; done > {shlex.quote(str(out))}')
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True, env=_env())
    return time.perf_counter() - start, out


def check(batch_csv: Path, loop_jsonl: Path) -> list[str]:
    """Targets whose batch totals differ from `costmodel analyze`'s."""
    singles = [json.loads(line) for line in loop_jsonl.read_text().splitlines() if line]
    rows = {r["target"]: r for r in read(str(batch_csv))}
    bad = []
    for single in singles:
        row = rows.get(single["model"]) or next(
            (r for t, r in rows.items() if t.endswith(single["model"])), None)
        if row is None or any(row[k] != v for k, v in single["totals"].items()):
            bad.append(single["model"])
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--targets", nargs="+", default=DEFAULT_TARGETS,
                        help="patterns or targets (default: the zoo and guideline networks)")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    args = parser.parse_args()

    targets = [t.target for t in expand(args.targets)]
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"batch -w2": [], "batch -w1": [], "shell loop": []}
    mismatches: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for index in range(args.rounds):
            order = list(times)
            order = order[index % 3:] + order[:index % 3]
            outputs: dict[str, Path] = {}
            for name in order:
                if name == "shell loop":
                    seconds, outputs[name] = run_loop(targets, folder)
                else:
                    seconds, outputs[name] = run_batch(args.targets, int(name[-1]), folder)
                times[name].append(seconds)
                print(f"round {index + 1}: {name}: {seconds:.1f} s", file=sys.stderr)
            for name in ("batch -w2", "batch -w1"):
                mismatches += [f"{name}: {t}" for t in check(outputs[name],
                                                             outputs["shell loop"])]
    load_after = os.getloadavg()
    best = {name: min(values) for name, values in times.items()}
    speedup = {name: best[name] / best["batch -w2"] for name in best}
    result: dict[str, Any] = {
        "targets": len(targets), "rounds": args.rounds, "cores": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "seconds": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
        "best_s": {k: round(v, 2) for k, v in best.items()},
        "speedup_of_w2": {k: round(v, 2) for k, v in speedup.items()},
        "aims_met": {k: speedup[k] >= aim for k, aim in AIMS.items()},
        "mismatches": mismatches,
    }
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(f"{len(targets)} targets, {args.rounds} rounds, {os.cpu_count()} cores; load "
              f"average (1, 5, 15 min) {result['load_before']} before, "
              f"{result['load_after']} after\n")
        print("| run | wall time, best (s) | every round (s) | batch -w2 is faster by |")
        print("|---|---|---|---|")
        for name in times:
            aim = f" (aim {AIMS[name]}x)" if name in AIMS else ""
            print(f"| {name} | {best[name]:.1f} | "
                  f"{', '.join(f'{v:.1f}' for v in times[name])} | {speedup[name]:.2f}x{aim} |")
        print(f"\ntotals equal to `costmodel analyze`'s: "
              f"{'all' if not mismatches else 'NOT ' + ', '.join(mismatches)}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
