"""The command line's grammar: the `backprop-parity` parser with its subcommands and option types, the exit codes,
and which options a command line gave explicitly (`explicit_options`).

Usage errors are one line on stderr and exit code 2; an option given twice is refused.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

#: The parser's description: the command line's first line of help.
DESCRIPTION = "The command line: `backprop-parity compare ...` (also `python -m compare compare ...`)."

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        """argparse's, refusing an option given twice (`--seed 1 --seed 2`), which argparse lets the last one win."""
        tokens = sys.argv[1:] if args is None else list(args)
        seen: set[str] = set()
        for token in tokens:
            if token == "--":
                break
            action = self._option_string_actions.get(token.split("=", 1)[0]) if token.startswith("-") else None
            if action is None or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            if action.dest in seen:
                self.error(f"{token.split('=', 1)[0]} given twice: give each option once (the last would win)")
            seen.add(action.dest)
        return super().parse_known_args(args, namespace)


def input_shape(text: str) -> tuple[int, ...]:
    """ "7" -> (7,), "8,8,1" (or "8x8x1") -> (8, 8, 1): positive integers."""
    parts = text.replace("x", ",").split(",")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape of positive integers such as 7 or 8,8,1")
    return tuple(int(p) for p in parts)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backprop-parity")
    except PackageNotFoundError:
        return "(not installed)"


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="backprop-parity", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("compare", help="compare loss, outputs and every gradient on one batch")
    p.add_argument("--arch", default="64-32-16-10", help="input width then layer widths, e.g. 64-32-16-10")
    p.add_argument("--batch", type=_positive, default=32, help="batch size (default 32)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--seed", type=_non_negative, default=0, help="seeds the weights and the synthetic batch (>= 0)")
    p.add_argument("--data", default="synthetic", help="synthetic (default) or digits (needs scikit-learn)")
    p.add_argument("--loss", default="categorical_crossentropy", help="a Keras loss identifier")
    p.add_argument("--from-logits", action="store_true", help="pass from_logits=True to the loss")
    p.add_argument("--label-smoothing", type=float, default=None, help="label_smoothing for the cross-entropies")
    p.add_argument("--activation", default="relu", help="hidden layers' activation (default relu)")
    p.add_argument(
        "--output-activation",
        default=None,
        help="output activation (default: softmax for cross-entropies, sigmoid for binary, else linear)",
    )
    p.add_argument(
        "--dropout", type=float, default=None, metavar="RATE", help="a Dropout layer after each hidden layer"
    )
    p.add_argument("--batchnorm", action="store_true", help="a BatchNormalization layer after each hidden layer")
    p.add_argument("--l1", type=float, default=0.0, help="L1 kernel regulariser on every Dense layer")
    p.add_argument("--l2", type=float, default=0.0, help="L2 kernel regulariser on every Dense layer")
    p.add_argument(
        "--all",
        action="store_true",
        help="run the whole matrix (every activation x loss x depth x dtype) and print one summary table",
    )
    p.add_argument(
        "--gradcheck",
        type=_non_negative,
        default=8,
        metavar="N",
        help="numerical-gradient coordinates sampled per parameter (0 to skip)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--keras-model",
        default=None,
        metavar="PATH.keras",
        help="compare a saved Keras model, Sequential or functional (its weights, compiled loss and dtype), with its "
        "NumPy model",
    )
    t = sub.add_parser("train", help="train both sides side by side and compare them after every step")
    t.add_argument(
        "--data",
        default="digits",
        help="digits, iris, spirals, xor, regression, adding (--arch Tx2-...-1), marker (--arch T-embed10x...-9) or "
        "idx:IMAGES,LABELS",
    )
    t.add_argument("--arch", default="64-32-10", help="input width then layer widths")
    t.add_argument("--optimizer", default="adam", help="sgd, adam, adamw, rmsprop, adagrad")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's Keras default)")
    t.add_argument("--momentum", type=float, default=None, help="SGD / RMSprop momentum")
    for flag, what in (
        ("--clipnorm", "clip each gradient to this norm"),
        ("--clipvalue", "clip each gradient entry to [-V, V]"),
        ("--global-clipnorm", "clip all gradients together to this global norm"),
    ):
        t.add_argument(flag, type=float, default=None, help=f"{what} (Keras's optimizer argument of that name)")
    t.add_argument("--epochs", type=_positive, default=10)
    t.add_argument("--batch", type=_positive, default=64)
    t.add_argument(
        "--loss", default=None, help="default: categorical_crossentropy (mean_squared_error for regression, adding)"
    )
    t.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    t.add_argument("--seed", type=_non_negative, default=0)
    t.add_argument(
        "--plot", default=None, metavar="OUT.png", help="loss curves, parameter difference, confusion matrix"
    )
    t.add_argument("--json", action="store_true")
    t.add_argument(
        "--keras-model",
        default=None,
        metavar="PATH.keras",
        help="train both sides in lockstep starting from a saved Keras model's weights (Sequential, or functional "
        "of one input and one output)",
    )

    z = sub.add_parser("zoo", help="classic backprop bugs, each caught and located by the harness")
    z.add_argument("name", nargs="?", help="one bug; all of them when omitted")
    z.add_argument("--json", action="store_true")

    c = sub.add_parser(
        "check-layer",
        help="prove a hand-written layer against the Keras layer it mirrors",
        description="Each of SCRATCH and KERAS is module:factory or path/to/file.py:factory, a "
        "function that takes no argument and returns the layer (a from_scratch.Layer, "
        "a keras.layers.Layer).",
    )
    c.add_argument(
        "scratch", metavar="SCRATCH", help="module:factory or file.py:factory returning a from_scratch.Layer"
    )
    c.add_argument("keras", metavar="KERAS", help="module:factory or file.py:factory returning a keras.layers.Layer")
    c.add_argument(
        "--input-shape",
        type=input_shape,
        nargs="+",
        metavar="SHAPE",
        help="the input shape without the batch axis: 7, or 8,8,1 (read from --inputs when that is given); one per "
        "input for a layer of several inputs: --input-shape 7 7",
    )
    c.add_argument(
        "--inputs",
        nargs="+",
        metavar="FILE.npy",
        help="the batch to check, an array (N, *input_shape) saved with numpy.save: integers are indices (an "
        "Embedding's), floats values; instead of a random batch; one file per input for a layer of several inputs",
    )
    c.add_argument(
        "--roles",
        nargs="+",
        metavar="ROLE",
        help="an attention layer's inputs by role, one per --input-shape (or --inputs file), from query, value, key, "
        "attention_mask: KERAS is then called as keras_layer(query, value, key=..., attention_mask=...) (default "
        "against a MultiHeadAttention: query value [key])",
    )
    c.add_argument(
        "--use-causal-mask",
        action="store_true",
        help="an attention call's use_causal_mask=True, handed to both layers",
    )
    c.add_argument(
        "--return-attention-scores",
        action="store_true",
        help="an attention call's return_attention_scores=True (Keras's explicit path), handed to both layers; the "
        "output is compared",
    )
    c.add_argument("--batch", type=_positive, default=None, help="batch size (default 16; read from --inputs)")
    c.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    c.add_argument(
        "--seed", type=_non_negative, default=0, help="seeds the parameters, the batch and the upstream gradient"
    )
    c.add_argument("--json", action="store_true", help="print the report as JSON")

    e = sub.add_parser("examples", help="worked examples from the seed material (all of them when NAME is omitted)")
    e.add_argument("name", nargs="?", help="the example to run; all of them when omitted")
    e.add_argument("--plot-path", default="activations.png", help="where the softmax example saves its plot")
    e.add_argument("--json", action="store_true", help="print the examples' figures as JSON")
    return parser


def explicit_options(argv: Sequence[str]) -> set[str]:
    """The argparse dests given on the command line `argv` (as opposed to left at their defaults).

    argparse does not record this, so the command line is parsed again by the same parser with every default
    suppressed: what is left in the namespace was given (abbreviations and --flag=value resolved by argparse)."""
    parser = build_parser()
    for action in parser._actions:  # argparse keeps the subcommand parsers in its _SubParsersAction
        for sub in (getattr(action, "choices", None) or {}).values():
            if isinstance(sub, argparse.ArgumentParser):
                for option in sub._actions:
                    option.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(list(argv)))) - {"command"}
