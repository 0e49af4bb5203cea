"""Term magnitudes for the float32 bound: the backward pass run again on absolute values.

For every gradient entry, the magnitude M of the terms that floating-point arithmetic summed to produce it:

    |dZ| = |dA| * |f'(Z)|                     (softmax: P * (|dA| + sum_k |dA_k| P_k))
    M_W  = M_X^T |dZ|,   M_b = sum_n |dZ|,   |dX| = |dZ| |W|^T   (passed on as the next layer's |dA|)

where M_X is the magnitude of the terms behind the layer's input (a forward sweep: M_Z = M_X |W| + |b|,
M_A = |A| + |f'(Z)| M_Z), which is |X| for the network input.

started from the loss gradient's own terms: (|P| + |Y|) |w| / N on the fused softmax + cross-entropy path
(`FUSED_TERMS`), |dL/dP| otherwise. The rounding error of a computed sum is bounded by a multiple of u times the sum of its terms'
magnitudes, so ||error|| / ||M|| is the quantity that a float32 tolerance can bound without knowing the data.
Computed in float64 from the scratch model's caches after `backward_pass`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

Array = np.ndarray


#: Derivatives that are themselves a difference of terms: the magnitude of those terms, not of the result.
#: tanh' = 1 - t^2 at saturation is 1 - (1 - tiny): one ulp of difference between NumPy's and Eigen's tanh
#: becomes a 1e-12 relative difference in f' (found by the property test: 4-1:tanh-3:softmax, inputs x10).
GRAD_TERMS: dict[str, Callable[[Array], Array]] = {
    "tanh": lambda z: 1 + np.tanh(z) ** 2,
    "sigmoid": lambda z: (lambda s: s + s * s)(1 / (1 + np.exp(-z))),
    # (1 + t) / 2 + z (1 - t^2) u' / 2 with t = tanh(u): both brackets cancel where t is near -1
    "gelu_tanh": lambda z: (lambda t: 0.5 * (1 + np.abs(t)) + 0.5 * np.abs(z) * (1 + t * t) * _gelu_du(z))(
        np.tanh(_gelu_u(z))
    ),
}

#: Activation values that are themselves a cancellation: the magnitude of their terms. GELU's tanh form is
#: z (1 + t) / 2 with t near -1 for negative z, and TensorFlow's float32 tanh (Eigen's fast approximation) is
#: exactly -1 from |u| ~ 7.9 on where NumPy's is -0.99999988 (found by the property test: 4-1:gelu_tanh-3:softmax,
#: float32, inputs x10, where f' is 0 on one side and 2e-6 on the other).
VALUE_TERMS: dict[str, Callable[[Array], Array]] = {
    "gelu_tanh": lambda z: 0.5 * np.abs(z) * (1 + np.abs(np.tanh(_gelu_u(z)))),
}


def _gelu_u(z: Array) -> Array:
    return 0.7978845608028654 * (z + 0.044715 * z**3)


def _gelu_du(z: Array) -> Array:
    return 0.7978845608028654 * (1 + 3 * 0.044715 * z * z)


def _grad_magnitude(layer: Any, z: Array) -> Array:
    name = layer.activation.name
    return GRAD_TERMS[name](z) if name in GRAD_TERMS else np.abs(layer.activation.grad(z))


def _dz_magnitude(layer: Any, dA_abs: Array) -> Array:
    z = layer.Z.astype(np.float64)
    if layer.activation.grad is None:  # softmax: |P * (dA - sum dA P)| <= P * (|dA| + sum |dA| P)
        p = layer.A.astype(np.float64)
        return p * (dA_abs + (dA_abs * p).sum(axis=-1, keepdims=True))
    return dA_abs * _grad_magnitude(layer, z)


def dense_forward(layer: Any, x_mag: Array) -> Array:
    """Magnitude of the terms behind A: M_Z = M_X |W| + |b|, then |A| + |f'(Z)| M_Z (softmax: its JVP bound).

    A forward value that is itself a cancellation (Z near 0 from terms of both signs) carries an error of order
    u M_Z, not u |Z|; dW = A_prev^T dZ inherits it, so dW's terms are measured with M_A, not |A|.
    """
    z = layer.Z.astype(np.float64)
    a = np.abs(layer.A.astype(np.float64))
    z_mag = x_mag @ np.abs(layer.W.astype(np.float64)) + np.abs(layer.b.astype(np.float64))
    layer.z_magnitude = z_mag
    if layer.activation.grad is None:
        return a + a * (z_mag + (a * z_mag).sum(axis=-1, keepdims=True))
    if layer.activation.name == "step":
        return a
    name = layer.activation.name
    own = VALUE_TERMS[name](z) if name in VALUE_TERMS else 0
    return a + own + _grad_magnitude(layer, z) * z_mag


def dropout_forward(layer: Any, x_mag: Array) -> Array:
    return x_mag * float(layer.scale) * layer.mask if layer.training else x_mag


def batch_normalization_forward(layer: Any, x_mag: Array) -> Array:
    """|A| + |gamma| r (M_X + mean_n M_X): the centring X - mu is a cancellation of terms of that size."""
    r = layer.r.astype(np.float64)
    centred = (x_mag + x_mag.mean(axis=0)) * r * np.abs(layer.gamma.astype(np.float64))
    return np.abs(layer.A.astype(np.float64)) + centred


#: Forward term magnitudes, one entry per layer kind.
FORWARD: dict[str, Callable[[Any, Array], Array]] = {
    "dense": dense_forward,
    "dropout": dropout_forward,
    "batch_normalization": batch_normalization_forward,
}


def dense_scales(layer: Any, dA_abs: Array | None, dZ_abs: Array | None = None) -> tuple[list[Array], Array]:
    """([M_W, M_b], |dX|) for a Dense layer, from |dA| (or directly from |dZ| on the fused path)."""
    if dZ_abs is None:
        dZ_abs = _dz_magnitude(layer, dA_abs)
    layer.dz_magnitude = dZ_abs
    x_abs = layer.input_magnitude
    w_abs = np.abs(layer.W.astype(np.float64))
    return [x_abs.T @ dZ_abs, dZ_abs.sum(axis=0)], dZ_abs @ w_abs.T


def dropout_scales(layer: Any, dA_abs: Array) -> tuple[list[Array], Array]:
    """No parameters; |dX| = |dA| s M in training (the mask is exact)."""
    if not layer.training:
        return [], dA_abs
    return [], dA_abs * float(layer.scale) * layer.mask


def batch_normalization_scales(layer: Any, dA_abs: Array) -> tuple[list[Array], Array]:
    """M_gamma = sum_n |dA| |Xhat|, M_beta = sum_n |dA|, and the terms of dX's three sums; the moving statistics
    get no gradient; their entries are the magnitudes of the terms behind their updated values."""
    r = layer.r.astype(np.float64)
    x_mag = layer.input_magnitude  # Xhat = (X - mu) r is a cancellation: its terms are (M_X + mean M_X) r
    xhat = np.abs(layer.Xhat.astype(np.float64)) + (x_mag + x_mag.mean(axis=0)) * r
    dxhat = dA_abs * np.abs(layer.gamma.astype(np.float64))
    n = dA_abs.shape[0]
    dX = (r / n) * (n * dxhat + dxhat.sum(axis=0) + xhat * (dxhat * xhat).sum(axis=0))
    # the moving statistics after the step: m momentum + mu (1 - momentum), mu a mean over terms of size M_X
    # (and var over terms of size (M_X + mean M_X)^2); these scale the "state ... after step" rows
    keep = 1 - layer.momentum
    mean_terms = np.abs(layer.moving_mean.astype(np.float64)) + keep * x_mag.mean(axis=0)
    var_terms = np.abs(layer.moving_variance.astype(np.float64)) + keep * ((x_mag + x_mag.mean(axis=0)) ** 2).mean(axis=0)
    return [(dA_abs * xhat).sum(axis=0), dA_abs.sum(axis=0), mean_terms, var_terms], dX


#: The terms of each fused loss's per-sample dl/dZ, from |P| and |Y| (N, K): P - Y for the softmax
#: cross-entropies, (P - Y) / K for the sigmoid one. Reduced afterwards by the loss's own reduce_grad.
FUSED_TERMS: dict[str, Callable[[Array, Array], Array]] = {
    "categorical_crossentropy": lambda y, p: p + y,
    "sparse_categorical_crossentropy": lambda y, p: p + y,
    "binary_crossentropy": lambda y, p: (p + y) / p.shape[-1],
}

#: One entry per scratch layer kind (keys as in from_scratch.layers.LAYERS).
SCALES: dict[str, Callable[..., tuple[list[Array], Array]]] = {
    "dense": dense_scales,
    "dropout": dropout_scales,
    "batch_normalization": batch_normalization_scales,
}


class Scales(NamedTuple):
    """Term magnitudes: `params` aligned with get_weights(), `input_grad` for dL/dX, `output` for the output."""

    params: list[Array]
    input_grad: Array
    output: Array


def forward_magnitudes(model: Any) -> Array:
    """The forward sweep of term magnitudes over the model's caches, from |X| of the last batch. Each layer keeps
    its `input_magnitude` and `output_magnitude` (Dense layers also `z_magnitude`); returns the output's."""
    magnitude = np.abs(model.layers[0].X.astype(np.float64))
    for layer in model.layers:
        layer.input_magnitude = magnitude
        magnitude = FORWARD[layer.kind](layer, magnitude)
        layer.output_magnitude = magnitude
    return magnitude


def gradient_scales(model: Any, y: Array, loss: Any, fused: bool, sample_weight: Array | None = None) -> Scales:
    """Term magnitudes for every gradient of `model` (aligned with get_weights()), for dL/dX and for the output
    (the forward sweep's last magnitude).

    Call right after `model.backward_pass(x, y, loss)`, whose caches it reads. Each layer keeps the magnitudes of
    its intermediates beside it (`input_magnitude`, `z_magnitude`, `output_magnitude`, `dA_magnitude`,
    `dz_magnitude`), which the layer-by-layer diagnosis measures against.
    """
    magnitude = forward_magnitudes(model)
    w = None if sample_weight is None else np.abs(np.asarray(sample_weight, np.float64))
    last = model.layers[-1]
    p = last.A.astype(np.float64)
    y64 = loss.prepare_targets(np.asarray(y, np.float64), p)
    per_layer: list[list[Array]] = []
    if fused:
        dZ_abs = loss.reduce_grad(FUSED_TERMS[loss.name](np.abs(y64), np.abs(p)), w)
        params, d_abs = SCALES[last.kind](last, None, dZ_abs)
    else:
        grad = loss.gradient(np.asarray(y, np.float64), p, sample_weight)
        last.dA_magnitude = np.abs(grad)
        params, d_abs = SCALES[last.kind](last, np.abs(grad))
    per_layer.append(params)
    for layer in reversed(model.layers[:-1]):
        layer.dA_magnitude = d_abs
        params, d_abs = SCALES[layer.kind](layer, d_abs)
        per_layer.append(params)
    return Scales([m for params in reversed(per_layer) for m in params], d_abs, magnitude)


#: Activations whose derivative jumps at 0, and the size below which a pre-activation is rounding noise of its
#: terms (a few hundred ulps of float64): there the two sides may legitimately land on different sides of the kink.
KINKED = ("relu", "leaky_relu", "step")
KINK_ROUNDING = 1e-13


def near_kinks(model: Any, relative: float) -> dict[str, int]:
    """Per layer with a kinked activation, how many inputs have |Z| <= relative M_Z with M_Z > 0: inputs that an
    error of `relative` times their terms could put on either side of 0. Exact zeros from zero terms (a zero input
    row with zero bias) are not counted: both sides compute them exactly.

    Call after `forward_magnitudes` (or `gradient_scales`), which leaves each layer's `z_magnitude` beside it.
    """
    counts = {}
    for layer in model.layers:
        if getattr(layer, "activation", None) is None or layer.activation.name not in KINKED:
            continue
        z_mag = layer.z_magnitude
        counts[layer.name] = int(np.sum((np.abs(layer.Z.astype(np.float64)) <= relative * z_mag) & (z_mag > 0)))
    return counts


def rounding_at_kinks(model: Any) -> list[str]:
    """Layers whose kinked activation has an input that is rounding noise of its terms (|Z| <= KINK_ROUNDING M_Z):
    a mask there is decided by rounding, not by the formula."""
    return [name for name, count in near_kinks(model, KINK_ROUNDING).items() if count]
