"""What each command of the command line does with its parsed arguments: `compare` (one batch, or the whole matrix
with --all), `train`, `zoo`, `examples` and `check-layer`, with the helpers they share (the network and loss from the
flags, the training run printed, a plot path checked before any work).

Each returns the exit code: 0 pass, 1 differs; bad input raises BadInputError (compare/cli.py prints it in one line).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from compare.parser import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_PASS
from compare.user_code import _where, load_factory, load_inputs
from from_scratch.errors import BadInputError, a_or_an


def run_train(args: argparse.Namespace) -> int:
    from compare.data import load_dataset

    check_plot_path(args.plot)  # before any work: a bad path must not cost a finished training run
    from compare.data import REGRESSION_DATASETS, SHAPED_DATASETS, SHAPED_HINTS

    shaped = args.data in SHAPED_DATASETS  # adding, marker: T is read from --arch, so loaded after it
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
        hint = SHAPED_HINTS[args.data](arch.input_shape[0], y.shape[1]) if shaped else f"{x.shape[1]}-32-{y.shape[1]}"
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
    if not isinstance(arch, Architecture):  # a graph (merges of branches): its layers are written in the string
        flags = [
            flag
            for flag, given in (
                ("--l1", args.l1),
                ("--l2", args.l2),
                ("--batchnorm", args.batchnorm),
                ("--dropout", args.dropout is not None),
            )
            if given
        ]
        if flags:
            raise BadInputError(
                f"{', '.join(flags)} add to every Dense layer of a chain; in --arch {args.arch!r}, a network with "
                "merges, write them on the layers themselves (32:relu:l2=0.01, bn, dropout0.2)"
            )
        return arch
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
        from compare.parser import explicit_options

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


def run_check_layer(args: argparse.Namespace) -> int:
    """check-layer: one --input-shape (or --inputs file) per input of the layer: one for a plain layer, several for
    a layer of several inputs (--input-shape 7 7); an attention layer's inputs named by --roles (query value key
    attention_mask), its call options by --use-causal-mask and --return-attention-scores."""
    from from_scratch.layers import Layer

    shapes, files = args.input_shape, args.inputs
    if files is None and shapes is None:
        raise BadInputError("give --input-shape SHAPE (one sample's shape), or a batch with --inputs FILE.npy")
    inputs = None
    if files is not None:
        raw = [load_inputs(f) for f in files]  # the files' own faults are refused before TensorFlow loads
        from compare.check import as_batch
        from compare.check_attention import as_mask

        roles = list(args.roles or [])
        loaded = [
            as_mask(a, args.dtype, f"--inputs {f} (the attention_mask)")
            if k < len(roles) and roles[k] == "attention_mask"
            else as_batch(a, args.dtype, f"--inputs {f}")
            for k, (f, a) in enumerate(zip(files, raw))
        ]
        given = [tuple(int(d) for d in x.shape[1:]) for x in loaded]
        if shapes is not None and len(shapes) != len(files):
            raise BadInputError(
                f"{len(shapes)} --input-shape value(s) for {len(files)} --inputs file(s): give one of them, or one "
                "shape per file"
            )
        for f, x, shape, want in zip(files, loaded, given, shapes or given):
            if want != shape:
                raise BadInputError(
                    f"--input-shape {','.join(map(str, want))} contradicts --inputs {f} of shape {x.shape} (one "
                    f"sample: {','.join(map(str, shape))}); give one of them"
                )
        sizes = [len(x) for x in loaded]
        if len(set(sizes)) > 1:
            raise BadInputError(
                "--inputs: batches of different sizes "
                + ", ".join(f"{f} has {n}" for f, n in zip(files, sizes))
                + "; give every input the same N rows"
            )
        if args.batch is not None and args.batch != sizes[0]:
            where = f"--inputs {files[0]} of shape {loaded[0].shape}" if len(files) == 1 else "--inputs"
            raise BadInputError(f"--batch {args.batch} contradicts {where} ({sizes[0]} samples); give one of them")
        inputs = loaded[0] if len(loaded) == 1 else loaded
    count = len(files) if files is not None else len(shapes)
    layer = load_factory(args.scratch, "SCRATCH")
    if not isinstance(layer, Layer):
        raise BadInputError(
            f"SCRATCH {args.scratch!r} returned {a_or_an(type(layer).__name__)}, not a from_scratch.Layer"
        )
    option = "--inputs file" if files is not None else "--input-shape"
    if getattr(layer, "several_inputs", False) and count < 2:
        raise BadInputError(
            f"SCRATCH {args.scratch!r} is a layer of several inputs (several_inputs = True): give one {option} per "
            "input, e.g. --input-shape 7 7"
        )
    if not getattr(layer, "several_inputs", False) and count > 1:
        raise BadInputError(
            f"SCRATCH {args.scratch!r} takes one input (it does not declare several_inputs = True), but {count} "
            f"{option}s were given"
        )
    call_options = {name: True for name in ("use_causal_mask", "return_attention_scores") if getattr(args, name, False)}
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
            None if inputs is not None else shapes[0] if len(shapes) == 1 else list(shapes),
            batch=None if inputs is not None else args.batch,
            dtype=args.dtype,
            seed=args.seed,
            inputs=inputs,
            roles=args.roles,
            call_options=call_options or None,
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
