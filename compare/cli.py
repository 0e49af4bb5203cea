"""The command line: `backprop-parity compare ...` (also `python -m compare compare ...`).

Exit codes: 0 when everything agrees, 1 when something differs, 2 on bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from compare.commands import (  # noqa: F401 (re-exported: the commands are importable from here as before)
    architecture_from_args,
    check_plot_path,
    loss_from_args,
    print_training,
    run_check_layer,
    run_compare,
    run_examples,
    run_matrix,
    run_train,
    run_zoo,
    train_and_print,
)
from compare.parser import (  # noqa: F401 (re-exported: the grammar is importable from here as before)
    EXIT_BAD_INPUT,
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_PASS,
    build_parser,
    input_shape,
)
from compare.user_code import _where, load_factory, load_inputs  # noqa: F401 (re-exported as before)
from from_scratch.errors import BadInputError

COMMANDS = {
    "check-layer": run_check_layer,
    "compare": run_compare,
    "train": run_train,
    "zoo": run_zoo,
    "examples": run_examples,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import warnings

    import numpy as np

    # NumPy's overflow warnings and Keras's advice would add lines to the one-line contract; what matters is
    # reported by the command itself (a diverged run, a non-finite loss on both sides)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _dispatch(args, argv)


def _dispatch(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what was given explicitly (compare --all, --keras-model)
    try:
        if getattr(args, "keras_model", None) is not None:  # compare / train a saved Keras model
            from compare.keras_cli import run_keras_command

            return run_keras_command(args, sys.argv[1:] if argv is None else argv)
        return COMMANDS[args.command](args)
    except BadInputError as exc:
        print(f"backprop-parity {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit must not fail again
        return EXIT_PASS
    except KeyboardInterrupt:
        print(f"backprop-parity {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError as exc:  # what the estimates did not foresee: still one line, and not "the sides differ"
        print(
            f"backprop-parity {args.command}: error: out of memory ({exc}); use a smaller batch or network",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except RecursionError:  # Keras walks a Sequential recursively: a network of ~1,000 layers is too deep for it
        print(
            f"backprop-parity {args.command}: error: the network is too deep for Keras to build or run (Python's "
            "recursion limit was reached inside Keras/TensorFlow); use fewer layers",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except Exception as exc:  # not a verdict and not the user's mistake: say so in one line, never exit 1
        print(
            f"backprop-parity {args.command}: internal error (a bug in backprop-parity; please report it): "
            f"{_where(exc)}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
