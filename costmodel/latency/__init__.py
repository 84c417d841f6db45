"""Latency from counts: device profiles, calibration micro-benchmarks, a roofline predictor per
op, and validation against measured time (docs/latency.md)."""

from costmodel.latency.profile import DeviceProfile, Efficiency, load_profile

__all__ = ["DeviceProfile", "Efficiency", "load_profile"]
