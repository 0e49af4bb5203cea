"""`backprop-parity compare --keras-model PATH.keras` and `backprop-parity train --keras-model PATH.keras`.

With --keras-model the network is the saved model: the flags that describe a network to build (--arch,
--activation, --dropout, ...) are refused when given explicitly; --loss and --dtype, when given, replace the
model's compiled loss and its own dtype. Exit codes as the other commands: 0 pass, 1 differs, 2 bad input.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from compare.parser import explicit_options  # noqa: F401 (re-exported: importable from here as before)
from from_scratch.errors import BadInputError

#: Per command, the flags (argparse dests) that describe a network to build: meaningless with --keras-model.
CONFLICTS = {
    "compare": ("arch", "activation", "output_activation", "dropout", "batchnorm", "l1", "l2", "all"),
    "train": ("arch",),
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def refuse_conflicts(command: str, given: set[str]) -> None:
    """BadInputError naming the first flag that describes a network, given together with --keras-model."""
    for dest in CONFLICTS[command]:
        if dest in given:
            raise BadInputError(
                f"{_flag(dest)} cannot be combined with --keras-model: the network is the saved "
                f"model's; drop {_flag(dest)}"
            )


def run_keras_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Dispatch `compare` / `train` with --keras-model."""
    given = explicit_options(argv)
    refuse_conflicts(args.command, given)
    return run_keras_compare(args, given) if args.command == "compare" else run_keras_train(args, given)


def run_keras_compare(args: argparse.Namespace, given: set[str]) -> int:
    """`compare --keras-model`: compare_keras_model on one batch, printed as `compare` prints."""
    from compare.commands import loss_from_args
    from compare.keras_model import compare_keras_model
    from compare.parser import EXIT_FAIL, EXIT_PASS
    from compare.report import render, to_json

    loss_flags = [_flag(d) for d in ("from_logits", "label_smoothing") if d in given]
    if loss_flags and "loss" not in given:
        raise BadInputError(
            f"{loss_flags[0]} configures --loss: with --keras-model give --loss too (without it the "
            "model's compiled loss is used as it was saved)"
        )
    report = compare_keras_model(
        args.keras_model,
        data=args.data,
        batch=args.batch,
        seed=args.seed,
        loss=loss_from_args(args) if "loss" in given else None,
        gradcheck_samples=args.gradcheck,
        dtype=args.dtype if "dtype" in given else None,
    )
    print(to_json(report) if args.json else render(report))
    return EXIT_PASS if report.passed else EXIT_FAIL


def run_keras_train(args: argparse.Namespace, given: set[str]) -> int:
    """`train --keras-model`: both sides trained in lockstep from the saved model's weights (run_training with
    initial_weights), printed as `train` prints. A functional model of one input and one output trains as a chain
    does; one of several inputs or outputs is refused (run_training takes one input array)."""
    from compare.commands import train_and_print
    from compare.data import as_inputs, load_dataset
    from compare.keras_model import choose_loss, describe, from_keras, load
    from from_scratch.losses import get_loss

    model = load(args.keras_model)
    arch, _ = describe(model)
    graph = arch.graph()
    if len(graph.inputs) > 1 or len(graph.outputs) > 1:
        raise BadInputError(
            f"train --keras-model: the model {model.name!r} has {len(graph.inputs)} input(s) and "
            f"{len(graph.outputs)} output(s); training in lockstep takes a model of one input and one output for now "
            "(compare --keras-model compares this one on a batch)"
        )
    scratch = from_keras(model, args.dtype if "dtype" in given else None)
    loss = get_loss(args.loss) if "loss" in given else choose_loss(model, None)
    x, y = load_dataset(args.data, arch.input_shape)  # a layout that would rearrange a sample is refused
    if x.shape[1] != arch.input_dim or y.shape[1] != arch.output_dim:
        raise BadInputError(
            f"--data {args.data} has {x.shape[1]} features and {y.shape[1]} outputs, but the Keras "
            f"model {model.name!r} takes {arch.input_dim} inputs and gives {arch.output_dim} outputs"
        )
    if loss.target_kind == "labels":
        y = y.argmax(axis=1).astype(x.dtype)  # one-hot data set labels -> class indices
    return train_and_print(
        args,
        arch,
        as_inputs(x, arch.input_shape),  # an image or sequence model takes its samples in their shape
        y,
        loss,
        scratch.dtype.name,
        initial_weights=scratch.get_weights(),
        header={"keras_model": args.keras_model},
    )
