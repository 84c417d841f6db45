"""pytest plugin (registered through the `pytest11` entry point): a project's own tests can hold
a model to a cost budget, and fail with the same report `costmodel check` prints.

    @pytest.mark.costmodel(max_mac="6.5M", modules={"features.3": {"max_mac": "1M"}})
    def test_net_fits(costmodel_budget):
        costmodel_budget(Net(), input_shape=(1, 3, 224, 224))

Limits are the budget file's keys (max_mac, max_madds, max_flops, max_params, max_mac_bytes,
op_types, modules), given to the marker or to the call; `baseline="costmodel.lock.json"` (relative
to the rootdir) and `tolerance="0.5%"` compare with a lock file as well. costmodel and torch are
imported only when the fixture is used, so the plugin costs other test suites nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from costmodel.budget.lock import Record

MARKER = ("costmodel(**limits): cost budget for the costmodel_budget fixture, e.g. "
          "max_mac='6.5M', op_types={...}, modules={...}, baseline='costmodel.lock.json', "
          "tolerance='0.5%'")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


@pytest.fixture
def costmodel_budget(request: pytest.FixtureRequest) -> Callable[..., Record]:
    """A function `(model, input_shape=None, *, inputs=None, dtype="float32", name=None,
    **limits) -> Record` that fails the test when the model exceeds its budget."""
    marker = request.node.get_closest_marker("costmodel")
    defaults = dict(marker.kwargs) if marker else {}
    root = Path(request.config.rootpath)

    def check(model: Any, input_shape: Any = None, *, inputs: Any = None,
              dtype: Any = "float32", name: str | None = None, **options: Any) -> Record:
        from costmodel.analysis import analyze
        from costmodel.budget.compare import diff_records, judge
        from costmodel.budget.config import (
            FUSED_LIMITS,
            MEMORY_LIMITS,
            limits_from_kwargs,
            parse_tolerance,
        )
        from costmodel.budget.lock import (
            entry_line,
            fused_totals,
            memory_totals,
            read_lock,
            record_of,
        )
        from costmodel.budget.render import model_block
        from costmodel.capture.load import parse_dtype
        from costmodel.views.memory import memory

        settings = {**defaults, **options}
        baseline = settings.pop("baseline", None)
        tolerance = parse_tolerance(settings.pop("tolerance", 0), "tolerance")
        top = int(settings.pop("top", 5))
        target = model if isinstance(model, str) else type(model).__name__
        name = name or target
        dtype = parse_dtype(dtype) if isinstance(dtype, str) else dtype
        train = bool(settings.pop("train", False))
        optimizer = settings.pop("optimizer", None)
        fuse = settings.pop("fuse", None)
        limits = limits_from_kwargs(settings, request.node.nodeid)
        if fuse is None and any(limit.metric in FUSED_LIMITS.values() for limit in limits):
            pytest.fail("max_mac_bytes_fused needs fuse=\"inductor\" or fuse=\"engine\"",
                        pytrace=False)
        memory_limits = any(limit.metric in MEMORY_LIMITS.values() for limit in limits)
        analysis = analyze(model, input_shape, inputs, dtype, name, train=train,
                           optimizer=optimizer, storages=memory_limits or train)
        record = record_of(name, target, analysis)
        if train or memory_limits:
            record.totals.update(memory_totals(memory(analysis), name))
        if fuse is not None:
            from costmodel.views.fusion import fuse as fuse_analysis

            record.totals.update(fused_totals(fuse_analysis(analysis, fuse), name))
        before, lock_name, line = None, None, None
        if baseline is not None:
            path = Path(baseline) if Path(baseline).is_absolute() else root / baseline
            before = read_lock(path).get(name)
            lock_name, line = str(path), entry_line(path.read_text(encoding="utf-8"), name)
        result = judge(diff_records(name, before, record), target, limits, tolerance,
                       lock_name, line)
        if not result.ok:
            pytest.fail(f"costmodel budget exceeded\n{model_block(result, top)}", pytrace=False)
        return record

    return check
