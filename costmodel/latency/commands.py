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
                       smoke: bool = False, quiet: bool = False, clock: str = "wall"
                       ) -> tuple[DeviceProfile, str]:
    """Calibrate this machine and write the profile to `output`, or to the user's profile
    directory under the machine's name."""
    from costmodel.latency.calibrate import calibrate

    resolve_device(device)
    threads = check_threads(threads) or torch.get_num_threads()
    profile = calibrate(device, threads, smoke=smoke, quiet=quiet, clock=clock)
    path = output or str(profile_dir() / f"{profile.name}.json")
    write_profile(profile, path)
    return profile, path


def resolve_profile(spec: str | None, threads: int | None, quiet: bool = False
                    ) -> DeviceProfile:
    """--profile NAME|FILE, or this machine's calibrated CPU profile for --threads
    (calibrated first, with its progress bar, when there is none yet)."""
    check_threads(threads)
    if spec is not None:
        profile = load_profile(spec)
        if threads is not None and profile.threads not in (None, threads):
            raise CostModelError(f"profile {profile.name!r} was measured with "
                                 f"{profile.threads} threads, not --threads {threads}")
        return profile
    threads = threads or torch.get_num_threads()
    name = machine_profile_name("cpu", threads)
    if (profile_dir() / f"{name}.json").is_file():
        return load_profile(name)
    if not quiet:
        print(f"costmodel: no calibrated profile {name!r} yet: calibrating this machine "
              f"(saved to {profile_dir()})", file=sys.stderr)
    profile, _ = calibrate_and_save("cpu", threads, None, quiet=quiet)
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
    return f"{head}\n\n{table}"
