"""Loading a saved Keras model and reading the loss it was compiled with.

`load` turns every way `keras.saving.load_model` can fail into one BadInputError line naming the path and the
reason. `loss_of` reads the compiled loss into the scratch loss that computes it (with its arguments): one loss for
a model of one output, a `from_scratch.losses.OutputLosses` (one loss per output, and the compiled `loss_weights`)
for a model of several, as Keras's CompileLoss sums them: L = sum_o w_o L_o.
"""

from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from typing import Any

import keras
from keras.src.losses.losses import LossFunctionWrapper

from compare.keras_specs import SUPPORTED, _identical
from from_scratch.errors import BadInputError
from from_scratch.losses import LOSSES, Loss, OutputLosses, get_loss
from keras_impl.losses import SumSquaredError

#: Keras loss classes and functions -> the scratch loss name. Only the arguments in LOSS_ARGUMENTS may differ
#: from Keras's defaults.
KERAS_LOSS_CLASSES: dict[type, str] = {
    keras.losses.CategoricalCrossentropy: "categorical_crossentropy",
    keras.losses.SparseCategoricalCrossentropy: "sparse_categorical_crossentropy",
    keras.losses.BinaryCrossentropy: "binary_crossentropy",
    keras.losses.MeanSquaredError: "mean_squared_error",
    keras.losses.MeanAbsoluteError: "mean_absolute_error",
    keras.losses.Huber: "huber",
    SumSquaredError: "sum_squared_error",
}
KERAS_LOSS_FUNCTIONS: dict[Any, str] = {
    keras.losses.categorical_crossentropy: "categorical_crossentropy",
    keras.losses.sparse_categorical_crossentropy: "sparse_categorical_crossentropy",
    keras.losses.binary_crossentropy: "binary_crossentropy",
    keras.losses.mean_squared_error: "mean_squared_error",
    keras.losses.mean_absolute_error: "mean_absolute_error",
    keras.losses.huber: "huber",
}
#: Per loss: the Keras arguments the scratch loss takes (same names), and the ones that must keep a fixed value.
LOSS_ARGUMENTS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "categorical_crossentropy": (("from_logits", "label_smoothing"), {"axis": -1}),
    "sparse_categorical_crossentropy": (("from_logits",), {"axis": -1, "ignore_class": None}),
    "binary_crossentropy": (("from_logits", "label_smoothing"), {"axis": -1}),
    "mean_squared_error": ((), {}),
    "mean_absolute_error": ((), {}),
    "huber": (("delta",), {}),
    "sum_squared_error": ((), {}),
}
SUPPORTED_LOSSES = "supported: " + ", ".join(LOSSES) + " (as a string, a keras.losses function or a Loss object)"


def load(path: str | os.PathLike) -> keras.Model:
    """`keras.saving.load_model(path, compile=True)`, with every way it can fail as one BadInputError line naming
    the path and the reason (missing, a directory, not a .keras zip archive, unreadable, not loadable)."""
    path = os.fspath(path)
    where = f"Keras model {path!r}"
    if not path.endswith(".keras"):
        raise BadInputError(f"{where} is not a .keras file (save it with model.save('name.keras'))")
    if not os.path.exists(path):
        raise BadInputError(f"{where}: no such file")
    if os.path.isdir(path):
        raise BadInputError(f"{where} is a directory, not a .keras file")
    if not os.access(path, os.R_OK):
        raise BadInputError(f"{where} cannot be read (permission denied)")
    if not zipfile.is_zipfile(path):
        raise BadInputError(f"{where} is not a .keras file: a .keras file is a zip archive, this one is not")
    try:
        with warnings.catch_warnings():  # e.g. "Skipping variable loading for optimizer": not ours to report
            warnings.simplefilter("ignore")
            return keras.saving.load_model(path, compile=True)
    except Exception as exc:  # noqa: BLE001 (Keras raises TypeError, ValueError, KeyError, OSError ...)
        custom = _custom_layers(path)
        if custom:
            raise BadInputError(
                f"{where} cannot be loaded by Keras: layer {custom[0]} is a custom layer class "
                f"(not Keras's own); {SUPPORTED}"
            ) from None
        reason = _innermost_reason(exc)
        raise BadInputError(f"{where} cannot be loaded by Keras: {reason}") from None


def _innermost_reason(exc: Exception) -> str:
    """The first line of Keras's loading error; when a layer could not be rebuilt from its config, Keras nests the
    configs and the layer's own error ("Error when deserializing class 'DepthwiseConv2D' using config={'name': 'dw',
    ...}. Exception encountered: Invalid value for argument `depth_multiplier` ..."): then that layer and its
    error."""
    text = str(exc).strip()
    first = (text.splitlines() or [""])[0] or type(exc).__name__
    if "Exception encountered: " not in text:
        return f"{type(exc).__name__}: {first}"
    head, _, error = text.rpartition("Exception encountered: ")
    layer = re.search(r"deserializing class '(\w+)' using config=\{'name': '([^']*)'", head.rpartition("Exception")[2])
    where = f"layer {layer.group(2)!r} ({layer.group(1)}): " if layer else ""
    return where + ((error.splitlines() or [""])[0] or first)


def _custom_layers(path: str) -> list[str]:
    """ "'name' (Class)" for each layer of a .keras archive's config.json that is not one of Keras's own classes."""
    try:
        with zipfile.ZipFile(path) as archive:
            layers = json.loads(archive.read("config.json"))["config"]["layers"]
        return [
            f"{layer['config'].get('name')!r} ({layer['class_name']})"
            for layer in layers
            if not str(layer.get("module") or "").startswith("keras")
        ]
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile):
        return []


def _as_model(model: keras.Model | str | os.PathLike) -> keras.Model:
    if isinstance(model, (str, os.PathLike)):
        return load(model)
    if not isinstance(model, keras.Model):
        raise BadInputError(f"expected a keras.Sequential or the path of a .keras file, got {type(model).__name__}")
    return model


# ----- the compiled loss ------------------------------------------------------------------------------------------
def output_names(model: keras.Model) -> list[str]:
    """The names of the model's outputs, as `compile(loss={name: ...})` keys them (Keras's output_names)."""
    names = getattr(model, "output_names", None)
    if names:
        return list(names)
    return [t._keras_history.operation.name for t in getattr(model, "outputs", None) or []] or [model.name]


def _per_output(model: keras.Model, value: Any, what: str) -> list[Any]:
    """A compiled per-output value (a list in the outputs' order, or a dict keyed by output name) as a list, one
    entry per output; a single value is every output's."""
    names = output_names(model)
    if isinstance(value, dict) or type(value).__name__ == "DictWrapper":
        value = dict(value)
        unknown = sorted(set(value) - set(names))
        missing = [name for name in names if name not in value]
        if unknown or missing:
            raise BadInputError(
                f"model {model.name!r} is compiled with {what} for "
                + (f"{unknown[0]!r}, which is not one of its outputs" if unknown else f"no output {missing[0]!r}")
                + f" (its outputs: {', '.join(names)})"
            )
        return [value[name] for name in names]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListWrapper":
        value = list(value)
        if len(value) != len(names):
            raise BadInputError(
                f"model {model.name!r} is compiled with {len(value)} {what} for {len(names)} outputs; "
                "give one per output"
            )
        return value
    return [value] * len(names)


def _scratch_loss(model: keras.Model, compiled: Any, where: str) -> Loss:
    """The scratch loss of one compiled Keras loss (a string, a keras.losses function, a Loss object or the
    LossFunctionWrapper Keras wraps a function in), with its arguments."""
    label = compiled if isinstance(compiled, str) else getattr(compiled, "__name__", type(compiled).__name__)
    obj = compiled
    if isinstance(compiled, str):
        try:
            obj = keras.losses.get(compiled)
        except (ValueError, TypeError):
            obj = None
    wrapped = getattr(obj, "fn", None) if isinstance(obj, LossFunctionWrapper) else None
    if _identical(KERAS_LOSS_CLASSES, type(obj)) or _identical(KERAS_LOSS_FUNCTIONS, wrapped):
        name = _identical(KERAS_LOSS_CLASSES, type(obj)) or _identical(KERAS_LOSS_FUNCTIONS, wrapped)
        arguments = dict(getattr(obj, "_fn_kwargs", {}))
        reduction = "sum" if name == "sum_squared_error" else "sum_over_batch_size"
        if obj.reduction != reduction:
            raise BadInputError(
                f"{where} is compiled with loss {type(obj).__name__} with "
                f"reduction={obj.reduction!r}; only Keras's default {reduction!r}"
            )
    elif _identical(KERAS_LOSS_FUNCTIONS, obj):
        name, arguments = _identical(KERAS_LOSS_FUNCTIONS, obj), {}
    else:
        raise BadInputError(
            f"{where} is compiled with loss {label!r}, which has no scratch counterpart; {SUPPORTED_LOSSES}"
        )
    takes, fixed = LOSS_ARGUMENTS[name]
    for key, value in arguments.items():
        if key not in takes and fixed.get(key, value) != value:
            raise BadInputError(f"{where} is compiled with loss {name} with {key}={value!r}; only {key}={fixed[key]!r}")
    return get_loss(name, **{k: v for k, v in arguments.items() if k in takes})


def loss_of(model: keras.Model | str | os.PathLike) -> Loss | OutputLosses | None:
    """The scratch loss matching the model's compiled loss (a string, a keras.losses function or Loss object, with
    its arguments: from_logits, label_smoothing, delta), or None when the model was not compiled with a loss.

    A model of several outputs (or one compiled with `loss_weights`) gives an OutputLosses: per output its loss
    (`compile(loss=[...])` in the outputs' order, `loss={output name: ...}`, or one loss for every output) and the
    compiled loss_weights (a list or a dict, likewise), L = sum_o w_o L_o as Keras's CompileLoss sums them.

    The arguments are read from the Loss object's own keyword arguments (the ones its call uses): for a loaded
    model that is what Keras computes after loading (Keras 3.15 does not save Huber's delta, for example).
    """
    model = _as_model(model)
    compiled = getattr(model, "loss", None)
    compile_config = getattr(model, "_compile_config", None)  # what compile() was given (kept for saving)
    weights = compile_config.config.get("loss_weights") if compile_config is not None else None
    if compiled is None:
        return None
    names = output_names(model)
    several = isinstance(compiled, (list, tuple, dict)) or type(compiled).__name__ in ("ListWrapper", "DictWrapper")
    if len(names) <= 1 and several and len(compiled) != 1:
        raise BadInputError(
            f"model {model.name!r} is compiled with {len(compiled)} losses {compiled!r} for its one output; "
            f"one loss only ({SUPPORTED_LOSSES})"
        )
    losses = _per_output(model, compiled, "losses")
    labels = [f"model {model.name!r}" + (f" (output {name!r})" if len(names) > 1 else "") for name in names]
    scratch = [_scratch_loss(model, item, where) for item, where in zip(losses, labels)]
    if weights is None and len(scratch) == 1:
        return scratch[0]
    if weights is not None:
        weights = _per_output(model, weights, "loss_weights")
        for name, w in zip(names, weights):
            if isinstance(w, bool) or not isinstance(w, (int, float)):
                raise BadInputError(f"model {model.name!r} is compiled with loss_weights {w!r} for {name!r}: a number")
        weights = [float(w) for w in weights]
    return OutputLosses(scratch, weights)


def choose_loss(model: keras.Model, loss: str | Loss | None) -> Loss | OutputLosses:
    """`loss` if given (for every output of a model of several, without loss weights: it replaces the compiled
    objective), else the model's compiled loss; a model with neither is refused."""
    if loss is not None:
        loss = get_loss(loss)
        count = len(output_names(model))
        return loss if count <= 1 or isinstance(loss, OutputLosses) else OutputLosses([loss] * count)
    compiled = loss_of(model)
    if compiled is None:
        raise BadInputError(
            f"model {model.name!r} has no compiled loss: give one (--loss NAME); known: {', '.join(LOSSES)}"
        )
    return compiled
