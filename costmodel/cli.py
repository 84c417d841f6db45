"""The `costmodel` command: argument parsing and error reporting only; the work is elsewhere."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from costmodel import __version__
from costmodel.errors import CostModelError

DESCRIPTION = """\
Cost of a PyTorch model, op by op, without running it.

  Mult-Adds  multiply-accumulates of contractions (conv, linear, matmul, attention);
             what the MobileNet/ShuffleNet papers call FLOPs
  FLOPs      floating-point operations: 2 x Mult-Adds plus element-wise arithmetic
  MAC        memory access cost: tensor elements read plus written (ShuffleNetV2's sense,
             not multiply-accumulate); also in bytes
  Params     learnable parameters, shared ones once

exit codes: 0 success, 1 a check failed, 2 bad input (one line on stderr)"""

TARGET_HELP = """\
path/to/file.py, path/to/file.py:NAME or package.module:NAME, where NAME is an nn.Module
instance, an nn.Module subclass or a zero-argument factory (e.g. costmodel.zoo:resnet50); or
hf:ORG/NAME, hf:PATH or hf:MODEL_TYPE, a transformers model from its config.json alone"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        print(f"costmodel: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="costmodel", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"costmodel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    analyze = commands.add_parser(
        "analyze", help="report Mult-Adds, FLOPs, MAC and params by op type, module or op",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    analyze.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    analyze.add_argument("--input-shape", action="append", metavar="SHAPE",
                         help="input shape like 1,3,224,224 (or 1,128:int64); repeat for "
                              "several inputs. Default: the file's example_inputs or "
                              "input_shape, or the model's default_cfg['input_size']")
    analyze.add_argument("--dtype", default="float32", help="input dtype (default float32)")
    analyze.add_argument("--by", choices=["op-type", "module", "node", "kernel"],
                         default="op-type",
                         help="group rows by op type (default), module tree, op, or (with "
                              "--fuse) kernel")
    analyze.add_argument("--depth", type=int, default=None, metavar="N",
                         help="with --by module: show modules at most N levels deep")
    analyze.add_argument("--format", choices=["table", "markdown", "json", "csv"],
                         default="table")
    analyze.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    analyze.add_argument("--plot", metavar="FILE.png",
                         help="also draw each op type's share of Mult-Adds, MAC and params")
    analyze.add_argument("--weights-only", action="store_true",
                         help="count as params only weights of 2 or more dimensions (no biases "
                              "or norm scales), as the MobileNet paper does")
    analyze.add_argument("--symbolic", metavar="NAMES",
                         help="free dimensions: name the last sizes of the first input, e.g. "
                              "H,W for an image's height and width (their sizes become the "
                              "hints torch traces at); costs print as formulas in them. A name "
                              "may also stand in --input-shape, e.g. 1,3,H,W")
    analyze.add_argument("--width", action="append", metavar="MODULE=NAME",
                         help="free a channel width: the output width of MODULE (a module path "
                              "or a pattern like 'stages.0.*.right.0') becomes the symbol NAME, "
                              "and every size tied to it follows; repeatable")
    _add_execute_option(analyze)
    analyze.add_argument("--free", action="append", metavar="ARG=INT,...",
                         help="call the factory TARGET names with these size arguments as "
                              "symbols named after them, traced at INT (default: the "
                              "argument's default), e.g. dim=4096,n_heads=32; repeatable")
    analyze.add_argument("--free-layers", metavar="[ARG=]NAME",
                         help="fold identical repeated blocks (a transformer's layers) into "
                              "NAME x one block; with ARG=NAME, the factory is called with "
                              "ARG=2 and its 2 blocks are folded")
    _add_train_options(analyze)
    _add_fuse_option(analyze)
    analyze.add_argument("--verbose", "-v", action="store_true",
                         help="say how the model was built and traced")
    analyze.add_argument("--debug", action="store_true", help="show tracebacks")

    _add_memory_command(commands)
    commands.add_parser("zoo", help="list the reference models that ship with costmodel")
    _add_budget_commands(commands)
    _add_lint_command(commands)
    _add_bench_command(commands)
    _add_latency_commands(commands)
    _add_batch_command(commands)
    return parser


BATCH_DESCRIPTION = """\
The cost table of a whole collection: every TARGET (and every model a pattern names) analysed
as an independent task on Dask, one row each: Mult-Adds, FLOPs, MAC (memory access cost) and
params, or the error. By default a local cluster of worker processes; --scheduler submits to an
existing Dask cluster. A target that raises, runs past --timeout or kills its worker costs only
its own row. Patterns: hf:* (every transformers model type with a default config),
costmodel.zoo:*, costmodel.zoo.guidelines:*, MODULE:*, a folder of model files, path/*.py.
See docs/batch.md.

exit codes: 0 every target has its row (failures included), 2 bad input (one line on stderr)"""


def _add_batch_command(commands: argparse._SubParsersAction) -> None:
    batch = commands.add_parser("batch", help="analyse a collection of models on Dask, one "
                                "row per model", description=BATCH_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    batch.add_argument("targets", nargs="*", metavar="TARGET",
                       help=TARGET_HELP + "; or a pattern")
    batch.add_argument("--from", dest="from_file", metavar="FILE",
                       help="read targets from FILE, one per line (# starts a comment)")
    batch.add_argument("--input-shape", action="append", metavar="SHAPE",
                       help="input shape for every target, as for analyze (default: each "
                            "target's own)")
    batch.add_argument("--dtype", default="float32", help="input dtype (default float32)")
    _add_train_options(batch)
    _add_execute_option(batch)
    batch.add_argument("--workers", type=int, metavar="N",
                       help="worker processes of the local cluster (default: the core count)")
    batch.add_argument("--scheduler", metavar="ADDRESS",
                       help="an existing Dask cluster's scheduler, e.g. tcp://10.0.0.5:8786, "
                            "instead of a local cluster")
    batch.add_argument("--timeout", type=float, metavar="S",
                       help="a target still running after S seconds gets a timeout row "
                            "(and its worker is restarted)")
    batch.add_argument("--format", choices=["table", "csv", "jsonl", "parquet"],
                       help="default: from -o's suffix (.csv, .jsonl, .parquet), else a "
                            "table on stdout")
    batch.add_argument("--output", "-o", metavar="FILE",
                       help="write the rows to FILE.csv, FILE.jsonl or FILE.parquet")
    batch.add_argument("--resume", action="store_true",
                       help="skip the targets that already have a row in -o FILE")
    batch.add_argument("--plot", metavar="FILE.png",
                       help="also draw Mult-Adds against MAC bytes, one point per model")
    batch.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    batch.add_argument("--debug", action="store_true",
                       help="show tracebacks and the cluster's log")


BENCH_DESCRIPTION = """\
Re-run the ShuffleNetV2 paper's four speed experiments on this machine: the benchmark networks
of costmodel.zoo.guidelines (G1 channel ratios, G2 groups, G3 fragments, G4 ReLU and shortcut,
each at three sizes with equal Mult-Adds within an experiment), timed with warm-up and repeats
until the median is stable. Prints the paper's figures beside the measured ones, Mult-Adds and
MAC (memory access cost), and Kendall's tau of the measured order against the paper's and
against MAC's. See docs/guidelines.md.

exit codes: 0 done, 2 bad input (one line on stderr)"""


def _add_bench_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="measure the ShuffleNetV2 guideline experiments "
                                "on this machine", description=BENCH_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("suite", choices=["guidelines"], help="what to measure")
    bench.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    bench.add_argument("--quick", action="store_true",
                       help="tiny sizes and few repeats: a smoke test in well under a minute")
    bench.add_argument("--threads", type=int, metavar="N",
                       help="torch threads (default 1 on a CPU, as the paper's ARM figures)")
    bench.add_argument("--format", choices=["table", "markdown", "json"], default="table")
    bench.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="also draw measured throughput against MAC, a panel per guideline")
    bench.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    bench.add_argument("--debug", action="store_true", help="show tracebacks")


LINT_DESCRIPTION = """\
Check a model against the four ShuffleNetV2 guidelines (G1 equal channel widths, G2 few groups,
G3 little fragmentation, G4 little element-wise work). Each finding names the module and ops,
says what to change, and prices it in MAC (memory access cost: elements read plus written) at
equal Mult-Adds. Thresholds also come from [tool.costmodel.lint] in the budget file.
See docs/guidelines.md.

exit codes: 0 done, 1 a rule named by --fail-on has findings, 2 bad input (one line on stderr)"""


def _add_lint_command(commands: argparse._SubParsersAction) -> None:
    from costmodel.lint.settings import HELP, option

    lint = commands.add_parser("lint", help="check a model against the ShuffleNetV2 guidelines",
                               description=LINT_DESCRIPTION,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    lint.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    lint.add_argument("--input-shape", action="append", metavar="SHAPE",
                      help="input shape, as for analyze")
    lint.add_argument("--dtype", default="float32", help="input dtype (default float32)")
    _add_execute_option(lint)
    lint.add_argument("--rules", metavar="RULES", help="rules to run, e.g. G1,G2 (default all)")
    lint.add_argument("--fail-on", metavar="RULES",
                      help="exit 1 when these rules have findings, e.g. G2,G4 (for CI)")
    lint.add_argument("--config", metavar="FILE",
                      help="budget file with a [tool.costmodel.lint] table (default: "
                           "./costmodel.toml, else ./pyproject.toml, if present)")
    for name, text in HELP.items():
        lint.add_argument(option(name), metavar="X", help=text.removeprefix("% "))
    _add_fuse_option(lint)
    lint.add_argument("--format", choices=["table", "markdown", "json", "github"],
                      default="table")
    lint.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    lint.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_latency_commands(commands: argparse._SubParsersAction) -> None:
    """calibrate, predict and validate: latency from counts (docs/latency.md)."""
    raw = argparse.RawDescriptionHelpFormatter
    cal = commands.add_parser(
        "calibrate", help="measure this machine's device profile with micro-benchmarks",
        description="Measure peak FLOP/s, bandwidth, per-op overhead, and learn one latency "
                    "predictor per kernel class from op configurations sampled around those "
                    "of a fixed set of source models (under 5 minutes; --quick under a "
                    "minute); without -o, save "
                    "the profile under the machine's name in the profile directory "
                    "($COSTMODEL_PROFILE_DIR, else $XDG_CONFIG_HOME/costmodel/profiles).",
        formatter_class=raw)
    cal.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    cal.add_argument("--threads", type=int, metavar="N",
                     help="torch intra-op threads (default: torch's, all cores)")
    cal.add_argument("--output", "-o", metavar="FILE", help="write the profile to FILE")
    cal.add_argument("--format", choices=["table", "markdown", "json"], default="table",
                     help="how to print the profile")
    cal.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                     help="time by the wall clock (default), or by the thread's CPU time "
                          "(one thread on the CPU only: unaffected by other load)")
    size = cal.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true",
                      help="one tiny benchmark per class, in seconds: tests the machinery only")
    size.add_argument("--quick", action="store_true",
                      help="the source models' configurations only, fewer rounds: under a "
                           "minute, less accurate (docs/latency.md)")
    cal.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    cal.add_argument("--debug", action="store_true", help="show tracebacks")

    for name, text in (("predict", "predict latency per op from its FLOPs, MAC and a profile"),
                       ("validate", "run the model for real and compare with the prediction")):
        cmd = commands.add_parser(name, help=text, description=text, formatter_class=raw)
        cmd.add_argument("target", metavar="TARGET", help=TARGET_HELP)
        cmd.add_argument("--input-shape", action="append", metavar="SHAPE",
                         help="input shape, as for analyze")
        cmd.add_argument("--dtype", default="float32", help="input dtype (default float32)")
        _add_execute_option(cmd)
        cmd.add_argument("--profile", metavar="NAME|FILE",
                         help="a built-in or calibrated profile name, or a profile .json "
                              "(default: this machine's, calibrated first if missing)")
        cmd.add_argument("--threads", type=int, metavar="N",
                         help="pick this machine's profile for N threads")
        cmd.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
        cmd.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        cmd.add_argument("--debug", action="store_true", help="show tracebacks")
        _add_fuse_option(cmd)
        if name == "predict":
            cmd.add_argument("--by", choices=["op-type", "module", "node"], default="op-type")
            cmd.add_argument("--depth", type=int, metavar="N",
                             help="with --by module: group modules at most N levels deep")
            cmd.add_argument("--format", choices=["table", "markdown", "json", "csv"],
                             default="table")
            cmd.add_argument("--plot", metavar="FILE.png",
                             help="draw every op on the device's roofline")
        else:
            cmd.add_argument("--repeat", type=int, default=20, metavar="N",
                             help="timed runs (default 20); the median is reported")
            cmd.add_argument("--warmup", type=int, default=5, metavar="N",
                             help="untimed runs first (default 5)")
            cmd.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                             help="wall time (default), or the thread's CPU time (one "
                                  "thread on the CPU only: unaffected by other load)")
            cmd.add_argument("--format", choices=["table", "markdown", "json"],
                             default="table")


def _add_execute_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--execute", action="store_true",
                        help="run the model once on real CPU tensors (seeded random inputs; "
                             "integer ids within the model's embedding or vocab_size) instead "
                             "of shape-only ones, for control flow that depends on values; "
                             "the costs are then for that input")


def _add_fuse_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fuse", choices=["inductor", "engine"], metavar="MODE",
                        help="also group the ops into the kernels a compiler runs and count the "
                             "MAC they move once fused: inductor (torch.compile's CPU kernels, "
                             "read from inductor's scheduler; nothing is compiled) or engine "
                             "(inference-engine rules: batch norm folded, activations and "
                             "element-wise chains fused); see docs/fusion.md")


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", action="store_true",
                        help="cost a training step: forward, backward (each backward op under "
                             "the forward op it differentiates) and, with --optimizer, the "
                             "update")
    parser.add_argument("--optimizer", metavar="NAME",
                        help="with --train: the optimizer whose update and states are counted: "
                             "sgd (with momentum), adam or adamw")


MEMORY_DESCRIPTION = """\
Memory of an inference pass or (--train) a training step, from liveness on the op graph: a
tensor's storage lives from the op that writes it to the last op that reads it; views and
in-place ops allocate nothing. Reports parameters, gradients, optimizer states, activations
saved for backward, and the peak with the op and module where it falls. See docs/memory.md.

exit codes: 0 success, 2 bad input (one line on stderr)"""


def _add_memory_command(commands: argparse._SubParsersAction) -> None:
    memory = commands.add_parser(
        "memory", help="peak memory of inference or a training step, from liveness",
        description=MEMORY_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    memory.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    memory.add_argument("--input-shape", action="append", metavar="SHAPE",
                        help="input shape, as for analyze; a size given as a name (1,S:int64) "
                             "is free, and the memory a formula in it")
    memory.add_argument("--dtype", default="float32", help="input dtype (default float32)")
    _add_execute_option(memory)
    _add_train_options(memory)
    memory.add_argument("--format", choices=["table", "markdown", "json", "csv"],
                        default="table", help="csv: live bytes by kind after every op")
    memory.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    memory.add_argument("--plot", metavar="FILE.png",
                        help="also draw live memory against op index, split by kind")
    memory.add_argument("--debug", action="store_true", help="show tracebacks")


CHECK_DESCRIPTION = """\
Run every declared model and compare it with its budgets ([tool.costmodel] in pyproject.toml,
or costmodel.toml) and with a baseline lock file. See docs/ci.md.

exit codes: 0 every budget and tolerance holds, 1 one is exceeded (or a model is missing from
the baseline, or a baseline entry has no model), 2 bad input (one line on stderr)"""


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help="models to run instead of the budget file's (" + TARGET_HELP + ")")
    parser.add_argument("--config", metavar="FILE",
                        help="budget file (default: ./costmodel.toml, else ./pyproject.toml)")
    parser.add_argument("--input-shape", action="append", metavar="SHAPE",
                        help="input shape for the TARGETs, as for analyze")
    parser.add_argument("--dtype", default="float32", help="input dtype for the TARGETs")
    _add_execute_option(parser)
    _add_train_options(parser)
    _add_fuse_option(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_budget_commands(commands: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    check = commands.add_parser("check", help="fail on a budget or baseline regression",
                                description=CHECK_DESCRIPTION, formatter_class=raw)
    _add_model_options(check)
    check.add_argument("--baseline", metavar="FILE",
                       help="lock file to compare with (default: the budget file's baseline)")
    check.add_argument("--tolerance", metavar="PCT",
                       help="allowed growth over the baseline, e.g. 0.5%% (default 0)")
    check.add_argument("--update-baseline", action="store_true",
                       help="rewrite the lock file with the new costs after an intended change")
    check.add_argument("--format", choices=["table", "github", "junit", "json"],
                       default="table")
    check.add_argument("--top", type=int, default=5, metavar="N",
                       help="show the N op types and modules that moved most (default 5)")
    check.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")

    baseline = commands.add_parser("baseline", help="write a lock file of every model's costs",
                                   description=CHECK_DESCRIPTION, formatter_class=raw)
    _add_model_options(baseline)
    baseline.add_argument("--output", "-o", metavar="FILE",
                          help="lock file (default: the budget file's baseline, else "
                               "costmodel.lock.json)")

    diff = commands.add_parser("diff", help="compare two models or lock files side by side")
    diff.add_argument("a", metavar="A", help="a TARGET or a lock file (*.json)")
    diff.add_argument("b", metavar="B", help="a TARGET or a lock file (*.json)")
    diff.add_argument("--input-shape", action="append", metavar="SHAPE",
                      help="input shape for TARGETs, as for analyze")
    diff.add_argument("--dtype", default="float32", help="input dtype for TARGETs")
    _add_execute_option(diff)
    _add_train_options(diff)
    diff.add_argument("--format", choices=["table", "json"], default="table")
    diff.add_argument("--top", type=int, default=0, metavar="N",
                      help="show only the N op types and modules that moved most (default: all)")
    diff.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    diff.add_argument("--debug", action="store_true", help="show tracebacks")


def _analyze(args: argparse.Namespace) -> int:
    from costmodel.analysis import analyze_loaded
    from costmodel.capture.load import load, parse_dtype
    from costmodel.report.tables import render

    free, fold = _free(args.free, args.free_layers)
    fuse = _fuse_mode(args)
    if fuse and fold:
        raise CostModelError("--fuse groups the traced ops into kernels: it cannot be combined "
                             "with --free-layers")
    if args.by == "kernel" and not fuse:
        raise CostModelError("--by kernel needs --fuse inductor or --fuse engine")
    loaded = load(args.target, args.input_shape, parse_dtype(args.dtype),
                  device=_device(args), free=free)
    if args.verbose:
        for note in loaded.notes:
            print(f"costmodel: {note}", file=sys.stderr)
        device = next((t.device for t in loaded.model.parameters()), "meta")
        print(f"costmodel: tracing {loaded.name} on {device} tensors, inputs "
              f"{[s.describe() for s in loaded.inputs]}", file=sys.stderr)
    analysis = analyze_loaded(loaded, debug=args.debug, symbolic=args.symbolic,
                              widths=_widths(args.width), execute=args.execute,
                              train=args.train, optimizer=_optimizer(args))
    if fuse:
        from costmodel.views.fusion import fuse as fuse_analysis

        fuse_analysis(analysis, fuse)
    if fold:
        from costmodel.views.fold import fold_layers

        analysis = fold_layers(analysis, fold)
    if args.plot:
        from costmodel.report.plot import plot_op_types

        plot_op_types(analysis, args.plot, args.weights_only)
    _emit(render(analysis, args.format, args.by, args.depth, args.weights_only), args.output)
    return 0


def _fuse_mode(args: argparse.Namespace) -> str | None:
    """--fuse, checked before anything is traced."""
    from costmodel.views.fusion import check_mode

    return check_mode(getattr(args, "fuse", None), getattr(args, "train", False),
                      getattr(args, "target", None) or "model")


def _optimizer(args: argparse.Namespace) -> str | None:
    """--optimizer, checked: a known name, and only with --train."""
    from costmodel.train import check_optimizer

    name = check_optimizer(args.optimizer)
    if name is not None and not args.train:
        raise CostModelError("--optimizer needs --train: an inference pass updates no weights")
    return name


def _memory(args: argparse.Namespace) -> int:
    from costmodel.analysis import analyze_loaded
    from costmodel.capture.load import load, parse_dtype
    from costmodel.report.memory import plot_timeline, render
    from costmodel.views.memory import memory

    loaded = load(args.target, args.input_shape, parse_dtype(args.dtype),
                  device=_device(args))
    result = memory(analyze_loaded(loaded, debug=args.debug, train=args.train,
                                   optimizer=_optimizer(args), storages=True,
                                   execute=args.execute))
    if args.plot:
        plot_timeline(result, args.plot)
    _emit(render(result, args.format), args.output)
    return 0


def _device(args: argparse.Namespace) -> str:
    """Where TARGET builds the model: on the CPU for --execute, else on meta."""
    return "cpu" if args.execute else "meta"


def _emit(text: str, output: str | None) -> None:
    """Print a report, or write it to --output."""
    if output is None:
        print(text)
        return
    try:
        Path(output).write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise CostModelError(f"{output}: cannot write: {exc.strerror}") from exc


def _free(free: Sequence[str] | None, layers: str | None
          ) -> tuple[dict[str, int | None] | None, str | None]:
    """--free ARG=INT,... and --free-layers [ARG=]NAME as load's `free` and the fold's name."""
    from costmodel.capture.freeargs import Fixed, parse_free, parse_free_layers

    parsed = parse_free(free) if free else None
    if not layers:
        return parsed, None
    arg, name = parse_free_layers(layers)
    if arg is not None:
        parsed = {**(parsed or {}), arg: Fixed(2)}
    return parsed, name


def _widths(pairs: Sequence[str] | None) -> dict[str, str] | None:
    """--width MODULE=NAME options as analyze's `widths` mapping."""
    if not pairs:
        return None
    widths = {}
    for pair in pairs:
        module, sep, name = pair.rpartition("=")
        if not sep or not module or not name.isidentifier():
            raise CostModelError(f"bad --width {pair!r}: expected MODULE=NAME, e.g. "
                                 f"'stages.0.*.right.0=B'")
        widths[module] = name
    return widths


def _zoo(args: argparse.Namespace) -> int:
    from costmodel.zoo import MODELS

    for name, factory in MODELS.items():
        doc = (factory.__doc__ or "").strip().splitlines()
        print(f"costmodel.zoo:{name:<20} {doc[0] if doc else ''}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from costmodel.budget import commands

    result = commands.check(args.targets, args.config, args.baseline, args.tolerance,
                            args.update_baseline, args.input_shape, args.dtype, args.debug,
                            args.train, _optimizer(args), args.execute, _fuse_mode(args))
    _emit(commands.render_check(result, args.format, args.top), args.output)
    return result.exit_code


def _baseline(args: argparse.Namespace) -> int:
    from costmodel.budget import commands

    path, records = commands.baseline(args.targets, args.config, args.output, args.input_shape,
                                      args.dtype, args.debug, args.train, _optimizer(args),
                                      args.execute, _fuse_mode(args))
    count = f"{len(records)} model{'s' if len(records) != 1 else ''}"
    print(f"costmodel: wrote {count} to {path}", file=sys.stderr)
    return 0


def _diff(args: argparse.Namespace) -> int:
    from costmodel.budget import commands

    diffs = commands.diff(args.a, args.b, args.input_shape, args.dtype, args.debug,
                          args.train, _optimizer(args), args.execute)
    _emit(commands.render_diff(diffs, args.format, args.top, (args.a, args.b)),
                  args.output)
    return 0


def _lint(args: argparse.Namespace) -> int:
    from costmodel.analysis import analyze_loaded
    from costmodel.capture.load import load, parse_dtype
    from costmodel.lint.config import lint_table
    from costmodel.lint.render import render
    from costmodel.lint.rules import lint
    from costmodel.lint.settings import HELP, settings

    chosen = settings(lint_table(args.config), args.rules, args.fail_on,
                      {name: getattr(args, name) for name in HELP})
    fuse = _fuse_mode(args)
    loaded = load(args.target, args.input_shape, parse_dtype(args.dtype), device=_device(args))
    analysis = analyze_loaded(loaded, debug=args.debug, execute=args.execute)
    if fuse:
        from costmodel.views.fusion import fuse as fuse_analysis

        fuse_analysis(analysis, fuse)
    result = lint(analysis, chosen)
    _emit(render(result, args.format), args.output)
    return result.exit_code


def _bench(args: argparse.Namespace) -> int:
    from costmodel.bench import guidelines

    result = guidelines.run(args.device, args.quick, args.threads, progress=not args.quiet)
    if args.plot:
        guidelines.plot(result, args.plot)
    _emit(guidelines.render(result, args.format), args.output)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from costmodel.latency.commands import calibrate_and_save, describe

    profile, path = calibrate_and_save(args.device, args.threads, args.output, args.smoke,
                                       args.quiet, args.clock,
                                       "quick" if args.quick else None)
    print(f"costmodel: wrote profile {profile.name!r} to {path}", file=sys.stderr)
    print(describe(profile, args.format))
    return 0


def _predicted(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(loaded model, analysis, profile) for predict and validate."""
    from costmodel.analysis import analyze_loaded
    from costmodel.capture.load import load, parse_dtype
    from costmodel.latency.commands import resolve_profile

    fuse = _fuse_mode(args)
    if args.command == "validate" and fuse == "engine":
        raise CostModelError("validate runs the model: --fuse engine names no runtime here; "
                             "use --fuse inductor (torch.compile)")
    profile = resolve_profile(args.profile, args.threads, args.quiet)
    loaded = load(args.target, args.input_shape, parse_dtype(args.dtype), device=_device(args))
    analysis = analyze_loaded(loaded, debug=args.debug, execute=args.execute)
    if fuse:
        from costmodel.views.fusion import fuse as fuse_analysis

        fuse_analysis(analysis, fuse)
    return loaded, analysis, profile


def _predict(args: argparse.Namespace) -> int:
    from costmodel.latency.predict import predict
    from costmodel.latency.render import render

    _, analysis, profile = _predicted(args)
    if args.fuse:
        from costmodel.latency.fused import predict_fused

        prediction = predict_fused(analysis, profile)
    else:
        prediction = predict(analysis, profile)
    if args.plot:
        from costmodel.latency.plot import plot_roofline

        plot_roofline(prediction, args.plot)
    _emit(render(prediction, args.format, args.by, args.depth), args.output)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from costmodel.latency.validate import render, validate

    if args.repeat < 1 or args.warmup < 0:
        raise CostModelError("--repeat must be at least 1 and --warmup at least 0")
    if args.fuse == "inductor":
        from costmodel.latency.fused import check_compiler

        check_compiler()  # before anything is traced or timed
    loaded, analysis, profile = _predicted(args)
    if args.fuse:
        from costmodel.latency.fused import render_validation, validate_fused

        validation = validate_fused(loaded, analysis, profile, args.repeat, args.warmup,
                                    args.clock)
        _emit(render_validation(validation, args.format), args.output)
        return 0
    validation = validate(loaded, analysis, profile, args.repeat, args.warmup, args.clock)
    _emit(render(validation, args.format), args.output)
    return 0


def _batch(args: argparse.Namespace) -> int:
    from costmodel.batch.commands import batch
    from costmodel.batch.work import Options

    options = Options(tuple(args.input_shape) if args.input_shape else None, args.dtype,
                      args.train, _optimizer(args), args.execute)
    batch(args.targets, args.from_file, options, args.output, args.format, args.resume,
          args.workers, args.scheduler, args.timeout, args.plot, not args.quiet, args.debug)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        handlers = {"analyze": _analyze, "zoo": _zoo, "check": _check, "baseline": _baseline,
                    "diff": _diff, "lint": _lint, "bench": _bench, "calibrate": _calibrate,
                    "predict": _predict, "validate": _validate, "memory": _memory,
                    "batch": _batch}
        return handlers[args.command](args)
    except CostModelError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"costmodel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader stopped early (`| head`): say nothing, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # for the exit flush
        return 141  # 128 + SIGPIPE, what a shell reports for a process the pipe ended


if __name__ == "__main__":
    sys.exit(main())
