"""What the calibrate, predict and validate commands do, behind the command line."""

from __future__ import annotations

import sys

import torch

from costmodel.device import resolve_device
from costmodel.errors import CostModelError
from costmodel.latency.profile import (
    DeviceProfile,
    load_profile,
    machine_profile_name,
    profile_dir,
    write_profile,
)


def check_threads(threads: int | None) -> int | None:
    if threads is not None and threads < 1:
        raise CostModelError(f"--threads must be at least 1, got {threads}")
    return threads


def calibrate_and_save(device: str, threads: int | None, output: str | None,
                       smoke: bool = False, quiet: bool = False, clock: str = "wall",
                       mode: str | None = None) -> tuple[DeviceProfile, str]:
    """Calibrate this machine and write the profile to `output`, or to the user's profile
    directory under the machine's name."""
    from costmodel.latency.calibrate import calibrate

    resolve_device(device)
    threads = check_threads(threads) or torch.get_num_threads()
    profile = calibrate(device, threads, smoke=smoke, quiet=quiet, clock=clock, mode=mode)
    path = output or str(profile_dir() / f"{profile.name}.json")
    write_profile(profile, path)
    return profile, path


def resolve_profile(spec: str | None, threads: int | None, quiet: bool = False
                    ) -> DeviceProfile:
    """--profile NAME|FILE, or this machine's calibrated CPU profile for --threads
    (calibrated first, with its progress bar, when there is none yet)."""
    check_threads(threads)
    if spec is not None:
        return checked(load_profile(spec), threads, quiet)
    threads = threads or torch.get_num_threads()
    name = machine_profile_name("cpu", threads)
    if (profile_dir() / f"{name}.json").is_file():
        return checked(load_profile(name), threads, quiet)
    if not quiet:
        print(f"costmodel: no calibrated profile {name!r} yet: calibrating this machine "
              f"(saved to {profile_dir()})", file=sys.stderr)
    profile, _ = calibrate_and_save("cpu", threads, None, quiet=quiet)
    return profile


def mismatches(profile: DeviceProfile) -> list[str]:
    """What differs between the software a calibrated profile was measured with and this
    one, each naming both (empty for a datasheet profile)."""
    found = []
    if profile.measured and profile.torch and profile.torch != torch.__version__:
        found.append(f"profile {profile.name!r} was calibrated with torch {profile.torch}, "
                     f"this is torch {torch.__version__}: its kernels may differ, calibrate "
                     "again")
    if profile.kernels is not None:
        from costmodel.latency.learned import sklearn_version

        if profile.kernels.sklearn != sklearn_version():
            found.append(f"profile {profile.name!r} was fitted with scikit-learn "
                         f"{profile.kernels.sklearn}, this is {sklearn_version()}: the refitted "
                         "predictors may differ slightly")
    return found


def checked(profile: DeviceProfile, threads: int | None, quiet: bool = False
            ) -> DeviceProfile:
    """The profile, after an error for another thread count and a warning on stderr for
    another torch or scikit-learn version."""
    if threads is not None and profile.threads not in (None, threads):
        raise CostModelError(f"profile {profile.name!r} was measured with "
                             f"{profile.threads} threads, not --threads {threads}")
    if not quiet:
        for text in mismatches(profile):
            print(f"costmodel: warning: {text}", file=sys.stderr)
    return profile


def describe(profile: DeviceProfile, fmt: str = "table") -> str:
    """A profile as a table: peak, bandwidth, overhead, and each class's figures."""
    import json

    from tabulate import tabulate

    if fmt == "json":
        return json.dumps(profile.to_json(), indent=2)
    style = "github" if fmt == "markdown" else "simple"
    python = "".join(f", {sec * 1e6:.2f} us per {what}" for what, sec in (
        ("module call", profile.module_call_s), ("view", profile.view_s)) if sec)
    learned = ""
    if profile.kernels is not None:
        learned = "\n\nLearned predictors (rows: timed configurations; CV: cross-validated " \
                  "mean error per op)\n\n" + tabulate(
            [[c, len(r.rows), "n/a" if r.cv_error is None else f"{100 * r.cv_error:.1f}%"]
             for c, r in profile.kernels.classes.items()],
            headers=["Kernel class", "Rows", "CV error"], tablefmt=style,
            disable_numparse=True, colalign=["left", "right", "right"])
        if profile.extra.get("calibration_s"):
            learned += (f"\n\ncalibrated in {profile.extra['calibration_s']:.0f} s "
                        f"({profile.extra.get('mode')}), "
                        f"{len(profile.extra.get('unstable', []))} of "
                        f"{profile.extra.get('configurations')} configurations never settled")
    head = (f"{profile.name}: {profile.device}"
            f"{f', {profile.threads} threads' if profile.threads else ''}, "
            f"peak {profile.peak('float32') / 1e9:.1f} GFLOP/s (float32), "
            f"bandwidth {profile.memory_bandwidth / 1e9:.1f} GB/s, "
            f"overhead {profile.overhead_s * 1e6:.2f} us per op{python}")
    rows = [[cls, f"{e.compute:.3f}", f"{e.memory:.3f}",
             f"{profile.overhead(cls) * 1e6:.2f}"] for cls, e in profile.efficiency.items()]
    table = tabulate(rows, headers=["Class", "Compute eff.", "Memory eff.", "Overhead us"],
                     tablefmt=style, disable_numparse=True,
                     colalign=["left", "right", "right", "right"])
    return f"{head}\n\n{table}{learned}"
