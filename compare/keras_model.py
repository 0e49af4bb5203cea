"""Your Keras model in NumPy: read a trained `keras.Sequential` (or a `.keras` file) into the scratch network.

    from compare.keras_model import compare_keras_model, from_keras
    scratch = from_keras("model.keras")            # from_scratch.Sequential with the model's own weights
    report = compare_keras_model("model.keras", data="digits")   # loss, outputs, every gradient, as `compare`

`from_keras` walks the model's layers and writes the `Architecture` (from_scratch.arch) they amount to, refusing
anything the scratch side does not implement exactly (a layer class, an option, an activation, a dtype) with a
`BadInputError` that names the layer, the option and what is supported. The scratch model is built from that
description and given the Keras weights, bit for bit (float32 weights into a float64 scratch model are exact, too).

`comparison_twin` is the Keras side of the comparison: the user's own layer objects (so the weights compared are the
trained ones, not a copy), with each `keras.layers.Dropout` swapped for `keras_impl.model.FixedMaskDropout`. The
harness gives both sides one dropout mask; Keras's Dropout draws its own from TensorFlow's Philox generator,
which NumPy cannot reproduce.

This module imports Keras and from_scratch, so it lives in `compare` (the only package that imports both).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import warnings
import zipfile
from typing import Any

import keras
import numpy as np

import keras_impl  # first: it pins TensorFlow's settings (oneDNN off, determinism) before TensorFlow loads
from compare.data import DATASETS, as_inputs, check_memory, load_batch, load_dataset, targets
from compare.harness import Report, Row, compare_models, synthetic_inputs
from compare.tolerances import ROUND_TRIP_TOL, max_abs_error, max_rel_error
from from_scratch.activations import ACTIVATIONS
from from_scratch.arch import Architecture, LayerSpec
from from_scratch.errors import BadInputError
from from_scratch.losses import LOSSES, Loss, get_loss
from from_scratch.model import DTYPES, Sequential
from keras_impl.activations import gelu_tanh
from keras_impl.losses import SumSquaredError
from keras_impl.model import FixedMaskDropout

Array = np.ndarray

#: What from_keras accepts, quoted in every refusal.
SUPPORTED = (
    "supported: InputLayer; Dense (use_bias=True; activation one of "
    + ", ".join(name for name in ACTIVATIONS if name != "step").replace("gelu_tanh", "gelu_tanh (approximate=True)")
    + " at Keras's default arguments; kernel/bias regularizer L1, L2 or L1L2; no constraint or activity "
    "regularizer); Dropout (any rate, noise_shape=None); BatchNormalization (the last axis, center=True, "
    "scale=True, any momentum and epsilon); Conv2D (channels_last, groups=1, either use_bias, an activation as "
    "Dense's, no regularizer or constraint); DepthwiseConv2D (the same, any depth_multiplier); ZeroPadding2D "
    "(channels_last); Activation (an activation as Dense's, or relu6); ReLU (any max_value, negative_slope, "
    "threshold); MaxPooling2D, AveragePooling2D (channels_last); GlobalAveragePooling2D "
    "(keepdims=False); Flatten; Reshape; SimpleRNN (an activation as Dense's), LSTM and GRU (tanh and sigmoid, "
    "GRU either reset_after) with use_bias=True, no dropout, regularizer, constraint, return_state, go_backwards, "
    "stateful or unroll, any return_sequences; Embedding (mask_zero=False, no regularizer or constraint); one dtype, "
    "float32 or float64, for every layer"
)

#: Keras's activation functions (as `Dense(activation="name")` stores them) -> the scratch registry name.
KERAS_ACTIVATION_FUNCTIONS: dict[Any, str] = {
    keras.activations.linear: "linear",
    keras.activations.relu: "relu",
    keras.activations.sigmoid: "sigmoid",
    keras.activations.tanh: "tanh",
    keras.activations.softmax: "softmax",
    keras.activations.leaky_relu: "leaky_relu",
    keras.activations.elu: "elu",
    keras.activations.gelu: "gelu",  # approximate=False, Keras's default
    keras.activations.softplus: "softplus",
    gelu_tanh: "gelu_tanh",  # keras_impl's own gelu(approximate=True)
}

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


# ----- loading ---------------------------------------------------------------------------------------------------
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


# ----- the architecture description --------------------------------------------------------------------------------
def _identical(table: dict[Any, str], obj: Any) -> str | None:
    """table[obj] by identity (activation and loss objects need not be hashable or comparable)."""
    return next((name for key, name in table.items() if key is obj), None)


def keras_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers without its InputLayer."""
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _where(layer: keras.layers.Layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _refuse(layer: keras.layers.Layer, problem: str) -> BadInputError:
    return BadInputError(f"{_where(layer)}: {problem}; {SUPPORTED}")


def _layer_dtype(layer: keras.layers.Layer) -> str:
    """The dtype a layer computes and keeps its weights in; mixed or quantized policies are refused."""
    policy = layer.dtype_policy
    compute, variable = str(policy.compute_dtype), str(policy.variable_dtype)
    if getattr(policy, "quantization_mode", None) or compute != variable or compute not in DTYPES:
        raise _refuse(
            layer,
            f"dtype policy {policy.name!r} (computes in {compute}, keeps weights in {variable}): "
            f"only {' or '.join(DTYPES)} throughout",
        )
    return compute


def _activation_name(layer: keras.layers.Layer) -> str:
    """The scratch registry name of a Dense layer's activation function (Keras's own functions only, at their
    default arguments, and gelu with either `approximate`)."""
    fn = layer.activation
    if fn is None:
        return "linear"
    name = _identical(KERAS_ACTIVATION_FUNCTIONS, fn)
    if name is not None:
        return name
    if isinstance(fn, functools.partial) and _identical(KERAS_ACTIVATION_FUNCTIONS, fn.func) and not fn.args:
        name = _identical(KERAS_ACTIVATION_FUNCTIONS, fn.func)
        keywords = dict(fn.keywords)
        if fn.func is keras.activations.gelu and keywords.pop("approximate", False) is True:
            name = "gelu_tanh"
        defaults = {k: p.default for k, p in inspect.signature(fn.func).parameters.items()}
        for key, value in keywords.items():
            if key not in defaults or value != defaults[key]:
                shown = f"; only Keras's default {key}={defaults[key]!r}" if key in defaults else ""
                raise _refuse(layer, f"activation {name} with {key}={value!r}{shown}")
        return name
    if isinstance(fn, keras.layers.LeakyReLU):
        raise _refuse(
            layer,
            f"activation LeakyReLU(negative_slope={fn.negative_slope!r}) layer; only the function "
            f"leaky_relu with Keras's default negative_slope=0.2 (activation='leaky_relu')",
        )
    label = getattr(fn, "__name__", None) or type(fn).__name__
    raise _refuse(layer, f"activation {label!r}")


def _regularizer_options(layer: keras.layers.Layer, which: str) -> dict[str, float]:
    """kernel_l1/kernel_l2 (or bias_...) from an L1, L2 or L1L2 regularizer's config (its exact values)."""
    reg = getattr(layer, f"{which}_regularizer")
    if reg is None:
        return {}
    if type(reg) not in (keras.regularizers.L1, keras.regularizers.L2, keras.regularizers.L1L2):
        raise _refuse(layer, f"{which}_regularizer {type(reg).__name__}")
    config = reg.get_config()
    return {f"{which}_{k}": float(config[k]) for k in ("l1", "l2") if float(config.get(k, 0.0))}


def _dense_spec(layer: keras.layers.Dense) -> LayerSpec:
    if not layer.use_bias:
        raise _refuse(layer, "use_bias=False (the scratch Dense always has a bias)")
    for option in ("kernel_constraint", "bias_constraint", "activity_regularizer"):
        if getattr(layer, option, None) is not None:
            raise _refuse(layer, f"{option}={type(getattr(layer, option)).__name__}")
    if getattr(layer, "lora_enabled", False):
        raise _refuse(layer, f"LoRA (lora_rank={layer.lora_rank})")
    if getattr(layer, "quantization_mode", None):
        raise _refuse(layer, f"quantization {layer.quantization_mode!r}")
    options = {**_regularizer_options(layer, "kernel"), **_regularizer_options(layer, "bias")}
    return LayerSpec("dense", int(layer.units), _activation_name(layer), options)


def _dropout_spec(layer: keras.layers.Dropout) -> LayerSpec:
    if layer.noise_shape is not None:
        raise _refuse(layer, f"noise_shape={tuple(layer.noise_shape)!r} (a mask shared across an axis)")
    return LayerSpec("dropout", options={"rate": float(layer.rate)})


def _batch_normalization_spec(layer: keras.layers.BatchNormalization) -> LayerSpec:
    config = layer.get_config()
    axis = config["axis"]
    try:
        last = len(layer.input.shape) - 1  # the features (channels) axis counted from the front
    except (AttributeError, ValueError):
        last = 1
    if axis not in (-1, last, [-1], [last]):  # the last axis (features, or an image's channels), either way
        raise _refuse(layer, f"axis={axis!r}")
    for option, value in (("center", True), ("scale", True), ("synchronized", False), ("renorm", False)):
        if config.get(option, value) != value:
            raise _refuse(layer, f"{option}={config[option]!r}")
    for option in (
        "beta_regularizer",
        "gamma_regularizer",
        "beta_constraint",
        "gamma_constraint",
        "activity_regularizer",
    ):
        if getattr(layer, option, None) is not None:
            raise _refuse(layer, f"{option}={type(getattr(layer, option)).__name__}")
    return LayerSpec(
        "batch_normalization", options={"momentum": float(config["momentum"]), "epsilon": float(config["epsilon"])}
    )


def _channels_last(layer: keras.layers.Layer) -> None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise _refuse(layer, f"data_format={layer.data_format!r}; only channels_last")


def _conv2d_spec(layer: keras.layers.Conv2D) -> LayerSpec:
    _channels_last(layer)
    if layer.groups != 1:
        raise _refuse(layer, f"groups={layer.groups}")
    for option in ("kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint"):
        if getattr(layer, option, None) is not None:
            raise _refuse(layer, f"{option}={type(getattr(layer, option)).__name__}")
    if getattr(layer, "activity_regularizer", None) is not None:
        raise _refuse(layer, "activity_regularizer")
    options = {
        "kernel_size": tuple(int(k) for k in layer.kernel_size),
        "padding": layer.padding,
        "strides": tuple(int(k) for k in layer.strides),
        "dilation_rate": tuple(int(k) for k in layer.dilation_rate),
        **({} if layer.use_bias else {"use_bias": False}),
    }
    return LayerSpec("conv2d", int(layer.filters), _activation_name(layer), options)


def _pooling_spec(kind: str) -> Any:
    def spec(layer: keras.layers.Layer) -> LayerSpec:
        _channels_last(layer)
        options = {
            "pool_size": tuple(int(k) for k in layer.pool_size),
            "padding": layer.padding,
            "strides": tuple(int(k) for k in layer.strides),
        }
        return LayerSpec(kind, None, "linear", options)

    return spec


def _global_average_pooling2d_spec(layer: keras.layers.GlobalAveragePooling2D) -> LayerSpec:
    _channels_last(layer)
    if layer.keepdims:
        raise _refuse(layer, "keepdims=True")
    return LayerSpec("global_average_pooling2d")


def _flatten_spec(layer: keras.layers.Flatten) -> LayerSpec:
    _channels_last(layer)
    return LayerSpec("flatten")


def _reshape_spec(layer: keras.layers.Reshape) -> LayerSpec:
    target = tuple(layer.target_shape)
    if any(d is None or d < 0 for d in target):
        raise _refuse(layer, f"target_shape={target!r} with an unknown (-1) dimension; give every dimension")
    return LayerSpec("reshape", None, "linear", {"target_shape": tuple(int(d) for d in target)})


def _no_extras(layer: keras.layers.Layer, options: tuple[str, ...]) -> dict[str, Any]:
    """The layer's config, with each of `options` (regularizers, constraints) refused unless None."""
    config = layer.get_config()
    for option in options:
        if config.get(option) is not None:
            raise _refuse(layer, f"{option}={config[option]!r:.60}")
    return config


def _recurrent_spec(kind: str) -> Any:
    def spec(layer: keras.layers.Layer) -> LayerSpec:
        config = _no_extras(
            layer,
            (
                "kernel_regularizer",
                "recurrent_regularizer",
                "bias_regularizer",
                "activity_regularizer",
                "kernel_constraint",
                "recurrent_constraint",
                "bias_constraint",
            ),
        )
        for option, value in (
            ("use_bias", True),
            ("dropout", 0.0),
            ("recurrent_dropout", 0.0),
            ("return_state", False),
            ("go_backwards", False),
            ("stateful", False),
            ("unroll", False),
        ):
            if config.get(option, value) != value:
                raise _refuse(layer, f"{option}={config[option]!r}")
        activation = _activation_name(layer)
        if kind != "simple_rnn":
            recurrent = layer.recurrent_activation
            if activation != "tanh" or recurrent is not keras.activations.sigmoid:
                shown = getattr(recurrent, "__name__", type(recurrent).__name__)
                raise _refuse(layer, f"activation {activation!r} with recurrent_activation {shown!r}")
            activation = "linear"  # the spec's activation field is SimpleRNN's only
        options: dict[str, Any] = {"return_sequences": bool(config["return_sequences"])}
        if kind == "gru":
            options["reset_after"] = bool(config["reset_after"])
        return LayerSpec(kind, int(config["units"]), activation, options)

    return spec


def _embedding_spec(layer: keras.layers.Embedding) -> LayerSpec:
    config = _no_extras(layer, ("embeddings_regularizer", "embeddings_constraint", "activity_regularizer"))
    if config.get("mask_zero"):
        raise _refuse(layer, "mask_zero=True (a mask for the layers after it)")
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        raise _refuse(layer, "LoRA or quantization")
    return LayerSpec("embedding", int(config["output_dim"]), "linear", {"input_dim": int(config["input_dim"])})


#: The Keras layer classes from_keras reads (exact classes: a subclass may compute something else).
SPECS = {
    keras.layers.Dense: _dense_spec,
    keras.layers.Dropout: _dropout_spec,
    keras.layers.BatchNormalization: _batch_normalization_spec,
    keras.layers.Conv2D: _conv2d_spec,
    keras.layers.MaxPooling2D: _pooling_spec("max_pooling2d"),
    keras.layers.AveragePooling2D: _pooling_spec("average_pooling2d"),
    keras.layers.GlobalAveragePooling2D: _global_average_pooling2d_spec,
    keras.layers.Flatten: _flatten_spec,
    keras.layers.Reshape: _reshape_spec,
    keras.layers.SimpleRNN: _recurrent_spec("simple_rnn"),
    keras.layers.LSTM: _recurrent_spec("lstm"),
    keras.layers.GRU: _recurrent_spec("gru"),
    keras.layers.Embedding: _embedding_spec,
}


def _input_shape(model: keras.Model) -> tuple[int, ...]:
    try:
        shape = tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        raise BadInputError(
            f"model {model.name!r} has no input shape yet: start it with keras.Input(shape=(D,)) or build it"
        ) from None
    if len(shape) < 2 or any(d is None for d in shape[1:]):
        raise BadInputError(
            f"model {model.name!r} takes inputs of shape {shape}; only a fixed shape (None, D), (None, T, F) or "
            "(None, H, W, C) is supported"
        )
    return tuple(int(d) for d in shape[1:])


def describe(model: keras.Model | str | os.PathLike) -> tuple[Architecture, str]:
    """(the Architecture that `model` amounts to, the dtype it computes in); unsupported parts are refused."""
    model = _as_model(model)
    if not isinstance(model, keras.Sequential):
        raise BadInputError(
            f"model {model.name!r} is a {type(model).__name__} model, not a keras.Sequential; "
            f"only a Sequential stack is supported ({SUPPORTED})"
        )
    layers = keras_layers(model)
    if not layers:
        raise BadInputError(f"model {model.name!r} has no layers")
    specs, dtypes = [], []
    for layer in layers:
        if type(layer) not in SPECS:
            raise _refuse(layer, "this layer class is not supported")
        if not layer.trainable:
            raise _refuse(
                layer,
                "trainable=False (a frozen layer: Keras computes no gradient for it, and a frozen "
                "BatchNormalization runs in inference mode)",
            )
        dtypes.append(_layer_dtype(layer))
        specs.append(SPECS[type(layer)](layer))
    for layer, dtype in zip(layers, dtypes):
        if dtype != dtypes[0]:
            raise _refuse(
                layer,
                f"dtype {dtype}, but layer {layers[0].name!r} is {dtypes[0]} (Keras casts the "
                f"activations to {dtype} there); create every layer with the same dtype=",
            )
    arch = Architecture.of_shape(_input_shape(model), tuple(specs))
    output = arch.shapes()[-1]  # every layer takes the shape reaching it
    if len(output) != 1:  # a Dense on a sequence acts on every time step: (T, units), not features
        raise BadInputError(
            f"model {model.name!r}: the output has shape {output}; end with features (D,): add a Flatten (or "
            "GlobalAveragePooling2D) and a Dense layer"
        )
    return arch, dtypes[0]


def _resolve_dtype(model_dtype: str, dtype: str | None) -> str:
    if dtype is None:
        return model_dtype
    if dtype not in DTYPES:
        raise BadInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if np.dtype(dtype).itemsize < np.dtype(model_dtype).itemsize:
        raise BadInputError(
            f"dtype {dtype} was asked for a {model_dtype} Keras model: its weights would be rounded; "
            f"compare it in {model_dtype}"
        )
    return dtype


def from_keras(model: keras.Model | str | os.PathLike, dtype: str | None = None) -> Sequential:
    """The scratch model of a Keras Sequential model (or of the `.keras` file at that path), with its weights.

    Supported: Dense (any activation of the scratch registry, at Keras's default arguments; use_bias=True;
    L1/L2/L1L2 kernel and bias regularizers), Dropout and BatchNormalization (axis -1, center and scale, any
    momentum and epsilon), the image layers, SimpleRNN, LSTM, GRU and Embedding (see SUPPORTED); InputLayer is
    skipped. Anything else raises BadInputError naming the layer, the option
    and what is supported.

    dtype: the model's own (float32 or float64) unless given; float64 for a float32 model is exact, float32 for a
    float64 model is refused (the weights would be rounded). The weights are copied in get_weights() order and
    layout (Dense kernel (in, out), bias; BatchNormalization gamma, beta, moving_mean, moving_variance), exactly;
    the scratch layers take the Keras layers' names, so the report's rows read as the model's variables.
    """
    model = _as_model(model)
    arch, model_dtype = describe(model)
    scratch = Sequential.from_architecture(arch, dtype=_resolve_dtype(model_dtype, dtype))
    scratch.set_weights(model.get_weights())
    for ours, theirs in zip(scratch.layers, keras_layers(model)):
        ours.name = theirs.name
    return scratch


def loss_of(model: keras.Model | str | os.PathLike) -> Loss | None:
    """The scratch loss matching the model's compiled loss (a string, a keras.losses function or Loss object, with
    its arguments: from_logits, label_smoothing, delta), or None when the model was not compiled with a loss.

    The arguments are read from the Loss object's own keyword arguments (the ones its call uses): for a loaded
    model that is what Keras computes after loading (Keras 3.15 does not save Huber's delta, for example).
    """
    model = _as_model(model)
    compiled = getattr(model, "loss", None)
    compile_config = getattr(model, "_compile_config", None)  # what compile() was given (kept for saving)
    weights = compile_config.config.get("loss_weights") if compile_config is not None else None
    if weights is not None:
        raise BadInputError(
            f"model {model.name!r} is compiled with loss_weights={weights!r}, which the comparison "
            "does not apply; recompile without them or pass --loss"
        )
    if compiled is None:
        return None
    label = compiled if isinstance(compiled, str) else getattr(compiled, "__name__", type(compiled).__name__)
    if isinstance(compiled, (list, tuple, dict)) or type(compiled).__name__ in ("ListWrapper", "DictWrapper"):
        raise BadInputError(
            f"model {model.name!r} is compiled with several losses {compiled!r}; one loss only ({SUPPORTED_LOSSES})"
        )
    obj = compiled
    if isinstance(compiled, str):
        try:
            obj = keras.losses.get(compiled)
        except (ValueError, TypeError):
            obj = None
    if _identical(KERAS_LOSS_CLASSES, type(obj)):
        name = _identical(KERAS_LOSS_CLASSES, type(obj))
        arguments = dict(getattr(obj, "_fn_kwargs", {}))
        reduction = "sum" if name == "sum_squared_error" else "sum_over_batch_size"
        if obj.reduction != reduction:
            raise BadInputError(
                f"model {model.name!r} is compiled with loss {type(obj).__name__} with "
                f"reduction={obj.reduction!r}; only Keras's default {reduction!r}"
            )
    elif _identical(KERAS_LOSS_FUNCTIONS, obj):
        name, arguments = _identical(KERAS_LOSS_FUNCTIONS, obj), {}
    else:
        raise BadInputError(
            f"model {model.name!r} is compiled with loss {label!r}, which has no scratch counterpart; "
            f"{SUPPORTED_LOSSES}"
        )
    takes, fixed = LOSS_ARGUMENTS[name]
    for key, value in arguments.items():
        if key not in takes and fixed.get(key, value) != value:
            raise BadInputError(
                f"model {model.name!r} is compiled with loss {name} with {key}={value!r}; only {key}={fixed[key]!r}"
            )
    return get_loss(name, **{k: v for k, v in arguments.items() if k in takes})


def comparison_twin(model: keras.Model | str | os.PathLike, dtype: str | None = None) -> keras.Sequential:
    """The Keras side of a comparison: the model's own layers, with each Dropout a FixedMaskDropout.

    Why not the loaded model itself: the harness gives both sides one dropout mask (`share_dropout_masks` sets
    `.mask` on each FixedMaskDropout), and keras.layers.Dropout draws its mask from TensorFlow's Philox generator,
    which NumPy cannot reproduce. FixedMaskDropout computes exactly what Keras's Dropout computes given a mask
    (tests/test_layers_parity.py::test_fixed_mask_dropout_equals_keras_dropout_given_its_mask shows it bit for
    bit), so swapping it in changes no arithmetic. Why not a rebuilt model: every other layer is *the same layer
    object* as in `model`, so the weights compared are the user's own trained variables, with the user's
    activation functions, regularizers and BatchNormalization settings, not a copy made from the description.
    (Consequently a training pass through the twin moves the model's BatchNormalization moving statistics;
    `compare_keras_model` puts them back.)

    With a dtype wider than the model's (float64 for a float32 model) the model's layers cannot be used (they
    compute in float32): the twin is then keras_impl.build_model of the same description in that dtype, with
    the model's weights upcast exactly.
    """
    model = _as_model(model)
    arch, model_dtype = describe(model)
    dtype = _resolve_dtype(model_dtype, dtype)
    if dtype != model_dtype:
        twin = keras_impl.build_model(arch, dtype)
        twin.set_weights([np.asarray(w, dtype=dtype) for w in model.get_weights()])
        return twin
    layers = [
        FixedMaskDropout(layer.rate, dtype=dtype, name=layer.name) if type(layer) is keras.layers.Dropout else layer
        for layer in keras_layers(model)
    ]
    return keras.Sequential([keras.Input(shape=arch.input_shape, dtype=dtype), *layers], name=f"{model.name}_twin")


# ----- the comparison --------------------------------------------------------------------------------------------
def keras_model_batch(
    arch: Architecture, loss: Loss, data: str, batch: int, seed: int, model_name: str = "the model"
) -> tuple[Array, Array]:
    """One batch for a model of `arch`: compare.data.load_batch, with targets of the loss's kind on synthetic
    data (as run_comparison makes them); a data set whose widths do not fit the model is refused, saying both."""
    if data != "synthetic" and data in DATASETS:
        x_all, y_all = load_dataset(data, arch.input_shape)
        if x_all.shape[1] != arch.input_dim or y_all.shape[1] != arch.output_dim:
            raise BadInputError(
                f"--data {data} has {x_all.shape[1]} features and {y_all.shape[1]} outputs, but the Keras model "
                f"{model_name!r} takes {arch.input_dim} inputs and gives {arch.output_dim} outputs"
            )
    x, y = load_batch(data, arch.input_dim, arch.output_dim, batch, seed, arch.input_shape)
    if data == "synthetic" and loss.target_kind != "onehot":
        y = targets(loss.target_kind, len(x), arch.output_dim, np.random.default_rng(seed + 1))
    elif loss.target_kind == "labels":
        y = y.argmax(axis=1).astype(np.float64)  # one-hot data set labels -> class indices
    x = as_inputs(x, arch.input_shape)
    return (synthetic_inputs(arch, x, seed) if data == "synthetic" else x), y


def choose_loss(model: keras.Model, loss: str | Loss | None) -> Loss:
    """`loss` if given, else the model's compiled loss; a model with neither is refused."""
    if loss is not None:
        return get_loss(loss)
    compiled = loss_of(model)
    if compiled is None:
        raise BadInputError(
            f"model {model.name!r} has no compiled loss: give one (--loss NAME); known: {', '.join(LOSSES)}"
        )
    return compiled


def _weights_row(name: str, original: list[Array], copied: list[Array]) -> Row:
    """The model's weights against the scratch model's copy (in the wider dtype): must be identical."""
    pairs = [(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in zip(original, copied)]
    worst = max((max_abs_error(a, b) for a, b in pairs), default=0.0)
    if len(original) != len(copied) or any(a.shape != b.shape for a, b in pairs):
        worst = float("inf")
    rel = max((max_rel_error(a, b) for a, b in pairs), default=0.0)
    return Row(name, (sum(np.size(w) for w in original),), worst, rel, worst, "exact", ROUND_TRIP_TOL)


def compare_keras_model(
    path_or_model: keras.Model | str | os.PathLike,
    data: str = "synthetic",
    batch: int = 32,
    seed: int = 0,
    loss: str | Loss | None = None,
    gradcheck_samples: int = 8,
    dtype: str | None = None,
) -> Report:
    """Compare a Keras model with its scratch model on one batch: the table of `backprop-parity compare`.

    The scratch side is `from_keras` (the model's weights, exactly), the Keras side `comparison_twin` (the model's
    own layers); the loss is `loss` or the model's compiled loss. Besides the harness's rows the report starts with
    "weights from the Keras model": the model's weights against the scratch copy, which must be identical (the
    harness copies scratch weights into Keras, so only this row would notice a wrong copy). The model's weights
    (BatchNormalization moving statistics move in a training pass) are restored afterwards.
    """
    model = _as_model(path_or_model)
    scratch = from_keras(model, dtype)
    twin = comparison_twin(model, dtype)
    loss = choose_loss(model, loss)
    arch = scratch.architecture
    check_memory(f"a batch of {batch}", batch, arch.footprint())
    x, y = keras_model_batch(arch, loss, data, batch, seed, model.name)
    source = os.fspath(path_or_model) if isinstance(path_or_model, (str, os.PathLike)) else f"<{model.name}>"
    config = {
        "keras_model": source,
        "arch": str(arch),
        "batch": int(x.shape[0]),
        "dtype": scratch.dtype.name,
        "seed": seed,
        "data": data,
        "loss": repr(loss),
    }
    original = model.get_weights()
    copied = _weights_row("weights from the Keras model", original, scratch.get_weights())
    try:
        report = compare_models(
            scratch, twin, x, y, loss, gradcheck_samples=gradcheck_samples, seed=seed, config=config
        )
    finally:
        model.set_weights(original)
    report.rows.insert(0, copied)
    return report


# The readers of the layers keras.applications' networks add (compare/keras_application_specs.py), written in
# terms of the helpers above.
from compare.keras_application_specs import APPLICATION_SPECS  # noqa: E402

SPECS.update(APPLICATION_SPECS)
