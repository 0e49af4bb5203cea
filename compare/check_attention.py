"""check_layer for a layer called as keras.layers.MultiHeadAttention is: on tensors in roles (query, value, key,
attention_mask) with call options (use_causal_mask, return_attention_scores), not on a list.

    check_layer(my_mha, keras.layers.MultiHeadAttention(2, 4), [(6, 8), (5, 8), (5, 8), (6, 5)],
                roles=("query", "value", "key", "attention_mask"), call_options={"use_causal_mask": True})

The user's layer (several_inputs = True) is called in a graph as from_scratch.attention.MultiHeadAttention is: its
`build(input_shapes, dtype, rng, roles=..., **call_options)` and `forward(xs, training, roles=..., **call_options)`
receive the call's options, xs in the order of `roles`; `backward(dY)` returns one dL/dx per input (zeros for the
mask). The Keras layer is called as `keras_layer(query, value, key=..., attention_mask=..., use_causal_mask=...)`.

Here: the call's options checked (`attention_call`), the attention mask checked (`as_mask`) or drawn at random
(`random_mask`: 0/1, at least one kept position per row of the scores, the causal rule counted), and the scale
convention of the layer found (`scale_convention`, see its docstring: Keras rounds 1/sqrt(key_dim) to float32).
The mask is not differentiable: it is not moved by the witnesses or the float32 jitter (harness.fixed_input_flags)
and has no "grad input" row.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from compare.tolerances import norm_rel_error
from from_scratch.attention import ROLES, attention_output_shape
from from_scratch.errors import BadInputError, a_or_an

Array = np.ndarray

#: The call options check_layer hands both sides (Keras's MultiHeadAttention.call arguments of those names).
CALL_OPTIONS = ("use_causal_mask", "return_attention_scores")

#: The role whose input is a mask: 0/1 (nonzero keeps a position), not differentiable.
MASK_ROLE = "attention_mask"

#: Probability that a randomly drawn mask entry keeps its position (before every row is given one kept position).
MASK_KEEP = 0.7


def is_keras_attention(keras_layer: Any) -> bool:
    """Whether `keras_layer` is a keras.layers.MultiHeadAttention (or a subclass of it)."""
    import keras

    return isinstance(keras_layer, keras.layers.MultiHeadAttention)


def attention_call(
    name: str, keras_layer: Any, roles: Any, call_options: Any, count: int | None
) -> dict[str, Any] | None:
    """The call's options {"roles": (...), "use_causal_mask": True, ...} for a check of `count` inputs, or None
    for a layer of several inputs called on their list (no roles, no call options, a Keras layer that is not a
    MultiHeadAttention). Against a MultiHeadAttention without roles, 2 or 3 inputs are query, value[, key].
    Refused, naming the layer: roles that are not ROLES names, repeated, without a query and a value, or not one per
    input; call options that are not CALL_OPTIONS or not True/False."""
    attention = is_keras_attention(keras_layer)
    if roles is None and call_options is None and not attention:
        return None
    where = f"layer {name!r}"
    options: dict[str, Any] = {}
    if call_options is not None:
        if not isinstance(call_options, dict):
            raise BadInputError(
                f"{where}: call_options must be a dict such as {{'use_causal_mask': True}}, got "
                f"{a_or_an(type(call_options).__name__)}"
            )
        for key, value in call_options.items():
            if key not in CALL_OPTIONS:
                raise BadInputError(
                    f"{where}: call option {key!r} is not one check_layer hands the layers; give "
                    f"{' or '.join(CALL_OPTIONS)}"
                )
            if not isinstance(value, (bool, np.bool_)):
                raise BadInputError(f"{where}: call option {key} must be True or False, got {value!r}")
            if value:
                options[key] = True
    if roles is None:
        if count not in (2, 3):
            raise BadInputError(
                f"{where}: {count} inputs against {type(keras_layer).__name__}: name each with "
                f"roles=(...) from {ROLES} (without roles, 2 or 3 inputs are query, value[, key])"
            )
        roles = ROLES[:count]
    if isinstance(roles, str) or not isinstance(roles, (list, tuple)) or not all(isinstance(r, str) for r in roles):
        raise BadInputError(f"{where}: roles must be a tuple of names from {ROLES}, got {roles!r}")
    roles = tuple(roles)
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise BadInputError(f"{where}: unknown role {unknown[0]!r} in roles {roles}; the roles are {ROLES}")
    repeated = sorted({r for r in roles if roles.count(r) > 1})
    if repeated:
        raise BadInputError(f"{where}: role {repeated[0]!r} given twice in roles {roles}; name each input once")
    if "query" not in roles or "value" not in roles:
        raise BadInputError(f"{where}: roles {roles} lack a {'query' if 'query' not in roles else 'value'}")
    if count is not None and len(roles) != count:
        raise BadInputError(
            f"{where}: roles {roles} name {len(roles)} input(s), but {count} were given (one shape or batch per role)"
        )
    return {"roles": roles, **options}


def check_takes_options(name: str, layer: Any, options: dict[str, Any]) -> None:
    """The layer's build and forward take the call's options as keywords (roles=..., use_causal_mask=...), as the
    graph hands them; refused naming the layer, the method and the options otherwise."""
    import inspect

    given = ", ".join(f"{k}=..." for k in options)
    for method, args in (("build", ([], None, None)), ("forward", ([],))):
        try:
            inspect.signature(getattr(layer, method)).bind(*args, **options)
        except TypeError:
            raise BadInputError(
                f"layer {name!r}: {method}() does not take the call's "
                f"options {given}; an attention layer's {method} receives them as keywords (def {method}(self, "
                f"{'input_shapes, dtype, rng' if method == 'build' else 'xs, training=False'}, roles=None, "
                "use_causal_mask=False, return_attention_scores=False))"
            ) from None
        except ValueError:  # no signature to read: the call will tell
            pass


def check_shapes(name: str, keras_layer: Any, options: dict[str, Any], shapes: list[tuple[int, ...]]) -> None:
    """The inputs' shapes (without the batch axis) as MultiHeadAttention takes them: query, value, key sequences
    (steps, features), value and key of one length, a mask broadcastable to the scores (heads, T, S); refused
    naming the layer, the role and both shapes."""
    heads = getattr(keras_layer, "num_heads", None)
    attention_output_shape({"roles": options["roles"], "num_heads": heads}, shapes, f"layer {name!r}")


def as_mask(mask: Any, dtype: str, what: str) -> Array:
    """A user's attention mask (N, ...) as the check runs it: booleans, integers or floats (nonzero keeps a
    position, as Keras reads it), every value finite; returned in `dtype` (exact: 0/1 and small integers)."""
    try:
        m = np.asarray(mask)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{what}: not an array ({exc})") from None
    if m.dtype.kind not in "biuf":
        raise BadInputError(f"{what}: expected booleans or numbers (nonzero keeps a position), got dtype {m.dtype}")
    if m.ndim < 3:
        raise BadInputError(
            f"{what}: expected (N, T, S) or (N, heads, T, S) with the batch axis first, got shape {m.shape}"
        )
    if m.dtype.kind == "f" and not np.isfinite(m).all():
        at = tuple(int(i) for i in np.argwhere(~np.isfinite(m))[0])
        raise BadInputError(f"{what}: {m[at]} at index {at}; NaN and infinity are refused")
    out = m.astype(dtype)
    if m.dtype.kind != "b" and not np.array_equal(out != 0, m != 0):
        raise BadInputError(f"{what}: a value rounds to 0 in {dtype}, which would mask its position")
    return out


def random_mask(
    rng: np.random.Generator, batch: int, shape: tuple[int, ...], t: int, s: int, causal: bool, dtype: str
) -> Array:
    """A 0/1 mask (batch, *shape) for scores (T, S): each entry kept with probability MASK_KEEP, then every row of
    the scores given at least one kept position (with the causal rule, one of 0..i for query step i): a fully
    masked row is a case of its own in Keras (uniform on one path, zeros on the other), which a user's layer need
    not copy."""
    m = (rng.random((batch, *shape)) < MASK_KEEP).astype(dtype)
    rows_t, cols_s = shape[-2], shape[-1]
    for index in np.ndindex(*m.shape[:-2]):
        for r in range(rows_t):
            queries = range(t) if rows_t == 1 else (r,)
            for i in queries:
                allowed = range(min(i, s - 1) + 1) if causal else range(s)
                columns = [j if cols_s > 1 else 0 for j in allowed]
                if not m[(*index, r, columns)].any():
                    m[(*index, r, int(rng.choice(columns)))] = 1
    return m


def with_fixed_dropout(keras_layer: Any) -> Any:
    """keras.layers.MultiHeadAttention with dropout made anew as keras_impl's FixedMaskMultiHeadAttention (the
    same layer whose probability dropout takes a given mask), so that both sides drop the same probabilities; any
    other layer as it is."""
    import keras

    if type(keras_layer) is not keras.layers.MultiHeadAttention or not getattr(keras_layer, "_dropout", 0.0) > 0:
        return keras_layer
    from keras_impl.attention import FixedMaskMultiHeadAttention

    return FixedMaskMultiHeadAttention.from_config(keras_layer.get_config())


def _exact_scale(keras_layer: Any) -> float:
    return 1.0 / math.sqrt(float(keras_layer._key_dim))


def scale_convention(twin: Any, keras_layer: Any, model: Any, xs: list[Array], dtype: str) -> str | None:
    """Keras 3.15 scales the scores by 1/sqrt(key_dim) as a Python float that TensorFlow reads as a float32
    constant: in float64 its scale is rounded to float32, a relative change of up to 3e-8 in every score
    (from_scratch.attention.attention_scale). A right layer that computes 1/sqrt(key_dim) in float64 then differs
    from Keras at about 1e-8, far above float64 rounding (F64_TOL 1e-12) and far below any wrong formula.

    Both scales are 1/sqrt(key_dim); which one the layer uses is read from its output: the Keras twin (weights
    already set) is run with its own scale and with the exact one, and when the layer's output is nearer the exact
    one, the twin keeps the exact scale for the whole check (every row then held to float64 rounding as usual). The
    sentence returned says which scale was used and how far Keras's own rounding moves the output; None when there
    is nothing to choose (float32, a Keras layer other than MultiHeadAttention, or a scale exact in float32)."""
    import keras

    layer = next((lay for lay in twin.layers if lay is keras_layer), None)
    if dtype != "float64" or layer is None or not isinstance(layer, keras.layers.MultiHeadAttention):
        return None
    exact = _exact_scale(layer)
    if float(np.float32(exact)) == exact:
        return None
    ours = np.asarray(model.forward([x.copy() for x in xs], training=False))
    rounded_out = np.asarray(twin([np.asarray(x) for x in xs], training=False))
    kept = layer._inverse_sqrt_key_dim
    layer._inverse_sqrt_key_dim = np.float64(exact)  # tf.cast keeps a float64 scalar's every bit
    exact_out = np.asarray(twin([np.asarray(x) for x in xs], training=False))
    apart = norm_rel_error(exact_out, rounded_out)
    key_dim = layer._key_dim
    if norm_rel_error(ours, exact_out) < norm_rel_error(ours, rounded_out):
        return (
            f"1/sqrt({key_dim}) in float64, which the layer's output is nearer (Keras rounds it to float32: "
            f"{apart:.1e} apart at the output)"
        )
    layer._inverse_sqrt_key_dim = kept
    return f"1/sqrt({key_dim}) rounded to float32, as Keras ({apart:.1e} from the float64 scale at the output)"
