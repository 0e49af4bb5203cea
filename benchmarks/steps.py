"""The timed work: synthetic batches, the scratch and Keras steps, their FLOP counts, and bare matmuls (the step's
own, and the 1024x1024 GEMM whose throughput is the yardstick)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.config import LOSS, LR
from from_scratch import Sequential
from from_scratch.arch import Architecture

GEMM_SIZE = 1024
GEMM_FLOPS = 2 * GEMM_SIZE**3


# ----- the scratch network ---------------------------------------------------------------------------------------
def make_batch(n: int, input_dim: int, classes: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic batch: X ~ N(0, 1) (n, input_dim) and one-hot Y (n, classes)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, input_dim)).astype(dtype)
    y = np.eye(classes, dtype=dtype)[rng.integers(0, classes, n)]
    return x, y


def scratch_setup(arch: str, dtype: str, n: int) -> tuple[Sequential, np.ndarray, np.ndarray]:
    """A scratch model (seed 0) and a batch of n samples for it."""
    model = Sequential.from_architecture(Architecture.parse(arch), dtype=dtype, seed=0)
    x, y = make_batch(n, model.input_dim, model.output_dim, dtype)
    return model, x, y


def dense_shapes(model: Sequential) -> list[tuple[int, int]]:
    """(D, M) of every Dense kernel in `model`."""
    return [tuple(layer.W.shape) for layer in model.layers if getattr(layer, "W", None) is not None]


def first_layer_dx_computed(model: Sequential, x: np.ndarray, y: np.ndarray) -> bool:
    """Whether `loss_and_gradients` computes the first layer's dX = dZ @ W.T (dL/dX of the input), observed by
    wrapping that layer's `backward_from_z` for one call and looking at what it returned."""
    first = model.layers[0]
    original = getattr(first, "backward_from_z", None)
    if original is None:
        return True  # not a Dense layer: assume the worst case, every dX computed
    returned: list[bool] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        returned.append(out is not None)
        return out

    first.backward_from_z = spy  # an instance attribute shadows the method for this one call
    try:
        model.loss_and_gradients(x, y, LOSS)
    finally:
        del first.backward_from_z
    return bool(returned and returned[-1])


def step_flops(shapes: Sequence[tuple[int, int]], n: int, first_dx: bool) -> int:
    """Matmul FLOPs of one forward + backward pass. Per Dense layer (D, M): forward Z = X W, 2NDM; backward
    dW = X^T dZ, 2NDM, and dX = dZ W^T, 2NDM (for the first layer only when `first_dx`). Element-wise work (bias,
    activations, softmax, loss, bias gradients) is O(NM), not O(NDM), and is not counted."""
    return sum(2 * n * d * m * (3 if (i > 0 or first_dx) else 2) for i, (d, m) in enumerate(shapes))


def scratch_step(model: Sequential, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
    """The scratch gradient step: forward + backward, the loss and every gradient."""
    return lambda: model.loss_and_gradients(x, y, LOSS)


def scratch_train_step(model: Sequential, x: np.ndarray, y: np.ndarray, lr: float = LR) -> Callable[[], Any]:
    """The scratch train step: the gradient step, then plain SGD w -= lr * g in place on every parameter."""
    params = [p for layer in model.layers for p in layer.params]
    lr_t = model.dtype.type(lr)

    def step() -> float:
        loss, grads = model.loss_and_gradients(x, y, LOSS)
        for p, g in zip(params, grads):
            p -= lr_t * g
        return loss

    return step


# ----- bare matmuls ----------------------------------------------------------------------------------------------
def matmuls_only(shapes: Sequence[tuple[int, int]], n: int, dtype: str, first_dx: bool) -> Callable[[], None]:
    """Only the matmuls of one scratch step, same shapes and memory layouts (X @ W, X.T @ dZ, dZ @ W.T): what the
    step would cost if its element-wise work were free."""
    rng = np.random.default_rng(1)
    operands = []
    for i, (d, m) in enumerate(shapes):
        x, w, dz = (rng.standard_normal(s).astype(dtype) for s in ((n, d), (d, m), (n, m)))
        operands.append((x, w, dz, i > 0 or first_dx))

    def run() -> None:
        for x, w, dz, dx in operands:
            x @ w
            x.T @ dz
            if dx:
                dz @ w.T

    return run


def gemm_call(dtype: str) -> Callable[[], Any]:
    """One GEMM_SIZE x GEMM_SIZE by GEMM_SIZE x GEMM_SIZE NumPy matmul in `dtype` (GEMM_FLOPS FLOPs)."""
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((GEMM_SIZE, GEMM_SIZE)).astype(dtype) for _ in range(2))
    out = np.empty((GEMM_SIZE, GEMM_SIZE), dtype=dtype)
    return lambda: np.matmul(a, b, out=out)


# ----- the Keras twin --------------------------------------------------------------------------------------------
def keras_steps(model: Sequential, x: np.ndarray, y: np.ndarray, lr: float = LR) -> dict[str, Any]:
    """The Keras twin of `model` (its weights copied in) with tf.function-compiled gradient and train steps.

    Returns "grad_step" and "train_step" closures over constant input tensors, and "first": the first gradient
    step's (loss, grads) in NumPy, for the sanity check. Imports keras_impl, hence TensorFlow, on first use.
    """
    import keras_impl  # first: it pins TF_ENABLE_ONEDNN_OPTS=0 before TensorFlow loads, as in the harness

    # isort: split
    import keras
    import tensorflow as tf

    dtype = str(model.dtype)
    km = keras_impl.build_model(model.architecture, dtype)
    km.set_weights(model.get_weights())
    loss_obj = keras.losses.CategoricalCrossentropy(dtype=dtype)
    variables = km.trainable_variables
    optimizer = keras.optimizers.SGD(learning_rate=lr)
    optimizer.build(variables)
    xt, yt = tf.constant(x, dtype=dtype), tf.constant(y, dtype=dtype)

    @tf.function
    def grad_step(xb: Any, yb: Any) -> Any:
        with tf.GradientTape() as tape:
            value = loss_obj(yb, km(xb, training=True))
        return value, tape.gradient(value, variables)

    @tf.function
    def train_step(xb: Any, yb: Any) -> Any:
        with tf.GradientTape() as tape:
            value = loss_obj(yb, km(xb, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        return value

    loss0, grads0 = grad_step(xt, yt)
    return {
        "grad_step": lambda: grad_step(xt, yt),
        "train_step": lambda: train_step(xt, yt),
        "first": (float(loss0), [np.asarray(g) for g in grads0]),
    }


def agreement(model: Sequential, x: np.ndarray, y: np.ndarray, keras_first: tuple[float, list[np.ndarray]]) -> float:
    """Largest norm-relative gradient difference between the two sides: both must time the same computation
    (float32 about 1e-7, float64 about 1e-16)."""
    _, grads = model.loss_and_gradients(x, y, LOSS)
    worst = 0.0
    for a, b in zip(grads, keras_first[1]):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        scale = max(np.linalg.norm(a64), np.linalg.norm(b64), 1e-300)
        worst = max(worst, float(np.linalg.norm(a64 - b64) / scale))
    return worst
