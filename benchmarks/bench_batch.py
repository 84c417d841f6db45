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

``--summarize FILE`` instead prints the markdown summary of a batch output file (docs/batch.md's
section on ``hf:*``): rows by status, failures by cause with every model named, the
unsupported ops, families, the largest models.
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


#: (cause, whether the model type builds from its default config), tried in order on the error
CAUSES: list[tuple[str, str, bool]] = [
    ("Unrecognized configuration class", "no model class for the config (a sub-model's config)",
     False),
    ("requires the", "needs a library that is not installed", False),
    ("cannot build the model from its config", "the default config does not build", False),
    ("unknown model type", "the default config does not build", False),
    ("ValidationError", "the default config does not build", False),
    ("rejects input shape", "rejects the default inputs (it needs others as well)", True),
    ("no default for the main input", "no default for its main input", True),
    ("cannot trace on shapes alone", "control flow on tensor values (meta tensors)", True),
]


def cause(error: str) -> tuple[str, bool]:
    for needle, text, builds in CAUSES:
        if needle in error:
            return text, builds
    return f"other: {error.split(':')[0]}", True


def summarize(path: str) -> str:
    """The markdown summary of a batch output file."""
    from collections import Counter, defaultdict
    from statistics import median

    from costmodel.formatting import si

    rows = read(path)
    status = Counter(r["status"] for r in rows)
    causes: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for r in rows:
        if r["status"] in ("error", "timeout"):
            key = ("timeout", True) if r["status"] == "timeout" else cause(r["error"] or "")
            causes[key].append(r["target"].removeprefix("hf:"))
    unbuilt = sum(len(v) for (_, builds), v in causes.items() if not builds)
    analysed = status["ok"] + status["unsupported"]
    builds = len(rows) - unbuilt
    out = [f"| rows | {len(rows)} |", "|---|---|",
           f"| build from the default config | {builds} |",
           f"| analysed (ok + unsupported ops) | {analysed} ({100 * analysed / builds:.0f}% of "
           f"those that build) |",
           f"| of which with unsupported ops | {status['unsupported']} |",
           f"| failed, of those that build | {builds - analysed} |",
           f"| do not build from the default config | {unbuilt} |", ""]
    out += ["| cause | builds | models | which |", "|---|---|---|---|"]
    for (text, ok), names in sorted(causes.items(), key=lambda kv: (not kv[0][1],
                                                                    -len(kv[1]))):
        out.append(f"| {text} | {'yes' if ok else 'no'} | {len(names)} | "
                   f"{', '.join(sorted(names))} |")
    ops: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        for item in (r["unsupported_ops"] or "").split(";") if r["status"] == "unsupported" \
                else []:
            ops[item.rpartition(":")[0]].append(r["target"].removeprefix("hf:"))
    out += ["", "| unsupported op | models |", "|---|---|"]
    out += [f"| `{op}` | {', '.join(sorted(names))} |" for op, names in sorted(ops.items())]
    done = [r for r in rows if r["status"] in ("ok", "unsupported")]
    families: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in done:
        families[r["family"] or ""].append(r)
    out += ["", "| family | models | median Mult-Adds | median MAC bytes | median Mult-Adds "
            "per MAC byte |", "|---|---|---|---|---|"]
    for family, mine in sorted(families.items(), key=lambda kv: -len(kv[1])):
        out.append(f"| {family} | {len(mine)} | {si(median(r['madds'] for r in mine))} | "
                   f"{si(median(r['mac_bytes'] for r in mine))} | "
                   f"{median(r['madds'] / r['mac_bytes'] for r in mine if r['mac_bytes']):.1f}"
                   f" |")
    seconds = sorted((r["seconds"] or 0, r["target"]) for r in rows)
    out += ["", f"Analysis time per model: median {median(s for s, _ in seconds):.1f} s, the "
            f"slowest {', '.join(f'{t} {s:.0f} s' for s, t in reversed(seconds[-5:]))}."]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summarize", metavar="FILE",
                        help="print the markdown summary of a batch output file and stop")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--targets", nargs="+", default=DEFAULT_TARGETS,
                        help="patterns or targets (default: the zoo and guideline networks)")
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--no-loop", action="store_true",
                        help="batch -w2 against -w1 only (a collection too large to loop over)")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(args.summarize))
        return 0

    targets = [t.target for t in expand(args.targets)]
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"batch -w2": [], "batch -w1": [],
                                     **({} if args.no_loop else {"shell loop": []})}
    mismatches: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for index in range(args.rounds):
            order = list(times)
            order = order[index % len(order):] + order[:index % len(order)]
            outputs: dict[str, Path] = {}
            for name in order:
                if name == "shell loop":
                    seconds, outputs[name] = run_loop(targets, folder)
                else:
                    seconds, outputs[name] = run_batch(args.targets, int(name[-1]), folder)
                times[name].append(seconds)
                print(f"round {index + 1}: {name}: {seconds:.1f} s", file=sys.stderr)
            for name in ("batch -w2", "batch -w1") if not args.no_loop else ():
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
        "aims_met": {k: speedup[k] >= aim for k, aim in AIMS.items() if k in speedup},
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
        if not args.no_loop:
            print(f"\ntotals equal to `costmodel analyze`'s: "
                  f"{'all' if not mismatches else 'NOT ' + ', '.join(mismatches)}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
