"""Per-kernel-class latency predictors learned from sampled micro-benchmarks (nn-Meter's way:
detect the kernel an op runs, predict it with a regressor fitted to configurations sampled
from the ones real models use, and sum).

Each kernel class (costmodel.latency.kernels.KERNEL_CLASSES) gets a forest (extra trees) of
log(measured time / roofline estimate) over the op's analytic features (kernels.FEATURES): a
forest cannot extrapolate, so a configuration beyond every sampled one keeps the nearest ones'
ratio to the roofline rather than their time.

Stored without pickling: a profile keeps each class's training rows (features and target)
and the estimator's settings; loading refits the forests with a fixed `random_state`, which
scikit-learn makes deterministic for the same rows, settings and version
(docs/latency.md#how-a-profile-is-trusted). `KernelPredictors.from_json` checks every field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from costmodel.errors import CostModelError
from costmodel.latency.kernels import FEATURES, KERNEL_CLASSES

FORMAT = "costmodel-kernels/2"
#: The estimator and its settings: part of the format, so that a refit is the same forest.
#: Extra trees (random split points) rather than a random forest: on the sources' own rows
#: their cross-validated error is 12.0% against 12.7%, and 22% against 25% when whole bands of
#: sizes are held out (docs/latency.md): smoother between the sampled sizes. At least 6 rows
#: per leaf, not 1: a leaf of one row repeats that row's timing noise, and a guideline
#: network repeats one configuration ten times. Re-scored on the saved rows of three
#: benchmark runs (benchmarks/rescore_latency.py), the largest spread of three calibrations
#: fell from 84/43/58% to 35/28/42%, and the share within 10% stayed (38/36/30% -> 39/36/32%).
ESTIMATOR: dict[str, Any] = {"kind": "extra_trees", "n_estimators": 64,
                             "min_samples_leaf": 6, "max_features": 0.7, "random_state": 0}
#: Fewer rows than this: the class predicts the median ratio of its rows instead.
MIN_ROWS = 6


def sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def _forest() -> Any:
    from sklearn.ensemble import ExtraTreesRegressor

    params = {k: v for k, v in ESTIMATOR.items() if k != "kind"}
    return ExtraTreesRegressor(n_jobs=1, **params)


@dataclass
class ClassRows:
    """One kernel class's training data: feature rows, log(time / roofline), labels."""

    rows: list[list[float]]
    targets: list[float]
    labels: list[str]
    vocabulary: dict[str, int]
    cv_error: float | None = None
    _model: Any = field(default=None, repr=False, compare=False)

    def model(self) -> Any:
        """The fitted forest (fitted on first use), or None below MIN_ROWS."""
        if len(self.rows) < MIN_ROWS:
            return None
        if self._model is None:
            forest = _forest()
            forest.fit(np.asarray(self.rows, dtype=float), np.asarray(self.targets))
            self._model = forest
        return self._model

    def predict(self, rows: list[list[float]]) -> np.ndarray:
        """log(time / roofline) for each row."""
        model = self.model()
        if model is None:
            return np.full(len(rows), float(np.median(self.targets)) if self.targets else 0.0)
        return model.predict(np.asarray(rows, dtype=float))

    def cross_validate(self, folds: int = 5) -> tuple[float, np.ndarray]:
        """Mean |relative error| of out-of-fold predictions, and each row's error."""
        from sklearn.model_selection import KFold, cross_val_predict

        y = np.asarray(self.targets)
        if len(y) < max(MIN_ROWS, folds):
            errors = np.abs(np.exp(np.median(y) - y) - 1) if len(y) else np.zeros(0)
            return (float(errors.mean()) if len(y) else 0.0), errors
        pred = cross_val_predict(_forest(), np.asarray(self.rows, dtype=float), y,
                                 cv=KFold(folds, shuffle=True, random_state=0))
        errors = np.abs(np.exp(pred - y) - 1)
        return float(errors.mean()), errors


@dataclass
class KernelPredictors:
    """Every class's rows, the feature names and the scikit-learn version they were fitted
    with."""

    classes: dict[str, ClassRows]
    sklearn: str
    sources: list[str] = field(default_factory=list)
    #: measured / predicted time of the learned kernels inside the source models, run whole at
    #: calibration: what a kernel costs in a forward pass beyond its time alone (1.0: none)
    in_model: float = 1.0
    #: the source models' own ratios, for the record
    in_model_ratios: dict[str, float] = field(default_factory=dict)
    #: seconds every op (not views) costs inside a forward pass beyond its kernel: the Python
    #: of the functional call that issues it, fitted with `in_model` on the sources
    in_model_op_s: float = 0.0
    #: each source's measured / predicted time with both fitted: how well they fit
    in_model_fit: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "sklearn": self.sklearn, "estimator": dict(ESTIMATOR),
                "features": list(FEATURES), "sources": list(self.sources),
                "in_model": self.in_model, "in_model_ratios": dict(self.in_model_ratios),
                "in_model_op_s": self.in_model_op_s, "in_model_fit": dict(self.in_model_fit),
                "classes": {name: {"vocabulary": c.vocabulary, "cv_error": c.cv_error,
                                   "labels": c.labels, "targets": c.targets, "rows": c.rows}
                            for name, c in self.classes.items()}}

    @staticmethod
    def from_json(data: Any, where: str) -> KernelPredictors:
        """Check a profile's `kernels` object; one line naming the first bad key."""
        if not isinstance(data, dict):
            raise CostModelError(f"{where}: kernels must be an object")
        fmt = data.get("format")
        if fmt != FORMAT:
            raise CostModelError(f"{where}: kernels.format is {fmt!r}, this costmodel reads "
                                 f"{FORMAT!r}: calibrate again")
        if data.get("features") != list(FEATURES):
            raise CostModelError(f"{where}: kernels.features differ from this costmodel's "
                                 f"({len(FEATURES)} features): calibrate again")
        if data.get("estimator") != ESTIMATOR:
            raise CostModelError(f"{where}: kernels.estimator is {data.get('estimator')!r}, "
                                 f"this costmodel fits {ESTIMATOR!r}: calibrate again")
        classes = data.get("classes")
        if not isinstance(classes, dict):
            raise CostModelError(f"{where}: kernels.classes must be an object")
        out = {}
        for name, entry in classes.items():
            key = f"kernels.classes.{name}"
            if name not in KERNEL_CLASSES:
                raise CostModelError(f"{where}: {key} is not a kernel class")
            if not isinstance(entry, dict):
                raise CostModelError(f"{where}: {key} must be an object")
            rows, targets = entry.get("rows"), entry.get("targets")
            labels, vocab = entry.get("labels", []), entry.get("vocabulary", {})
            if not isinstance(rows, list) or not isinstance(targets, list) or len(rows) != len(
                    targets):
                raise CostModelError(f"{where}: {key}: rows and targets must be lists of one "
                                     "length")
            for i, row in enumerate(rows):
                if not isinstance(row, list) or len(row) != len(FEATURES) or not all(
                        _finite(x) for x in row):
                    raise CostModelError(f"{where}: {key}.rows[{i}] must be {len(FEATURES)} "
                                         "finite numbers")
            if not all(_finite(t) for t in targets):
                raise CostModelError(f"{where}: {key}.targets must be finite numbers")
            if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in
                                                      vocab.values()):
                raise CostModelError(f"{where}: {key}.vocabulary must map op names to ints")
            cv = entry.get("cv_error")
            out[name] = ClassRows([[float(x) for x in r] for r in rows],
                                  [float(t) for t in targets], [str(x) for x in labels],
                                  dict(vocab), None if cv is None else float(cv))
        in_model = data.get("in_model", 1.0)
        if not _finite(in_model) or in_model <= 0:
            raise CostModelError(f"{where}: kernels.in_model must be a positive number")
        ratios = data.get("in_model_ratios", {})
        if not isinstance(ratios, dict) or not all(_finite(v) for v in ratios.values()):
            raise CostModelError(f"{where}: kernels.in_model_ratios must map names to numbers")
        op_s = data.get("in_model_op_s", 0.0)
        if not _finite(op_s) or op_s < 0:
            raise CostModelError(f"{where}: kernels.in_model_op_s must be a number >= 0")
        fit = data.get("in_model_fit", {})
        if not isinstance(fit, dict) or not all(_finite(v) for v in fit.values()):
            raise CostModelError(f"{where}: kernels.in_model_fit must map names to numbers")
        return KernelPredictors(out, str(data.get("sklearn", "")),
                                [str(s) for s in data.get("sources", [])], float(in_model),
                                {str(k): float(v) for k, v in ratios.items()}, float(op_s),
                                {str(k): float(v) for k, v in fit.items()})


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
