"""Re-score profiles that `bench_latency.py --save DIR` kept, against the held-out times it
measured, without timing anything again: the way to try another estimator setting on the
very rows and measurements of a run.

Usage::

    python benchmarks/rescore_latency.py DIR [--threads 1] [--leaf 1 3 6]

For each `--leaf` (the forests' `min_samples_leaf`; 6 is the shipped setting) the forests
are refitted from the saved rows, the in-model terms fitted again to the sources' saved times
(`extra.source_seconds`), and the held-out models predicted; printed per calibration:
the share within 10% and 20%, Spearman, the median error per set, and the spread of the
calibrations' predictions per model. Refitted forests of another setting are for study only:
a profile of that setting is not one costmodel reads (docs/latency.md#how-a-profile-is-trusted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from bench_latency import held_out, within
from scipy.stats import spearmanr

from costmodel.analysis import Analysis, analyze_loaded
from costmodel.errors import CostModelError
from costmodel.latency import learned
from costmodel.latency.calibrate import in_model
from costmodel.latency.predict import predict
from costmodel.latency.profile import DeviceProfile, read_profile
from costmodel.latency.sources import SOURCES


def rescore(profiles: list[DeviceProfile], cases: dict[str, tuple[str, Analysis]],
            measured: dict[str, float]) -> list[str]:
    names = [n for n in cases if n in measured]
    meas = [measured[n] for n in names]
    preds = {n: [predict(cases[n][1], p).total() for p in profiles] for n in names}
    lines = []
    for k in range(len(profiles)):
        p = [preds[n][k] for n in names]
        by_set: dict[str, list[float]] = {}
        for n, a, b in zip(names, p, meas):
            by_set.setdefault(cases[n][0], []).append(a / b - 1)
        sets = " ".join(f"{g} {100 * statistics.median(v):+.0f}%" for g, v in sorted(
            by_set.items()))
        lines.append(f"  calibration {k + 1}: within 10% {100 * within(p, meas, 0.1):.0f}%, "
                     f"within 20% {100 * within(p, meas, 0.2):.0f}%, Spearman "
                     f"{spearmanr(p, meas)[0]:.3f}; median error by set: {sets}")
    if len(profiles) > 1:
        spread = [max(preds[n]) / min(preds[n]) - 1 for n in names]
        lines.append(f"  spread of the calibrations per model: median "
                     f"{100 * statistics.median(spread):.1f}%, largest {100 * max(spread):.1f}%")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="what bench_latency.py --save wrote")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--leaf", type=int, nargs="+", default=[1, 3, 6],
                        help="min_samples_leaf values to refit with (default 1 3 6)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    found = sorted(args.dir.glob(f"{args.threads}t-cal*.json"))
    measured_file = args.dir / f"{args.threads}t-measured.json"
    if not found or not measured_file.exists():
        print(f"rescore_latency: {args.dir} holds no {args.threads}t-cal*.json and "
              f"{measured_file.name} (write them with bench_latency.py --save)", file=sys.stderr)
        return 2
    measured = {n: v["measured_s"] for n, v in json.loads(measured_file.read_text()).items()}
    cases = {c.name: (c.group, c.analysis) for c in (build() for build in held_out())}
    sources = {n: analyze_loaded(load("meta")) for n, load in SOURCES.items()}
    try:
        profiles = [read_profile(f) for f in found]  # read (and checked) as shipped
    except CostModelError as exc:
        print(f"rescore_latency: {exc}", file=sys.stderr)
        return 2
    if any(p.kernels is None for p in profiles):
        print(f"rescore_latency: {args.dir}: a profile without learned predictors",
              file=sys.stderr)
        return 2
    shipped = dict(learned.ESTIMATOR)
    for leaf in args.leaf:
        learned.ESTIMATOR.update(min_samples_leaf=leaf)
        try:
            refitted = [_refit(p, sources) for p in profiles]
            print(f"min_samples_leaf={leaf}:")
            print("\n".join(rescore(refitted, cases, measured)))
        finally:
            learned.ESTIMATOR.clear()
            learned.ESTIMATOR.update(shipped)
    return 0


def _refit(profile: DeviceProfile, sources: dict[str, Analysis]) -> DeviceProfile:
    """The profile's forests refitted (on first use) with the current ESTIMATOR, and its
    in-model scale and per-op cost fitted again to the sources' saved times, as calibration
    fits them to its own forests."""
    kernels = profile.kernels
    assert kernels is not None
    for rows in kernels.classes.values():
        rows._model = None
    measured = profile.extra.get("source_seconds")
    if not measured:  # a profile from before the sources' times were kept
        return profile
    fit = in_model(measured, sources, profile)
    return replace(profile, kernels=replace(kernels, in_model=fit.scale, in_model_op_s=fit.op_s,
                                            in_model_ratios=fit.ratios, in_model_fit=fit.fit))


if __name__ == "__main__":
    sys.exit(main())
