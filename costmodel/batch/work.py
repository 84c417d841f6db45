"""One batch task: a TARGET -> one plain row, on whichever worker runs it.

The analysis is the in-process one `costmodel analyze` runs (load, then analyze_loaded); every
failure becomes the row's status and one-line error, so that a task never raises for a model's
fault. The row holds only str, int, float, bool and None: it pickles anywhere and writes to CSV,
JSON lines and Parquet alike (columns in costmodel/batch/rows.py).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

#: the worker events announcing that a task started (the client's timeout clock and
#: progress bar read it) and carrying its row (straight to the client: a row kept in a
#: worker's memory would be lost, and the model analysed again, if that worker died next)
STARTED = "costmodel-batch-started"
FINISHED = "costmodel-batch-finished"


@dataclass(frozen=True)
class Options:
    """What every target is analysed with: `analyze`'s --input-shape, --dtype, --train,
    --optimizer, --execute."""

    input_shapes: tuple[str, ...] | None = None
    dtype: str = "float32"
    train: bool = False
    optimizer: str | None = None
    execute: bool = False


def announce(topic: str, **message: Any) -> None:
    """Tell the client about this task (when running on a Dask worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not on a worker: nothing to tell
        return
    worker.log_event(topic, {"key": worker.get_current_task(), "worker": worker.address,
                             **message})


def analyse(target: str, family: str = "", options: Options = Options()) -> dict[str, Any]:
    """The row of one target: status ok or unsupported with the totals, or error with the
    one-line message (`CostModelError`'s text, else the exception's type and first line)."""
    announce(STARTED)
    start = time.perf_counter()
    row: dict[str, Any] = {"target": target, "family": family}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # models' own warnings would flood the workers' logs
            row.update(_measure(target, family, options))
    except Exception as exc:  # a model may fail in any way: its row says how
        from costmodel.errors import CostModelError

        text = str(exc).strip().splitlines()
        row.update(status="error", error=text[0] if isinstance(exc, CostModelError) and text
                   else one_line(exc))
    row["seconds"] = round(time.perf_counter() - start, 3)
    announce(FINISHED, row=row)
    return row


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _measure(target: str, family: str, options: Options) -> dict[str, Any]:
    from costmodel.analysis import analyze_loaded
    from costmodel.capture.load import load
    from costmodel.capture.spec import parse_dtype

    loaded = load(target, list(options.input_shapes) if options.input_shapes else None,
                  parse_dtype(options.dtype), device="cpu" if options.execute else "meta")
    row: dict[str, Any] = {
        "family": family or family_of(target, loaded.model),
        "inputs": "; ".join("x".join(map(str, s.shape)) + " " + str(s.dtype).removeprefix(
            "torch.") for s in loaded.inputs),
    }
    # with --train, traced as `costmodel memory --train` traces it (storages), for the peak
    analysis = analyze_loaded(loaded, train=options.train, optimizer=options.optimizer,
                              storages=options.train, execute=options.execute)
    totals = analysis.total()
    for key, value in totals.as_dict().items():
        row[key] = _integer(value, key)
    if options.train:
        from costmodel.views.memory import memory

        row["peak_bytes"] = _integer(memory(analysis).peak_bytes, "peak_bytes")
    unsupported = analysis.unsupported()
    row["unsupported"] = sum(unsupported.values())
    row["unsupported_ops"] = ";".join(f"{op}:{n}" for op, n in sorted(unsupported.items()))
    row["status"] = "unsupported" if unsupported else "ok"
    return row


def _integer(value: Any, key: str) -> int:
    try:
        return int(value)
    except TypeError:  # a formula: a batch row holds numbers
        raise ValueError(f"{key} is a formula ({value}): give concrete sizes") from None


def family_of(target: str, model: Any) -> str:
    """A `transformers` model's modality (text decoder, text encoder, text encoder-decoder,
    vision, video, speech), else the model's class name."""
    config = getattr(model, "config", None)
    if not target.startswith("hf:") or config is None:
        return type(model).__name__
    main = getattr(model, "main_input_name", "input_ids")
    if main == "input_ids":
        if getattr(config, "is_encoder_decoder", False):
            return "text encoder-decoder"
        return "text decoder" if _is_decoder(config) else "text encoder"
    if main == "pixel_values":
        return "video" if getattr(config, "num_frames", None) else "vision"
    if main in ("input_values", "input_features"):
        return "speech"
    return str(main)


def _is_decoder(config: Any) -> bool:
    """A model type with a causal language-model head and no masked one (BERT has both)."""
    from transformers.models.auto import modeling_auto

    kind = getattr(config, "model_type", None)
    causal = modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    masked = modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return bool(getattr(config, "is_decoder", False)) or (kind in causal
                                                          and kind not in masked)
