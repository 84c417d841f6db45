"""The `costmodel` command: argument parsing and error reporting only; the work is elsewhere."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

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
instance, an nn.Module subclass or a zero-argument factory (e.g. costmodel.zoo:resnet50)"""


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
    analyze.add_argument("--by", choices=["op-type", "module", "node"], default="op-type",
                         help="group rows by op type (default), module tree, or op")
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
    analyze.add_argument("--verbose", "-v", action="store_true",
                         help="say how the model was built and traced")
    analyze.add_argument("--debug", action="store_true", help="show tracebacks")

    commands.add_parser("zoo", help="list the reference models that ship with costmodel")
    return parser


def _analyze(args: argparse.Namespace) -> int:
    from costmodel.analysis import analyze_loaded
    from costmodel.load import load, parse_dtype
    from costmodel.report import render

    loaded = load(args.target, args.input_shape, parse_dtype(args.dtype))
    if args.verbose:
        for note in loaded.notes:
            print(f"costmodel: {note}", file=sys.stderr)
        device = next((t.device for t in loaded.model.parameters()), "meta")
        print(f"costmodel: tracing {loaded.name} on {device} tensors, inputs "
              f"{[s.describe() for s in loaded.inputs]}", file=sys.stderr)
    analysis = analyze_loaded(loaded, debug=args.debug, symbolic=args.symbolic)
    if args.plot:
        from costmodel.plot import plot_op_types

        plot_op_types(analysis, args.plot, args.weights_only)
    text = render(analysis, args.format, args.by, args.depth, args.weights_only)
    if args.output:
        try:
            Path(args.output).write_text(text + "\n")
        except OSError as exc:
            raise CostModelError(f"{args.output}: cannot write: {exc.strerror}") from exc
    else:
        print(text)
    return 0


def _zoo(args: argparse.Namespace) -> int:
    from costmodel.zoo import MODELS

    for name, factory in MODELS.items():
        doc = (factory.__doc__ or "").strip().splitlines()
        print(f"costmodel.zoo:{name:<20} {doc[0] if doc else ''}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"analyze": _analyze, "zoo": _zoo}[args.command](args)
    except CostModelError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"costmodel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
