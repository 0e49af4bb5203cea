"""The command line: `backprop-parity compare ...` (also `python -m compare compare ...`).

Exit codes: 0 when everything agrees, 1 when something differs, 2 on bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from from_scratch.errors import BadInputError

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="backprop-parity", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("compare", help="compare loss, outputs and every gradient on one batch")
    p.add_argument("--arch", default="64-32-16-10", help="input width then layer widths, e.g. 64-32-16-10")
    p.add_argument("--batch", type=_positive, default=32, help="batch size (default 32)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights and the synthetic batch")
    p.add_argument("--data", default="synthetic", help="synthetic (default) or digits (needs scikit-learn)")
    p.add_argument("--loss", default="categorical_crossentropy", help="a Keras loss identifier")
    p.add_argument("--gradcheck", type=int, default=8, metavar="N",
                   help="numerical-gradient coordinates sampled per parameter (0 to skip)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def run_compare(args: argparse.Namespace) -> int:
    from compare.harness import run_comparison
    from compare.report import render, to_json

    report = run_comparison(
        arch=args.arch, batch=args.batch, dtype=args.dtype, seed=args.seed, data=args.data, loss=args.loss,
        gradcheck_samples=args.gradcheck,
    )
    print(to_json(report) if args.json else render(report))
    return EXIT_PASS if report.passed else EXIT_FAIL


COMMANDS = {"compare": run_compare}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BadInputError as exc:
        print(f"backprop-parity {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
