"""The architecture description: the single source of truth from which both sides are built.

An `Architecture` is plain data (no NumPy, no Keras): the input shape and a tuple of `LayerSpec`s.
`from_scratch.model.Sequential.from_architecture` and `keras_impl.model.build_model` each build their network
from the same object, so the two sides cannot drift apart in shape, activation or option.

The string form used on the command line is a dash-separated list: the input, then one token per layer.
- The input is a width (`64`) or an image shape height x width x channels (`8x8x1`, channels last).
- A plain number is a Dense layer (`32`); `32:tanh` names its activation; `32:relu:l2=0.01` adds Keras L1L2
  regularisers (`l1=`, `l2=` on the kernel, `bias_l1=`, `bias_l2=` on the bias). Hidden Dense layers default
  to `hidden_activation` and the last one to `output_activation`.
- `dropout0.5` is a Dropout layer with rate 0.5; `bn` a BatchNormalization layer, `ln` a LayerNormalization layer
  (Keras defaults: over the last axis, epsilon 1e-3; on a sequence, per time step).
- `conv8k3` is Conv2D(8 filters, 3x3 kernel) with the hidden activation; `conv8k3x2` a 3x2 kernel. Options after
  ':' as for Dense: an activation, `same` or `valid` (padding, default valid), `s=2` or `s=2x1` (strides),
  `d=2` (dilation_rate): `conv16k3:tanh:same:s=2`.
- `pool2` is MaxPooling2D(2) (strides default to the pool size), `avgpool2` AveragePooling2D(2); options `s=`,
  `same`: `pool3:s=1` overlaps its windows. `gap` is GlobalAveragePooling2D, `flatten` Flatten (Keras's (h, w, c)
  order), `reshape4x4x4` Reshape((4, 4, 4)).
- `pad1` is ZeroPadding2D(1), `pad1x2` ZeroPadding2D((1, 2)) (1 row above and below, 2 columns left and right),
  `pad0x1x0x1` ZeroPadding2D(((0, 1), (0, 1))) (top x bottom x left x right).
- `dw3` is DepthwiseConv2D(3), `dw3x2` a 3x2 kernel; options as Conv2D's (an activation, default linear as Keras's;
  `same`/`valid`, `s=`, `d=`) and `m=2` (depth_multiplier): `dw3:same:s=2`, `dw3:relu:m=2`. `nobias` after a conv or
  dw token drops its bias (use_bias=False): `conv8k1:linear:nobias`.
- `act:tanh` is an Activation layer (any activation of the registry, as Dense's: `act:relu`, `act:softmax`).
  `relu` is keras.layers.ReLU(), `relu6` ReLU(max_value=6); options `max=`, `slope=` (negative_slope) and `t=`
  (threshold): `relu:max=1.5:slope=0.1:t=0.5`.
- A sequence input is TxF (`8x8`: 8 time steps of 8 features; an image needs its channels, 8x8x1). `rnn16` is
  SimpleRNN(16) (activation tanh, Keras's default; `rnn16:relu` another), `lstm16` LSTM(16), `gru16` GRU(16)
  (Keras's default reset_after=True; `gru16:reset_before` the original GRU, reset_after=False). Each returns its
  last state (N, u); `:seq` returns every step's (return_sequences=True), (N, T, u), for another recurrent layer,
  `flatten`, `ln`, or a Dense layer, which acts on every time step as Keras's Dense does (the same kernel and bias
  at each step: (N, T, u) -> (N, T, units)). The network's output must still be features (N, D): end with
  `flatten` (or a recurrent layer without `:seq`) and a Dense layer. A Dense on an image is refused (put `flatten`
  or `gap` before it).
- Each option is given at most once per token: a second value for the same option (`conv2k3:same:valid`,
  `pool2:s=1:s=2`, `32:tanh:relu`, `gru4:seq:seq`) is refused, naming the token and both values, whether it
  contradicts the first or repeats it; no later value silently wins.
- An index-sequence input is a plain length T followed by `embedVxD`: Embedding(input_dim=V, output_dim=D), which
  maps T integers in [0, V) to (T, D), e.g. `12-embed50x8-lstm16-2`.
- On a sequence (T, D): `pos` is PositionEmbedding, a learned (T, D) table added to every sample (its length T read
  from the sequence reaching it; `pos8` states it, and is refused on sequences of another length); `gap1d` is
  GlobalAveragePooling1D, the mean over the steps, (T, D) -> (D,): `8x16-pos-ln-32-gap1d-10`,
  `12-embed50x16-pos-gap1d-10`.
- A merge of branches makes the network a graph: `add(32-32 | id)` feeds the tensor before it to each branch
  (a chain of tokens, or `id`, the identity), and adds what the branches give; the chain goes on from the sum.
  Merges: `add`, `sub` (two branches, the first minus the second), `mul`, `avg`, `max`, `min` (element-wise, one
  shape), `cat` (Concatenate; `cat:axis=1`, Keras's axis counted with the batch axis, default -1) and `dot` (two
  branches; `dot:axes=1`, `dot:axes=2x2`). A branch may hold merges itself. Spaces around '(', '|', ')' are allowed.
  Such a string is read into a `from_scratch.graph_arch.GraphArchitecture` (from_scratch/branches.py), its layers
  named as a fresh Keras session names them when the network is written in reading order (a merge after its
  branches: the inner `add` of a nesting is `add`, the outer `add_1`) and listed in Keras's order; the last Dense in
  reading order takes the output activation. Shapes that do not agree at a merge are refused, naming the merge and
  both shapes.

    "64-32-16-10"  ==  "64-32:relu-16:relu-10:softmax"
    "64-32-bn-dropout0.2-10"
    "8x8x1-conv8k3-pool2-flatten-10"  ==  "8x8x1-conv8k3x3:relu:valid-pool2x2:valid-flatten-10:softmax"
    "8x8x3-pad0x1x0x1-conv8k3:linear:s=2:nobias-bn-relu6-dw3:same:nobias-act:relu-gap-10"
    "8x8-lstm16-10"  ==  "8x8-lstm16-10:softmax";   "8x8-rnn8:tanh:seq-gru6:reset_before-10"
    "8x8-lstm16:seq-12-flatten-10" (a Dense per time step);   "8x8-gru8:seq-ln-lstm8-10"
    "64-32-add(32-32 | id)-10"  ==  "64-32:relu-add(32:relu-32:relu | id)-10:softmax"   (a residual block)
    "8x8x1-conv8k3:same-add(conv8k3:same-bn-conv8k3:same | conv8k1)-flatten-10"   (a 1x1 projection on the skip)
    "64-cat(32 | 16-16)-10" (two branches concatenated);   "64-32-add(32-add(32 | id)-32 | id)-10" (nested)

This module holds `LayerSpec`, `Architecture` and its parser; the token readers are in from_scratch/arch_reading.py,
the tokens of keras.applications' layers in from_scratch/arch_tokens.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from from_scratch.errors import BadInputError

if TYPE_CHECKING:
    from from_scratch.graph_arch import GraphArchitecture


@dataclass(frozen=True)
class LayerSpec:
    """One layer: its registry kind ("dense"), its width (Dense units) and its activation."""

    kind: str = "dense"
    units: int | None = None
    activation: str = "linear"
    options: dict[str, Any] = field(default_factory=dict, compare=True, hash=False)

    def token(self) -> str:
        """The layer's token in the string form."""
        if self.kind == "dropout":
            return f"dropout{float(self.options['rate'])!r}"  # repr: the exact float, read back as the same float
        if self.kind == "batch_normalization":
            return "bn"
        if self.kind == "layer_normalization":
            return "ln"
        if self.kind in _APPLICATION_TOKENS:
            return _APPLICATION_TOKENS[self.kind](self)
        if self.kind in _SPATIAL_PREFIX:
            o = self.options
            size = o["kernel_size"] if self.kind == "conv2d" else o["pool_size"]
            head = (f"conv{self.units}k" if self.kind == "conv2d" else _SPATIAL_PREFIX[self.kind]) + _dims(size)
            out = [head, self.activation] if self.kind == "conv2d" else [head]
            if o["padding"] != "valid":
                out.append(o["padding"])
            if o["strides"] != ((1, 1) if self.kind == "conv2d" else size):  # the defaults are left out
                out.append(f"s={_dims(o['strides'])}")
            if o.get("dilation_rate", (1, 1)) != (1, 1):
                out.append(f"d={_dims(o['dilation_rate'])}")
            if o.get("use_bias", True) is False:
                out.append("nobias")
            return ":".join(out)
        if self.kind in _RECURRENT_PREFIX:
            out = [f"{_RECURRENT_PREFIX[self.kind]}{self.units}"]
            if self.kind == "simple_rnn" and self.activation != "tanh":
                out.append(self.activation)
            if self.options.get("return_sequences", False):
                out.append("seq")
            if self.kind == "gru" and not self.options.get("reset_after", True):
                out.append("reset_before")
            return ":".join(out)
        if self.kind == "embedding":
            return f"embed{self.options['input_dim']}x{self.units}"
        if self.kind in _PLAIN_TOKENS:
            return _PLAIN_TOKENS[self.kind]
        if self.kind == "reshape":
            return "reshape" + _dims(self.options["target_shape"])
        options = "".join(f":{_SHORT[key]}={float(value)!r}" for key, value in self.options.items())
        return f"{self.units}:{self.activation}{options}"

    def output_shape(self, input_shape: tuple[int, ...], position: int = 0) -> tuple[int, ...]:
        """The shape (without the batch axis) this layer gives for inputs of `input_shape`; a layer that cannot
        take that shape is refused, naming the layer's position, kind and both shapes."""
        where = f"layer {position} ({self.kind})" if position else f"layer {self.kind!r}"
        if self.kind in ("dense",):
            if len(input_shape) not in (1, 2):  # features (D,), or a sequence (T, D): a Dense per time step
                raise BadInputError(
                    f"{where} takes inputs of shape (D,), got {input_shape}: put 'flatten' or 'gap' before it (a "
                    "Dense also takes a sequence (T, D), acting on every time step)"
                )
            return (*input_shape[:-1], self.units)
        if self.kind in _RECURRENT_PREFIX:
            if len(input_shape) != 2:
                raise BadInputError(
                    f"{where} takes sequences of shape (timesteps, features), got {input_shape}: give the input as "
                    "TxF (e.g. 8x8), or put 'embedVxD' or a recurrent layer with ':seq' before it"
                )
            return (input_shape[0], self.units) if self.options.get("return_sequences") else (self.units,)
        if self.kind == "embedding":
            if len(input_shape) != 1:
                raise BadInputError(
                    f"{where} takes index sequences of shape (timesteps,), got {input_shape}: give the input as "
                    "a length T (e.g. 12-embed50x8-...)"
                )
            return (input_shape[0], self.units)
        if self.kind in _SPATIAL_PREFIX or self.kind in _IMAGE_ONLY:
            if len(input_shape) != 3:
                raise BadInputError(
                    f"{where} takes images of shape (height, width, channels), got {input_shape}: give the input "
                    "as HxWxC (e.g. 8x8x1) or reshape first"
                )
            if self.kind == "global_average_pooling2d":
                return (input_shape[2],)
            o = self.options
            if self.kind == "zero_padding2d":
                (top, bottom), (left, right) = o["padding"]
                return (top + input_shape[0] + bottom, left + input_shape[1] + right, input_shape[2])
            size = o["pool_size"] if "pool_size" in o else o["kernel_size"]
            dilation = o.get("dilation_rate", (1, 1))
            out = []
            for axis in range(2):
                n, k, st, d = input_shape[axis], size[axis], o["strides"][axis], dilation[axis]
                m = window_geometry(n, k, st, d, o["padding"])[0]
                if m <= 0:
                    raise BadInputError(
                        f"{where}: a {'x'.join(map(str, size))} window (dilation {_dims(dilation)}) does not fit "
                        f"in the input {input_shape} with padding 'valid'; use 'same' or a smaller window"
                    )
                out.append(m)
            channels = {"conv2d": self.units, "depthwise_conv2d": input_shape[2] * o.get("depth_multiplier", 1)}
            return (out[0], out[1], channels.get(self.kind, input_shape[2]))
        if self.kind in _SEQUENCE_ONLY:
            if len(input_shape) != 2:
                raise BadInputError(
                    f"{where} takes sequences of shape (timesteps, features), got {input_shape}: give the input as "
                    "TxF (e.g. 8x16), or put 'embedVxD' or a recurrent layer with ':seq' before it"
                )
            if self.kind == "global_average_pooling1d":
                return (input_shape[1],)
            if self.kind == "multi_head_attention":  # self-attention: (T, output_shape or D)
                return (input_shape[0], *(self.options.get("output_shape") or (input_shape[1],)))
            length = self.options.get("sequence_length")
            if length is not None and length != input_shape[0]:
                raise BadInputError(
                    f"{where} has sequence_length {length} but is called on sequences of {input_shape[0]} steps "
                    f"(shape {input_shape}): write 'pos' to take the length from the input"
                )
            return tuple(input_shape)
        if self.kind == "flatten":
            return (math.prod(input_shape),)
        if self.kind == "reshape":
            target = tuple(self.options["target_shape"])
            if math.prod(target) != math.prod(input_shape):
                raise BadInputError(
                    f"{where}: cannot reshape {input_shape} ({math.prod(input_shape)} values) to {target} "
                    f"({math.prod(target)} values)"
                )
            return target
        return tuple(input_shape)  # dropout, batch normalization and other shape-keeping layers

    def weight_count(self, input_shape: tuple[int, ...]) -> int:
        """How many numbers the layer's weights hold for inputs of `input_shape`."""
        if self.kind == "dense":
            return (input_shape[-1] + 1) * self.units
        bias = int(self.options.get("use_bias", True))
        if self.kind == "conv2d":
            kh, kw = self.options["kernel_size"]
            return (kh * kw * input_shape[-1] + bias) * self.units
        if self.kind == "depthwise_conv2d":  # kernel (kh, kw, C, M), bias (C M,)
            kh, kw = self.options["kernel_size"]
            return (kh * kw + bias) * input_shape[-1] * self.options.get("depth_multiplier", 1)
        if self.kind == "batch_normalization":
            return 4 * input_shape[-1]
        if self.kind == "layer_normalization":
            return 2 * input_shape[-1]
        if self.kind in _RECURRENT_PREFIX:  # kernel (F, k u), recurrent_kernel (u, k u), bias (k u,) or GRU's (2, 3u)
            k, u = _GATES[self.kind], self.units
            biases = 2 if self.kind == "gru" and self.options.get("reset_after", True) else 1
            return (input_shape[-1] + u + biases) * k * u
        if self.kind == "embedding":
            return self.options["input_dim"] * self.units
        if self.kind == "position_embedding":  # the table (T, D)
            return math.prod(input_shape)
        if self.kind == "multi_head_attention":  # self-attention: query, key and value read the same (T, D)
            o, d = self.options, input_shape[-1]
            n, h = o["num_heads"], o["key_dim"]
            hv, out = o.get("value_dim") or h, math.prod(o.get("output_shape") or (d,))
            return 2 * (d + bias) * n * h + (d + bias) * n * hv + n * hv * out + bias * out
        return 0

    def buffer_size(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
        """Values per sample the layer holds beside its output: the im2col matrix of a Conv2D, the windows of a
        pooling layer."""
        if self.kind in _SPATIAL_PREFIX or self.kind == "depthwise_conv2d":  # a DepthwiseConv2D's window gradients
            size = self.options["pool_size"] if "pool_size" in self.options else self.options["kernel_size"]
            return output_shape[0] * output_shape[1] * size[0] * size[1] * input_shape[2]
        if self.kind in _RECURRENT_PREFIX:  # every step's gates, states and their gradients, (T, u) each
            return input_shape[0] * self.units * _STEP_CACHES[self.kind]
        if self.kind == "multi_head_attention":
            return attention_buffer(self.options, input_shape[0], input_shape[0])
        return 0


def attention_buffer(options: dict, t: int, s: int) -> int:
    """Values per sample an attention call holds beside its output: Q, K, V and the contexts per head, and the
    scores, probabilities (after dropout too) and their gradients, (heads, T, S) each."""
    n, h = options["num_heads"], options["key_dim"]
    hv = options.get("value_dim") or h
    return n * (t * h + s * h + s * hv + 3 * t * hv) + 6 * n * t * s


@dataclass(frozen=True)
class Architecture:
    """The input and the layers in order.

    `input_dim` is the input's width (for an image, its number of values H*W*C); `input_shape` is its shape without
    the batch axis: (D,) for features (the default), (H, W, C) for an image. `output_dim` is the last layer's width.
    """

    input_dim: int
    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.input_shape:
            object.__setattr__(self, "input_shape", (self.input_dim,))
        elif math.prod(self.input_shape) != self.input_dim:
            raise BadInputError(f"input_shape {self.input_shape} does not hold input_dim={self.input_dim} values")

    @classmethod
    def of_shape(cls, input_shape: tuple[int, ...], layers: tuple[LayerSpec, ...]) -> Architecture:
        """The architecture for inputs of `input_shape` (a width D is (D,))."""
        return cls(math.prod(input_shape), tuple(layers), tuple(input_shape))

    @property
    def output_dim(self) -> int:
        return self.shapes()[-1][-1]

    def graph(self) -> Any:
        """This chain as a `from_scratch.graph_arch.GraphArchitecture`: the form both sides build from."""
        from from_scratch.graph_arch import chain_graph

        return chain_graph(self.input_shape, self.layers)

    def shapes(self) -> list[tuple[int, ...]]:
        """Each layer's output shape (without the batch axis), in order; a layer that cannot take the shape
        reaching it is refused, naming it."""
        shape, out = self.input_shape, []
        for position, spec in enumerate(self.layers, start=1):
            shape = spec.output_shape(shape, position)
            out.append(shape)
        return out

    @property
    def widths(self) -> list[int]:
        """The input width, then each Dense layer's width (a network of Dense layers only)."""
        return [self.input_dim] + [spec.units for spec in self.layers if spec.units]

    def footprint(self) -> tuple[int, int]:
        """(values per sample in activations and buffers: the input, every layer's output and im2col or window
        buffer; numbers in the weights), from the shapes alone, for the memory check before anything is built."""
        values, weights, shape = self.input_dim, 0, self.input_shape
        for spec, out in zip(self.layers, self.shapes()):
            values += math.prod(out) + spec.buffer_size(shape, out)
            weights += spec.weight_count(shape)
            shape = out
        return values, weights

    def __str__(self) -> str:
        head = "x".join(map(str, self.input_shape))
        return "-".join([head] + [spec.token() for spec in self.layers])

    @classmethod
    def parse(
        cls, text: str, hidden_activation: str = "relu", output_activation: str = "softmax"
    ) -> Architecture | GraphArchitecture:
        """Parse "64-32-16-10", "64-32:tanh-10:softmax" or "8x8x1-conv8k3-pool2-flatten-10" (module docstring) into an
        Architecture; a string with a merge of branches, "64-32-add(32-32 | id)-10", into a GraphArchitecture
        (from_scratch.branches); malformed strings raise BadInputError."""
        if isinstance(text, str) and any(mark in text for mark in "()|"):
            from from_scratch.branches import parse_branches

            return parse_branches(text, hidden_activation, output_activation)
        tokens = _TOKENS.split(text.strip()) if isinstance(text, str) else []
        if len(tokens) < 2 or any(not t for t in tokens):
            raise BadInputError(
                f"malformed architecture {text!r}: expected the input width (or HxWxC) then one token per layer, "
                "separated by '-', e.g. '64-32-16-10' or '8x8x1-conv8k3-pool2-flatten-10'"
            )
        input_shape = _shape(tokens[0], text, "input width", (1, 3))
        dense_positions = [i for i, t in enumerate(tokens) if i > 0 and t.split(":")[0].isdecimal()]
        hidden_or_output = dense_positions[-1] if dense_positions else None
        layers = []
        for position, token in enumerate(tokens[1:], start=1):
            activation = output_activation if position == hidden_or_output else hidden_activation
            layers.append(layer_spec(token, text, position, activation, hidden_activation))
        arch = cls.of_shape(input_shape, tuple(layers))
        try:
            shapes = arch.shapes()
        except BadInputError as exc:
            raise BadInputError(f"malformed architecture {text!r}: {exc}") from None
        if len(shapes[-1]) != 1:
            seq = any(spec.options.get("return_sequences") for spec in layers)
            hint = "drop ':seq' from the last recurrent layer, or add" if len(shapes[-1]) == 2 and seq else "add"
            pooling = "'gap1d'" if len(shapes[-1]) == 2 else "'gap'"
            raise BadInputError(
                f"malformed architecture {text!r}: the output has shape {shapes[-1]}; end with features (D,): "
                f"{hint} 'flatten' or {pooling} and a Dense layer"
            )
        if not dense_positions and not any(spec.kind == "conv2d" or spec.kind in _RECURRENT_PREFIX for spec in layers):
            raise BadInputError(f"malformed architecture {text!r}: no Dense layer (a width) after the input width")
        return arch


def layer_spec(token: str, text: str, position: int, activation: str, hidden_activation: str) -> LayerSpec:
    """The layer one token of the string form stands for (`position` counts the layers from 1, for the messages);
    a Dense layer without an activation takes `activation`, a Conv2D `hidden_activation`."""
    if token.startswith("dropout"):
        return LayerSpec("dropout", options={"rate": _rate(token[len("dropout") :], text, position)})
    if token in ("bn", "batchnorm"):
        return LayerSpec("batch_normalization")
    if token in ("ln", "layernorm"):
        return LayerSpec("layer_normalization")
    if token in _PLAIN:
        return LayerSpec(_PLAIN[token])
    application = _application(token, text, position)
    if application is not None:
        return application
    if token.startswith("reshape"):
        target = _shape(token[len("reshape") :], text, f"layer {position} reshape target", (1, 3))
        return LayerSpec("reshape", options={"target_shape": target})
    spatial = _spatial(token, text, position, hidden_activation)
    if spatial is not None:
        return spatial
    sequence = _sequence(token, text, position)
    if sequence is not None:
        return sequence
    units_text, *parts = token.split(":")
    if not units_text.isdecimal():
        raise BadInputError(
            f"malformed architecture {text!r}: layer {position} {units_text!r} is neither a width (a positive "
            "integer) nor a layer (dropoutR, bn, ln, convFkK, poolP, avgpoolP, gap, flatten, reshapeHxWxC, "
            "rnnU, lstmU, gruU, embedVxD, pos, gap1d, mhaNxK, padP, dwK, act:NAME, relu, relu6)"
        )
    units = _positive_int(units_text, text, f"layer {position} width")
    given = _Given(text, position, token)
    if parts and "=" not in parts[0]:
        activation = given.add("an activation", parts.pop(0))
    options = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq and part and "an activation" in given:  # a second activation, wherever it stands
            given.add("an activation", part)
        if key in _LONG:
            given.add(f"{key}=", part)
        if key not in _LONG:
            raise BadInputError(
                f"malformed architecture {text!r}: layer {position} option {part!r}; "
                f"known: {', '.join(k + '=' for k in _LONG)}"
            )
        options[_LONG[key]] = _non_negative(value, text, position, key)
    return LayerSpec("dense", units, activation, options)


def window_geometry(n: int, k: int, stride: int, dilation: int, padding: str) -> tuple[int, int, int]:
    """(output size, padding before, padding after) of a sliding window along one axis, as Keras/TensorFlow
    compute it. The window spans e = dilation (k - 1) + 1 inputs.
        valid: out = floor((n - e) / stride) + 1, no padding (out <= 0: the window does not fit)
        same:  out = ceil(n / stride), total padding P = max((out - 1) stride + e - n, 0), split P // 2 before and
               the rest after (the odd cell goes after: bottom and right)."""
    e = dilation * (k - 1) + 1
    if padding == "valid":
        return (n - e) // stride + 1 if n >= e else 0, 0, 0
    out = -(-n // stride)
    total = max((out - 1) * stride + e - n, 0)
    return out, total // 2, total - total // 2


# The token readers and tables (from_scratch/arch_reading.py), and the tokens of the layers keras.applications'
# networks add (padP, dwK, act:NAME, relu, relu6, from_scratch/arch_tokens.py), live beside this module; imported
# last, as they are written in terms of LayerSpec.
from from_scratch.arch_reading import (  # noqa: E402, F401 (re-exported: they were defined here)
    _EMBEDDING,
    _GATES,
    _LONG,
    _PLAIN,
    _PLAIN_TOKENS,
    _RECURRENT,
    _RECURRENT_PREFIX,
    _SHORT,
    _SPATIAL,
    _SPATIAL_PREFIX,
    _STEP_CACHES,
    _TOKENS,
    _dims,
    _Given,
    _non_negative,
    _pair,
    _positive_int,
    _rate,
    _sequence,
    _shape,
    _spatial,
)
from from_scratch.arch_tokens import IMAGE_ONLY as _IMAGE_ONLY  # noqa: E402
from from_scratch.arch_tokens import SEQUENCE_ONLY as _SEQUENCE_ONLY  # noqa: E402
from from_scratch.arch_tokens import TOKENS as _APPLICATION_TOKENS  # noqa: E402
from from_scratch.arch_tokens import application as _application  # noqa: E402
