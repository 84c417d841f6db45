"""Device profiles: what a roofline needs to know about a device, as a small JSON file.

A profile gives peak FLOP/s per dtype, memory bandwidth, a fixed overhead per op (dispatch and
launch), and per efficiency class (costmodel.latency.classes) the share of the peak and of the
bandwidth that kind of kernel reaches. Built-in profiles are datasheet figures shipped with the
package; calibrated ones are measured here by `costmodel calibrate` and kept in the user's
profile directory (docs/latency.md#profiles).
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from costmodel.errors import CostModelError
from costmodel.latency.classes import CLASSES
from costmodel.latency.learned import KernelPredictors

SCHEMA = "costmodel-profile/1"
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Efficiency:
    """Fractions of the profile's peak FLOP/s (compute) and bandwidth (memory) a class reaches.

    Memory efficiency may exceed 1 on a calibrated CPU profile: activations that fit in cache
    stream faster than the large copy that measures the bandwidth."""

    compute: float
    memory: float
    overhead_s: float | None = None  # this class's fixed time per op; None: the profile's
    #: channels per group at which a convolution reaches half of `compute` (None: no falloff)
    width_half: float | None = None
    #: ((channels per group, share of the peak), ...) in increasing width, measured one point
    #: per width: kernels change with the shape, which one smooth falloff cannot follow
    #: (None: the falloff above, or `compute` alone)
    width_table: tuple[tuple[float, float], ...] | None = None

    def compute_share(self, width: float | None) -> float:
        """For an op of that width: the table's share, interpolated in log width and log
        share (clamped at its ends); without a table, `compute` scaled by
        width / (width + width_half)."""
        if width is None:
            return self.compute
        if self.width_table:
            widths = [math.log(w) for w, _ in self.width_table]
            shares = [math.log(e) for _, e in self.width_table]
            return math.exp(float(np.interp(math.log(width), widths, shares)))
        if self.width_half is None:
            return self.compute
        return self.compute * width / (width + self.width_half)


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    device: str
    peak_flops: dict[str, float]
    memory_bandwidth: float
    overhead_s: float
    efficiency: dict[str, Efficiency]
    threads: int | None = None
    torch: str | None = None
    measured: bool = False
    description: str = ""
    sources: list[str] = field(default_factory=list)
    bandwidth_curve: list[tuple[float, float]] | None = None
    #: seconds per nn.Module call (its Python, hooks and argument passing), outside any op
    module_call_s: float = 0.0
    #: seconds per view op (dispatch only: a view moves no data and launches no kernel)
    view_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: the learned per-kernel-class predictors of a calibrated profile (None: the roofline
    #: alone, as every datasheet profile)
    kernels: KernelPredictors | None = None

    def overhead(self, cls: str) -> float:
        """Fixed seconds per op of an efficiency class."""
        own = self.efficiency[cls].overhead_s
        return self.overhead_s if own is None else own

    def bandwidth_at(self, nbytes: float) -> float:
        """Streaming bandwidth for an op moving `nbytes`: interpolated (log-log) on the
        measured curve where there is one (small working sets stay in cache), else the
        profile's single figure."""
        if not self.bandwidth_curve or nbytes <= 0:
            return self.memory_bandwidth
        sizes = [math.log(b) for b, _ in self.bandwidth_curve]
        rates = [math.log(r) for _, r in self.bandwidth_curve]
        return math.exp(float(np.interp(math.log(nbytes), sizes, rates)))

    def peak(self, dtype: str) -> float:
        """Peak FLOP/s for a dtype name ("float32"), falling back to float32."""
        return self.peak_flops.get(dtype, self.peak_flops["float32"])

    def to_json(self) -> dict[str, Any]:
        data = {"schema": SCHEMA, **asdict(replace(self, kernels=None))}
        data["kernels"] = self.kernels.to_json() if self.kernels is not None else None
        data["efficiency"] = {k: {f: x for f, x in asdict(v).items() if x is not None}
                              for k, v in self.efficiency.items()}
        for key in ("extra", "bandwidth_curve", "kernels"):
            if not data[key]:
                del data[key]
        return data


def _positive(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise CostModelError(f"{where}: {key} must be a positive number, got {value!r}")
    return float(value)


def _overhead(value: Any, key: str, where: str) -> Any:
    """None (absent) or a number of seconds >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise CostModelError(f"{where}: {key} must be a number >= 0, got {value!r}")
    return float(value)


def _curve(value: Any, where: str, key: str = "bandwidth_curve",
           units: tuple[str, str] = ("bytes", "bytes/s")) -> list[tuple[float, float]] | None:
    """None, or [[x, y], ...] of positive numbers in increasing x (`units` name them)."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2
                                              for p in value):
        raise CostModelError(f"{where}: {key} must be a list of [{units[0]}, {units[1]}]")
    points = [(_positive(b, f"{key} {units[0]}", where),
               _positive(r, f"{key} {units[1]}", where)) for b, r in value]
    if [b for b, _ in points] != sorted(b for b, _ in points):
        raise CostModelError(f"{where}: {key} must be in increasing {units[0]}")
    return points


def _table(value: Any, key: str, where: str) -> tuple[tuple[float, float], ...] | None:
    """None, or a width table: [[channels per group, share of the peak], ...]."""
    points = _curve(value, where, key, ("width", "share"))
    return tuple(points) if points else None


def _need(data: dict[str, Any], key: str, where: str, prefix: str = "") -> Any:
    if key not in data:
        raise CostModelError(f"{where}: missing key '{prefix}{key}'")
    return data[key]


def from_json(data: Any, where: str) -> DeviceProfile:
    """Check a parsed profile file and build the profile; a bad key raises one line naming it."""
    if not isinstance(data, dict):
        raise CostModelError(f"{where}: a profile is a JSON object, got {type(data).__name__}")
    schema = _need(data, "schema", where)
    if schema != SCHEMA:
        raise CostModelError(f"{where}: schema is {schema!r}, this costmodel reads {SCHEMA!r}")
    device = _need(data, "device", where)
    if device not in DEVICES:
        raise CostModelError(f"{where}: device {device!r} is not one of {', '.join(DEVICES)}")
    peaks = _need(data, "peak_flops", where)
    if not isinstance(peaks, dict) or "float32" not in peaks:
        raise CostModelError(f"{where}: peak_flops must be an object with a 'float32' entry")
    peak_flops = {k: _positive(v, f"peak_flops.{k}", where) for k, v in peaks.items()}
    eff_data = _need(data, "efficiency", where)
    if not isinstance(eff_data, dict):
        raise CostModelError(f"{where}: efficiency must be an object of classes")
    efficiency = {}
    for cls in CLASSES:
        entry = _need(eff_data, cls, where, "efficiency.")
        if not isinstance(entry, dict):
            raise CostModelError(f"{where}: efficiency.{cls} must be an object")
        efficiency[cls] = Efficiency(
            _positive(_need(entry, "compute", where, f"efficiency.{cls}."),
                      f"efficiency.{cls}.compute", where),
            _positive(_need(entry, "memory", where, f"efficiency.{cls}."),
                      f"efficiency.{cls}.memory", where),
            _overhead(entry.get("overhead_s"), f"efficiency.{cls}.overhead_s", where),
            _overhead(entry.get("width_half"), f"efficiency.{cls}.width_half", where),
            _table(entry.get("width_table"), f"efficiency.{cls}.width_table", where))
    unknown = sorted(set(eff_data) - set(CLASSES))
    if unknown:
        raise CostModelError(f"{where}: efficiency.{unknown[0]} is not a class "
                             f"({', '.join(CLASSES)})")
    threads = data.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise CostModelError(f"{where}: threads must be a positive integer or null")
    overhead = _overhead(_need(data, "overhead_s", where), "overhead_s", where)
    return DeviceProfile(
        name=str(_need(data, "name", where)), device=device, peak_flops=peak_flops,
        memory_bandwidth=_positive(_need(data, "memory_bandwidth", where), "memory_bandwidth",
                                   where),
        overhead_s=overhead, efficiency=efficiency, threads=threads,
        torch=data.get("torch"), measured=bool(data.get("measured", False)),
        bandwidth_curve=_curve(data.get("bandwidth_curve"), where),
        module_call_s=_overhead(data.get("module_call_s", 0.0), "module_call_s", where),
        view_s=_overhead(data.get("view_s", 0.0), "view_s", where),
        description=str(data.get("description", "")), sources=list(data.get("sources", [])),
        extra=dict(data.get("extra", {})),
        kernels=(KernelPredictors.from_json(data["kernels"], where)
                 if data.get("kernels") is not None else None))


def read_profile(path: str | Path) -> DeviceProfile:
    """A profile from a JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CostModelError(f"{path}: cannot read profile: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise CostModelError(f"{path}: not a profile: not UTF-8 text") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CostModelError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from exc
    return from_json(data, str(path))


def write_profile(profile: DeviceProfile, path: str | Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(profile.to_json(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CostModelError(f"{path}: cannot write profile: {exc.strerror}") from exc
    return path


def profile_dir() -> Path:
    """$COSTMODEL_PROFILE_DIR, else $XDG_CONFIG_HOME/costmodel/profiles, else
    ~/.config/costmodel/profiles."""
    if os.environ.get("COSTMODEL_PROFILE_DIR"):
        return Path(os.environ["COSTMODEL_PROFILE_DIR"])
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "costmodel" / "profiles"


def machine_profile_name(device: str, threads: int) -> str:
    """The name `calibrate` saves this machine's profile under: host, device, threads."""
    host = socket.gethostname().split(".")[0] or "localhost"
    return f"{host}-{device}-{threads}t"


def builtin_names() -> list[str]:
    files = resources.files("costmodel.latency").joinpath("profiles")
    return sorted(p.name.removesuffix(".json") for p in files.iterdir()
                  if p.name.endswith(".json"))


def user_names() -> list[str]:
    folder = profile_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def load_profile(spec: str) -> DeviceProfile:
    """A profile by file path, by name in the user directory, or by built-in name."""
    if spec.endswith(".json") or os.sep in spec or Path(spec).is_file():
        return read_profile(spec)
    user = profile_dir() / f"{spec}.json"
    if user.is_file():
        return read_profile(user)
    if spec in builtin_names():
        ref = resources.files("costmodel.latency").joinpath("profiles").joinpath(f"{spec}.json")
        with resources.as_file(ref) as path:
            return read_profile(path)
    known = ", ".join(user_names() + builtin_names())
    raise CostModelError(f"unknown profile {spec!r} (known: {known}; or give a .json file)")
