"""The readers of the string form's tokens (from_scratch/arch.py's grammar, documented in its module docstring) for
the core layers: `_spatial` (convFkK, poolP, avgpoolP), `_sequence` (rnnU, lstmU, gruU, embedVxD), the numbers and
shapes they take (`_pair`, `_shape`, `_positive_int`, `_rate`, `_non_negative`), `_Given` (each option once), and
the token tables that `Architecture.parse` and the writer `LayerSpec.token` share, so that the two round-trip.
The layers keras.applications' networks add have theirs in from_scratch/arch_tokens.py."""

from __future__ import annotations

import re
from typing import Any

from from_scratch.activations import get_activation
from from_scratch.arch import LayerSpec
from from_scratch.errors import BadInputError

#: Layers without options: their token, and their kind (and back: the token `LayerSpec.token` writes for the kind).
_PLAIN = {"flatten": "flatten", "gap": "global_average_pooling2d", "gap1d": "global_average_pooling1d"}
_PLAIN_TOKENS = {kind: token for token, kind in _PLAIN.items()}

#: The token prefix of each windowed layer (Conv2D's is followed by its filter count: conv8k3).
_SPATIAL_PREFIX = {"conv2d": "conv", "max_pooling2d": "pool", "average_pooling2d": "avgpool"}
_SPATIAL = re.compile(r"^(?:(conv)([0-9]+)k|(maxpool|avgpool|pool))([0-9]+(?:x[0-9]+)?)$")


#: The token prefix of each recurrent layer (followed by its units: lstm16), its gate count k (kernel (F, k u)), and
#: the (T, u) arrays it keeps per sample for backpropagation through time (the memory estimate).
_RECURRENT_PREFIX = {"simple_rnn": "rnn", "lstm": "lstm", "gru": "gru"}
_GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
_STEP_CACHES = {"simple_rnn": 5, "lstm": 17, "gru": 15}
_RECURRENT = re.compile(r"^(rnn|lstm|gru)([0-9]+)$")
_EMBEDDING = re.compile(r"^embed([0-9]+)x([0-9]+)$")


def _sequence(token: str, text: str, position: int) -> LayerSpec | None:
    """rnnU[:activation][:seq], lstmU[:seq], gruU[:seq][:reset_before], embedVxD; None for other tokens."""
    head, *parts = token.split(":")
    where = f"layer {position}"
    if head.startswith("embed"):
        m = _EMBEDDING.match(head)
        if m is None or parts:
            raise BadInputError(
                f"malformed architecture {text!r}: {where} {token!r}; expected embedVxD (embed50x8: Embedding with "
                "input_dim 50 and output_dim 8), no options"
            )
        vocabulary = _positive_int(m.group(1), text, f"{where} embedding input_dim")
        return LayerSpec(
            "embedding",
            _positive_int(m.group(2), text, f"{where} embedding output_dim"),
            "linear",
            {"input_dim": vocabulary},
        )
    m = _RECURRENT.match(head)
    if m is None:
        if re.match(r"^(rnn|lstm|gru)", head):
            raise BadInputError(
                f"malformed architecture {text!r}: {where} {head!r}; expected rnnU, lstmU or gruU with U units (lstm16)"
            )
        return None
    prefix = m.group(1)
    kind = next(k for k, v in _RECURRENT_PREFIX.items() if v == prefix)
    units = _positive_int(m.group(2), text, f"{where} units")
    options: dict[str, Any] = {"return_sequences": False}
    if kind == "gru":
        options["reset_after"] = True
    activation = "tanh" if kind == "simple_rnn" else "linear"
    given = _Given(text, position, token)
    for part in parts:
        if part == "seq":
            options["return_sequences"] = given.add("seq", part) == "seq"
        elif kind == "gru" and part == "reset_before":
            options["reset_after"] = given.add("reset_before", part) != "reset_before"
        elif kind == "simple_rnn" and part and "=" not in part and part != "reset_before":
            activation = given.add("an activation", part)
        else:
            known = {"simple_rnn": "an activation, seq", "lstm": "seq", "gru": "seq, reset_before"}[kind]
            raise BadInputError(f"malformed architecture {text!r}: {where} option {part!r} (unknown; known: {known})")
    return LayerSpec(kind, units, activation, options)


class _Given:
    """The options one token has given so far: each option once. A second value for the same option is refused,
    whether it contradicts the first (`conv2k3:same:valid`, `pool2:s=1:s=2`) or repeats it (`gru4:seq:seq`): the
    grammar never lets a later value silently win, and a repeat is as likely a slip as a contradiction."""

    def __init__(self, text: str, position: int, token: str) -> None:
        self.text, self.position, self.token, self.values = text, position, token, {}

    def __contains__(self, option: str) -> bool:
        return option in self.values

    def add(self, option: str, part: str) -> str:
        """Record `part` as the value of `option` and return it; refuse a second value, naming both. An activation is
        looked up first, so that a mistyped option (`s2` for `s=2`) is called unknown, not a second activation."""
        if option == "an activation":
            get_activation(part)
        if option in self.values:
            raise BadInputError(
                f"malformed architecture {self.text!r}: layer {self.position} gives {option} twice in "
                f"{self.token!r} ({self.values[option]!r} and {part!r}); give each option once"
            )
        self.values[option] = part
        return part


def _dims(pair: tuple[int, ...]) -> str:
    """(3, 3) -> "3", (3, 2) -> "3x2" (a square pair is written once), (4, 4, 4) -> "4x4x4"."""
    if len(pair) == 2 and pair[0] == pair[1]:
        return str(pair[0])
    return "x".join(map(str, pair))


def _spatial(token: str, text: str, position: int, hidden_activation: str) -> LayerSpec | None:
    """conv8k3[:activation][:same|valid][:s=2][:d=2], pool2[:s=1][:same], avgpool2[...]; None for other tokens."""
    head, *parts = token.split(":")
    m = _SPATIAL.match(head)
    if m is None:
        if re.match(r"^(conv|maxpool|avgpool|pool)[0-9]", head):
            raise BadInputError(
                f"malformed architecture {text!r}: layer {position} {head!r}; expected convFkK (conv8k3, conv8k3x2), "
                "poolP or avgpoolP (pool2, pool3x2)"
            )
        return None
    conv = m.group(1) is not None
    where = f"layer {position}"
    size = _pair(m.group(4), text, f"{where} {'kernel' if conv else 'pool'} size")
    options: dict[str, Any] = {"padding": "valid"}
    activation = hidden_activation if conv else "linear"
    given = _Given(text, position, token)
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq and part in ("same", "valid"):
            options["padding"] = given.add("padding", part)
        elif not eq and conv and part and part != "nobias":
            activation = given.add("an activation", part)
        elif key in ("s", "strides"):
            options["strides"] = _pair(given.add("strides", part).partition("=")[2], text, f"{where} strides")
        elif conv and key in ("d", "dilation_rate"):
            dilation = given.add("dilation_rate", part).partition("=")[2]
            options["dilation_rate"] = _pair(dilation, text, f"{where} dilation_rate")
        elif conv and part == "nobias":
            options["use_bias"] = given.add("nobias", part) != "nobias"
        else:
            known = "an activation, same, valid, s=, d=, nobias" if conv else "same, valid, s="
            raise BadInputError(f"malformed architecture {text!r}: {where} option {part!r} (unknown; known: {known})")
    if conv:
        options.setdefault("strides", (1, 1))
        options.setdefault("dilation_rate", (1, 1))
        if options["strides"] != (1, 1) and options["dilation_rate"] != (1, 1):
            raise BadInputError(
                f"malformed architecture {text!r}: {where} strides {_dims(options['strides'])} with dilation_rate "
                f"{_dims(options['dilation_rate'])}: Keras's Conv2D takes strides > 1 or dilation > 1, not both"
            )
        filters = _positive_int(m.group(2), text, f"{where} filters")
        return LayerSpec("conv2d", filters, activation, {"kernel_size": size, **options})
    options.setdefault("strides", size)  # Keras: strides=None means the pool size
    kind = "average_pooling2d" if m.group(3) == "avgpool" else "max_pooling2d"
    return LayerSpec(kind, None, "linear", {"pool_size": size, **options})


def _pair(token: str, text: str, what: str) -> tuple[int, int]:
    """ "3" -> (3, 3), "3x2" -> (3, 2)."""
    dims = _shape(token, text, what, (1, 2))
    return (dims[0], dims[0]) if len(dims) == 1 else (dims[0], dims[1])


def _shape(token: str, text: str, what: str, lengths: tuple[int, int]) -> tuple[int, ...]:
    """ "64" -> (64,), "8x8x1" -> (8, 8, 1): one to three positive integers joined by 'x'."""
    parts = token.split("x")
    if not lengths[0] <= len(parts) <= lengths[1]:
        raise BadInputError(
            f"malformed architecture {text!r}: {what} {token!r} is not a positive integer"
            + (" or HxWxC" if lengths[1] == 3 else " or AxB")
        )
    return tuple(_positive_int(part, text, what) for part in parts)


#: '-' separates the tokens, except the minus of a float's exponent (1e-05, 5E-3), so any float Python reads is read.
_TOKENS = re.compile(r"(?<![0-9.][eE])-")

_LONG = {"l1": "kernel_l1", "l2": "kernel_l2", "bias_l1": "bias_l1", "bias_l2": "bias_l2"}
_SHORT = {v: k for k, v in _LONG.items()}


def _rate(token: str, text: str, position: int) -> float:
    try:
        rate = float(token)
    except ValueError:
        rate = -1.0
    if not 0 <= rate < 1:
        raise BadInputError(
            f"malformed architecture {text!r}: layer {position} dropout rate {token!r} is not in [0, 1)"
        )
    return rate


def _non_negative(token: str, text: str, position: int, key: str) -> float:
    if not token:
        raise BadInputError(
            f"malformed architecture {text!r}: layer {position} {key}= has no value "
            "('-' separates layers, and negative factors are refused)"
        )
    try:
        value = float(token)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise BadInputError(f"malformed architecture {text!r}: layer {position} {key}={token!r} is not a number >= 0")
    return value


def _positive_int(token: str, text: str, what: str) -> int:
    """A width: decimal digits (any script's, as int() reads them: full-width 64 is 64; the report shows what was
    read); a superscript or other digit-like character is refused, not crashed on."""
    if not token.isdecimal() or int(token) <= 0:
        raise BadInputError(f"malformed architecture {text!r}: {what} {token!r} is not a positive integer")
    return int(token)
