"""The command line: `backprop-parity compare ...` (also `python -m compare compare ...`).

Exit codes: 0 when everything agrees, 1 when something differs, 2 on bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from from_scratch.errors import BadInputError, a_or_an

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
    parser = _Parser(prog="backprop-parity", description=__doc__.splitlines()[0])
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
        help="compare a saved keras.Sequential (its weights, compiled loss and dtype) with its NumPy model",
    )
    t = sub.add_parser("train", help="train both sides side by side and compare them after every step")
    t.add_argument(
        "--data",
        default="digits",
        help="digits, iris, spirals, xor, regression, adding (--arch Tx2-...-1) or idx:IMAGES,LABELS",
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
        help="train both sides in lockstep starting from a saved keras.Sequential's weights",
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
        metavar="SHAPE",
        help="the input shape without the batch axis: 7, or 8,8,1 (read from --inputs when that is given)",
    )
    c.add_argument(
        "--inputs",
        metavar="FILE.npy",
        help="the batch to check, an array (N, *input_shape) saved with numpy.save: integers are indices (an "
        "Embedding's), floats values; instead of a random batch",
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


def run_train(args: argparse.Namespace) -> int:
    from compare.data import load_dataset

    check_plot_path(args.plot)  # before any work: a bad path must not cost a finished training run
    from compare.data import REGRESSION_DATASETS, SHAPED_DATASETS

    shaped = args.data in SHAPED_DATASETS  # the adding problem: T is read from --arch, so loaded after it
    from from_scratch.arch import Architecture
    from from_scratch.losses import get_loss

    default_loss = "mean_squared_error" if args.data in REGRESSION_DATASETS else "categorical_crossentropy"
    loss = get_loss(args.loss or default_loss)
    arch = Architecture.parse(args.arch, output_activation=loss.default_output)
    if shaped:  # built from --arch: the run estimated from its shapes before the set is built
        from compare.data import SHAPED_SAMPLES, check_training_memory

        check_training_memory(arch, SHAPED_SAMPLES[args.data], args.batch, args.epochs, f"train --data {args.data}")
    x, y = load_dataset(args.data, arch.input_shape)  # a layout that would rearrange a sample is refused
    if arch.input_dim != x.shape[1] or arch.output_dim != y.shape[1]:
        hint = f"{arch.input_shape[0]}x2-lstm16-{y.shape[1]}" if shaped else f"{x.shape[1]}-32-{y.shape[1]}"
        hint += "" if shaped else _image_hint(x, y)
        raise BadInputError(
            f"--data {args.data} has {x.shape[1]} features and {y.shape[1]} outputs, but --arch {args.arch} expects "
            f"{arch.input_dim} and {arch.output_dim} (try --arch {hint})"
        )
    from compare.data import as_inputs, check_training_memory

    check_training_memory(arch, len(x), args.batch, args.epochs, f"train --data {args.data}")  # before TensorFlow
    return train_and_print(args, arch, as_inputs(x, arch.input_shape), y, loss, args.dtype)


def train_and_print(
    args: argparse.Namespace,
    arch: object,
    x: object,
    y: object,
    loss: object,
    dtype: str,
    initial_weights: list | None = None,
    header: dict | None = None,
) -> int:
    """Both sides trained in lockstep with the command's optimizer options, then printed; the exit code."""
    from compare.report import progress_bar
    from compare.training import run_training

    given = {
        "learning_rate": args.lr,
        "momentum": args.momentum,
        "clipnorm": args.clipnorm,
        "clipvalue": args.clipvalue,
        "global_clipnorm": args.global_clipnorm,
    }
    options = {k: v for k, v in given.items() if v is not None}
    try:
        report = run_training(
            arch,
            x,
            y,
            args.optimizer,
            options,
            loss,
            args.epochs,
            args.batch,
            dtype,
            args.seed,
            on_step=progress_bar(args.json),
            initial_weights=initial_weights,
        )
    except KeyboardInterrupt as interrupt:  # Ctrl-C: the epochs finished so far, then exit 130
        from compare.report import render_epochs

        partial = getattr(interrupt, "report", None)
        done = len(partial.epochs) if partial is not None else 0
        if partial is not None and args.json:
            from compare.report import to_json

            print(to_json({"config": partial.config, "epochs": partial.epochs, "interrupted": True}))
        elif partial is not None and done:
            print(render_epochs(partial))
        steps = len(partial.steps) if partial is not None else 0
        print(
            f"backprop-parity {args.command}: interrupted after {done} of {args.epochs} epochs ({steps} steps); "
            "no verdict",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    report.config = {**(header or {}), **report.config}
    print_training(report, args)
    return EXIT_PASS if report.passed else EXIT_FAIL


def print_training(report: object, args: argparse.Namespace) -> None:
    """Write the plot if asked, then print the run as JSON or as its table (compare.report)."""
    from compare.report import render_training, to_json

    if args.plot:
        from compare.plot import plot_training

        plot_training(report, args.plot)
    print(to_json(report) if args.json else render_training(report, args.plot))


def run_zoo(args: argparse.Namespace) -> int:
    """Run each bug, print its evidence and diagnosis; exit 0 when every bug is caught where it should be."""
    from compare.report import render_zoo_entry, to_json
    from compare.zoo import ZOO, diagnosis_text
    from from_scratch.errors import unknown_name

    if args.name is not None and args.name not in ZOO:
        raise unknown_name("zoo entry", args.name, ZOO)
    results = []
    for entry in [ZOO[args.name]] if args.name else ZOO.values():
        report = entry.run()
        text = diagnosis_text(report)
        caught = not report.passed and entry.expect in text
        results.append(
            {
                "name": entry.name,
                "description": entry.description,
                "caught": caught,
                "diagnosis": text,
                "report": report.to_dict(),
            }
        )
        if not args.json:
            print(render_zoo_entry(entry, report, text, caught))
    missed = sum(not r["caught"] for r in results)
    if args.json:
        print(to_json(results))
    else:
        print(f"{len(results) - missed} of {len(results)} bugs caught and located")
    return EXIT_PASS if not missed else EXIT_FAIL


def run_examples(args: argparse.Namespace) -> int:
    if args.name in (None, "softmax"):
        check_plot_path(args.plot_path)  # the softmax example writes it
    from compare.examples import EXAMPLES, run_example
    from compare.report import to_json

    if args.name is not None and args.name not in EXAMPLES:
        from from_scratch.errors import unknown_name

        raise unknown_name("example", args.name, EXAMPLES)
    names = [args.name] if args.name else list(EXAMPLES)
    figures = {}
    for name in names:
        out = (lambda line: None) if args.json else print
        if not args.json:
            print(f"== {name}: {EXAMPLES[name].description}")
        options = {"plot_path": args.plot_path} if name == "softmax" else {}
        figures[name] = run_example(name, out=out, **options)
        if not args.json:
            print()
    if args.json:
        print(to_json(figures))
    return EXIT_PASS


def _image_hint(x: object, y: object) -> str:
    """For square images stored as rows (digits: 64 = 8x8 pixels), the CNN form of the suggestion."""
    side = int(round(x.shape[1] ** 0.5))
    return f" or {side}x{side}x1-conv8k3-pool2-flatten-{y.shape[1]}" if side >= 4 and side * side == x.shape[1] else ""


def architecture_from_args(args: argparse.Namespace) -> object:
    """--arch plus the layer flags (activation, output activation, dropout, batchnorm, l1/l2) as one description,
    built from the values themselves (not re-read from text: no value is rounded) and checked by building the
    scratch layers, which needs no TensorFlow."""
    from from_scratch.arch import Architecture, LayerSpec
    from from_scratch.layers import LAYERS
    from from_scratch.losses import LOSSES

    default = LOSSES[args.loss].default_output if args.loss in LOSSES else "linear"  # an unknown loss: refused later
    output = args.output_activation or ("linear" if args.from_logits else default)
    arch = Architecture.parse(args.arch, hidden_activation=args.activation, output_activation=output)
    reg = {k: v for k, v in (("kernel_l1", args.l1), ("kernel_l2", args.l2)) if v}
    layers = []
    dense = [i for i, spec in enumerate(arch.layers) if spec.kind == "dense"]
    for i, spec in enumerate(arch.layers):
        if spec.kind == "dense" and reg:
            spec = LayerSpec("dense", spec.units, spec.activation, {**spec.options, **reg})
        layers.append(spec)
        if spec.kind == "dense" and i != dense[-1]:
            if args.batchnorm:
                layers.append(LayerSpec("batch_normalization"))
            if args.dropout is not None:
                layers.append(LayerSpec("dropout", options={"rate": args.dropout}))
    for spec in layers:
        LAYERS[spec.kind].from_spec(spec)  # each value checked where the layer checks it
    return Architecture.of_shape(arch.input_shape, tuple(layers))


def loss_from_args(args: argparse.Namespace) -> object:
    from from_scratch.losses import get_loss

    kwargs = {}
    if args.from_logits:
        kwargs["from_logits"] = True
    if args.label_smoothing is not None:
        kwargs["label_smoothing"] = args.label_smoothing
    return get_loss(args.loss, **kwargs)


def run_matrix(args: argparse.Namespace) -> int:
    from compare.matrix import matrix, run_entry
    from compare.report import matrix_record, render_matrix, to_json

    records = [matrix_record(entry, run_entry(entry, seed=args.seed)) for entry in matrix()]
    print(to_json(records) if args.json else render_matrix(records))
    return EXIT_PASS if all(r["status"] == "PASS" for r in records) else EXIT_FAIL


def run_compare(args: argparse.Namespace) -> int:
    if args.all:
        from compare.keras_cli import explicit_options

        given = explicit_options(getattr(args, "argv", []))
        ignored = ["--" + dest.replace("_", "-") for dest in sorted(given) if dest not in ("all", "seed", "json")]
        if ignored:
            raise BadInputError(
                f"--all runs the fixed matrix of every activation, loss, depth and dtype; it does not "
                f"take {', '.join(ignored)} (only --seed and --json)"
            )
        return run_matrix(args)
    from compare.data import BATCHES, check_layout, check_memory
    from from_scratch.errors import unknown_name

    arch, loss = architecture_from_args(args), loss_from_args(args)  # all checked before TensorFlow loads
    if args.data not in BATCHES:
        raise unknown_name("data set", args.data, BATCHES)
    check_layout(args.data, arch.input_shape)  # digits as 4x4x4 would rearrange the pixels
    check_memory(f"compare --batch {args.batch}", args.batch, arch.footprint(), 8)
    from compare.harness import run_comparison
    from compare.report import render, to_json

    report = run_comparison(
        arch=arch,
        batch=args.batch,
        dtype=args.dtype,
        seed=args.seed,
        data=args.data,
        loss=loss,
        gradcheck_samples=args.gradcheck,
    )
    print(to_json(report) if args.json else render(report))
    return EXIT_PASS if report.passed else EXIT_FAIL


def load_factory(spec: str, what: str) -> object:
    """Call the factory `spec` names (module:factory or path/to/file.py:factory) and return what it makes."""
    import importlib
    import importlib.util

    target, _, name = spec.rpartition(":")
    if not target or not name.isidentifier():
        raise BadInputError(f"{what} {spec!r}: expected module:factory or path/to/file.py:factory")
    is_file = target.endswith(".py") or "/" in target or "\\" in target or Path(target).is_file()
    if is_file and not Path(target).exists():
        raise BadInputError(f"{what} {spec!r}: no such file {target}")
    if is_file and (not Path(target).is_file() or Path(target).suffix != ".py"):
        kind = "a folder" if Path(target).is_dir() else "not a .py file"
        raise BadInputError(f"{what} {spec!r}: {target} is {kind}; give path/to/file.py:factory or module:factory")
    # as `python file.py` and `python -m module` do, the file's folder (or the current one) is importable, so the
    # user's file can import its neighbours
    folder = str(Path(target).resolve().parent if is_file else Path.cwd())
    sys.path.insert(0, folder)
    try:
        if is_file:
            module_spec = importlib.util.spec_from_file_location(f"_parity_{Path(target).stem}", target)
            if module_spec is None or module_spec.loader is None:
                raise BadInputError(f"{what} {spec!r}: {target} cannot be imported as a Python file")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except BadInputError:
        raise
    except ModuleNotFoundError as exc:
        if (
            exc.name is not None and target.split(".")[0] == exc.name.split(".")[0]
        ):  # the module itself, not a neighbour
            raise BadInputError(
                f"{what} {spec!r}: no module named {exc.name!r}; give path/to/file.py:factory or "
                "an importable module:factory"
            ) from None
        raise BadInputError(f"{what} {spec!r}: importing {target} raised {_where(exc)}") from None
    except (Exception, SystemExit) as exc:  # the user's module failed to import (or exited): one line, with where
        raise BadInputError(f"{what} {spec!r}: importing {target} raised {_where(exc)}") from None
    finally:
        sys.path.remove(folder)
    if is_file:
        _GIVEN_PATHS[str(Path(target).resolve())] = target
    if not hasattr(module, name):
        raise BadInputError(f"{what} {spec!r}: {target} has no function {name!r}")
    factory = getattr(module, name)
    if not callable(factory):
        raise BadInputError(
            f"{what} {spec!r}: {target}'s {name} is {type(factory).__name__!r}, not a function that makes the layer"
        )
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:  # it needs arguments: said before calling it
        raise BadInputError(f"{what} {spec!r}: {name}() must take no argument ({exc})") from None
    except ValueError:  # a builtin without a signature: calling it will tell
        pass
    try:
        return factory()
    except (Exception, SystemExit) as exc:  # SystemExit too: user code must not set this command's exit code
        raise BadInputError(f"{what} {spec!r}: {name}() raised {_where(exc)}") from None


#: The files the user named on the command line: resolved path -> the path as given (how errors name them).
_GIVEN_PATHS: dict[str, str] = {}


def _shown_path(filename: str) -> str:
    """How an error names a source file: a file given on the command line as it was given; another file by its
    path relative to the current folder when it lies below it, else by its full path (a bare name such as
    layers.py could be the user's or this package's)."""
    path = Path(filename)
    try:
        resolved = str(path.resolve())
    except OSError:
        return filename
    if resolved in _GIVEN_PATHS:
        return _GIVEN_PATHS[resolved]
    try:
        return str(Path(resolved).relative_to(Path.cwd().resolve()))
    except ValueError:
        return resolved


def _where(exc: BaseException) -> str:
    """ "ValueError: message (at path/to/file.py:12 in build)": the exception and where it was raised, the innermost
    frame outside the installed libraries (what raised inside NumPy or Keras was called from there), else the
    innermost frame."""
    import sysconfig
    import traceback

    libraries = {str(Path(sysconfig.get_path(key)).resolve()) for key in ("stdlib", "purelib", "platlib")}

    def in_library(filename: str) -> bool:
        return any(str(Path(filename).resolve()).startswith(folder + os.sep) for folder in libraries)

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]  # no <frozen ..>
    own = [f for f in frames if not in_library(f.filename)]
    frame = own[-1] if own else frames[-1] if frames else None
    place = f" (at {_shown_path(frame.filename)}:{frame.lineno} in {frame.name})" if frame else ""
    return f"{type(exc).__name__}: {exc}{place}"


def load_inputs(path: str) -> object:
    """The batch saved in `path` (numpy.save's .npy format), checked as check_layer checks a batch; refused in one
    line naming the file when it is missing, not .npy, unreadable, or not a batch of finite real numbers."""
    import numpy as np

    what = f"--inputs {path}"
    if not Path(path).exists():
        raise BadInputError(f"{what}: no such file")
    if not Path(path).is_file():
        raise BadInputError(f"{what}: not a file")
    if Path(path).suffix.lower() != ".npy":
        raise BadInputError(f"{what}: not a .npy file (save the batch with numpy.save(path, x))")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise BadInputError(f"{what}: cannot be read ({exc.strerror or exc})") from None
    if magic != b"\x93NUMPY":
        raise BadInputError(f"{what}: not in .npy format (save the batch with numpy.save(path, x))")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise BadInputError(f"{what}: holds Python objects (dtype object); save an array of numbers") from None
        raise BadInputError(f"{what}: cannot be read as a .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise BadInputError(f"{what}: cannot be read as a .npy array ({exc})") from None


def run_check_layer(args: argparse.Namespace) -> int:
    from from_scratch.layers import Layer

    if args.inputs is None and args.input_shape is None:
        raise BadInputError("give --input-shape SHAPE (one sample's shape), or a batch with --inputs FILE.npy")
    inputs = None
    if args.inputs is not None:
        loaded = load_inputs(args.inputs)  # the file's own faults are refused before TensorFlow loads
        from compare.check import as_batch

        inputs = as_batch(loaded, args.dtype, f"--inputs {args.inputs}")
        shape = tuple(int(d) for d in inputs.shape[1:])
        if args.input_shape is not None and args.input_shape != shape:
            raise BadInputError(
                f"--input-shape {','.join(map(str, args.input_shape))} contradicts --inputs {args.inputs} of shape "
                f"{inputs.shape} (one sample: {','.join(map(str, shape))}); give one of them"
            )
        if args.batch is not None and args.batch != len(inputs):
            raise BadInputError(
                f"--batch {args.batch} contradicts --inputs {args.inputs} of shape {inputs.shape} ({len(inputs)} "
                "samples); give one of them"
            )
    layer = load_factory(args.scratch, "SCRATCH")
    if not isinstance(layer, Layer):
        raise BadInputError(
            f"SCRATCH {args.scratch!r} returned {a_or_an(type(layer).__name__)}, not a from_scratch.Layer"
        )
    import keras

    from compare.check import check_layer
    from compare.report import render, to_json

    twin = load_factory(args.keras, "KERAS")
    if not isinstance(twin, keras.layers.Layer):
        raise BadInputError(f"KERAS {args.keras!r} returned {a_or_an(type(twin).__name__)}, not a keras.layers.Layer")
    try:
        report = check_layer(
            layer,
            twin,
            None if inputs is not None else args.input_shape,
            batch=None if inputs is not None else args.batch,
            dtype=args.dtype,
            seed=args.seed,
            inputs=inputs,
        )
    except BadInputError:
        raise
    except (Exception, SystemExit) as exc:  # raised inside the user's layer or its twin: one line, no traceback
        hint = ""
        if isinstance(exc, IndexError) and inputs is None:
            hint = "; the batch was random N(0, 1) values: for a layer that takes indices, give them with --inputs"
        elif isinstance(exc, IndexError):
            from compare.check import INDICES_AS_VALUES

            hint = "; " + INDICES_AS_VALUES.format(layer=args.scratch, dtype=args.dtype)
        raise BadInputError(f"checking {args.scratch} against {args.keras} raised {_where(exc)}{hint}") from None
    print(to_json(report) if args.json else render(report))
    return EXIT_PASS if report.passed else EXIT_FAIL


COMMANDS = {
    "check-layer": run_check_layer,
    "compare": run_compare,
    "train": run_train,
    "zoo": run_zoo,
    "examples": run_examples,
}


def check_plot_path(path: str | None) -> None:
    """A plot path (--plot, --plot-path) must be a file (not a folder) in an existing, writable folder, with an
    image format that matplotlib writes: checked before any work starts."""
    if path is None:
        return
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        if path.endswith(("/", "\\")) or target.is_dir():
            raise BadInputError(f"--plot {path!r} is a folder; give a file name such as {str(target / 'plot.png')!r}")
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise BadInputError(f"--plot {path!r}: the folder {str(folder)!r} does not exist or is not writable")
        if len(target.name.encode()) > os.pathconf(folder, "PC_NAME_MAX"):
            raise BadInputError(f"--plot {path!r}: the file name is longer than this file system allows")
        if target.is_symlink() and not target.exists() or target.exists() and not target.is_file():
            raise BadInputError(f"--plot {path!r} exists and is not a regular file (a dangling link, a FIFO, a device)")
    except OSError as exc:
        raise BadInputError(f"--plot {path!r}: {exc.strerror or exc}") from None
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise BadInputError("--plot needs matplotlib: pip install 'backprop-parity[plot]'") from None
    formats = Figure().canvas.get_supported_filetypes()
    if target.suffix.lower().lstrip(".") not in formats:
        raise BadInputError(
            f"--plot {path!r}: unknown image format {target.suffix or '(none)'!r}; use one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )


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
