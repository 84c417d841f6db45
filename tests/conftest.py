"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmodel.cli import main


@pytest.fixture(scope="session")
def smoke_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One smoke calibration per test process (a few seconds), at one thread; tests that change
    a profile change a copy."""
    path = tmp_path_factory.mktemp("cal") / "smoke.json"
    assert main(["calibrate", "--smoke", "--threads", "1", "-q", "-o", str(path)]) == 0
    return path
