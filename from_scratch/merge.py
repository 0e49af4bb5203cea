"""Merge layers: layers called on several tensors, as keras.layers.Add, Concatenate, ... (forward of a list, backward
returning one dL/dx per input).

Every merge is a sum of the vector-Jacobian products of one operation, so the gradient each input receives is
dL/dY pushed back through that operation alone; where an input also feeds other layers, the model adds the
contributions (from_scratch/graph.py). In the formulas below Y is the output, dY = dL/dY, X_1 ... X_n the inputs:

    Add          Y = X_1 + ... + X_n                    dX_i = dY
    Subtract     Y = X_1 - X_2                          dX_1 = dY,  dX_2 = -dY
    Multiply     Y = X_1 * ... * X_n                    dX_i = dY * prod_{j != i} X_j
    Average      Y = (X_1 + ... + X_n) / n              dX_i = dY / n
    Maximum      Y = max(X_1, ..., X_n)                 dX_i = dY where X_i is the one chosen, 0 elsewhere
    Minimum      Y = min(X_1, ..., X_n)                 (as Maximum)
    Concatenate  Y = [X_1 | ... | X_n] along an axis    dX_i = the slice of dY that X_i filled
    Dot          Y_b = X_b Y_b^T over the chosen axes   dX_b = dY_b Y_b,  dY_b = dY_b^T X_b (per sample b)

Keras's arithmetic, operation for operation: the n-ary merges fold left (((X_1 + X_2) + X_3) ...), Average divides
the folded sum by n, and Maximum and Minimum fold with TensorFlow's binary maximum/minimum, whose gradient sends a
tie to the first operand (`x >= y` picks x): a tie among inputs goes to the earliest of them, never to both.
Element-wise merges broadcast an axis of size 1 as Keras does; its gradient is summed over that axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from from_scratch.arch import LayerSpec
from from_scratch.errors import BadInputError
from from_scratch.graph_arch import MERGE_KINDS, merge_output_shape
from from_scratch.layers import LAYERS, Layer, Shape

Array = np.ndarray


def _broadcast(kind: str, shapes: list[Shape], where: str) -> Shape:
    """The element-wise merges: shapes of one rank, equal or 1 on each axis (NumPy's and Keras's broadcasting)."""
    first = shapes[0]
    for other in shapes[1:]:
        if len(other) != len(first) or any(a != b and 1 not in (a, b) for a, b in zip(first, other)):
            raise BadInputError(
                f"{where}: {kind} takes tensors of one shape, got {first} and {other}"
                + ("" if len(other) == len(first) else " (of different ranks)")
            )
    return tuple(max(dims) for dims in zip(*shapes))


def _concatenate(options: dict, shapes: list[Shape], where: str) -> Shape:
    axis = _axis(options.get("axis", -1), len(shapes[0]), where)
    for other in shapes[1:]:
        if len(other) != len(shapes[0]) or any(a != b for i, (a, b) in enumerate(zip(shapes[0], other)) if i != axis):
            raise BadInputError(
                f"{where}: concatenate along axis {options.get('axis', -1)} takes tensors that agree on every other "
                f"axis, got {shapes[0]} and {other}"
            )
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out)


def _axis(axis: int, rank: int, where: str) -> int:
    """A feature axis (without the batch axis) from Keras's axis counted with it: -1 is the last, 1 the first."""
    if not isinstance(axis, int) or isinstance(axis, bool) or axis == 0 or not -rank <= axis <= rank:
        raise BadInputError(
            f"{where}: axis {axis!r} is not a feature axis of inputs with {rank} axes beside the batch axis "
            f"(give -{rank}..-1 or 1..{rank}; axis 0 is the batch)"
        )
    return axis - 1 if axis > 0 else rank + axis


def dot_axes(options: dict, shapes: list[Shape], where: str) -> tuple[int, int]:
    """Dot's contraction axes counted with the batch axis, (a0, a1), for inputs of `shapes` (without it)."""
    axes = options.get("axes", -1)
    pair = (axes, axes) if isinstance(axes, int) else tuple(axes)
    if len(pair) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in pair):
        raise BadInputError(f"{where}: dot axes must be an int or a pair of ints, got {axes!r}")
    out = []
    for a, shape in zip(pair, shapes):
        rank = len(shape) + 1
        full = a % rank if a < 0 else a
        if full == 0 or full >= rank:
            raise BadInputError(f"{where}: dot axis {a} is not a feature axis of an input of shape {shape}")
        out.append(full)
    return out[0], out[1]


def _dot(options: dict, shapes: list[Shape], where: str) -> Shape:
    if len(shapes) != 2:
        raise BadInputError(f"{where}: dot takes exactly 2 tensors, got {len(shapes)}")
    if any(len(s) not in (1, 2) for s in shapes):
        raise BadInputError(f"{where}: dot takes vectors (D,) or sequences (T, D), got {shapes[0]} and {shapes[1]}")
    a0, a1 = dot_axes(options, shapes, where)
    x, y = shapes
    if x[a0 - 1] != y[a1 - 1]:
        raise BadInputError(
            f"{where}: dot over axes ({a0}, {a1}) of {x} and {y}: {x[a0 - 1]} values against {y[a1 - 1]}"
        )
    rest = [d for i, d in enumerate(x) if i != a0 - 1] + [d for i, d in enumerate(y) if i != a1 - 1]
    return tuple(rest) if rest else (1,)


def _subtract(options: dict, shapes: list[Shape], where: str) -> Shape:
    if len(shapes) != 2:
        raise BadInputError(f"{where}: subtract takes exactly 2 tensors, got {len(shapes)}")
    return _broadcast("subtract", shapes, where)


def _unbroadcast(g: Array, shape: Shape) -> Array:
    """dL/dX for an input of `shape` (without the batch axis) broadcast to g's shape: g summed over the broadcast
    axes (g itself when nothing was broadcast)."""
    axes = tuple(i + 1 for i, (n, m) in enumerate(zip(shape, g.shape[1:])) if n == 1 and m != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


class Merge(Layer):
    """The protocol of a layer of several inputs: `build(input_shapes, dtype, rng)` with a list of shapes,
    `forward(xs, training)` of a list of arrays, `backward(dy)` returning a list with one dL/dx per input.
    No parameters."""

    several_inputs = True
    weight_names: tuple[str, ...] = ()
    trainable: tuple[bool, ...] = ()

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.kind

    def options(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Merge:
        return cls(**spec.options)

    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, None, "linear", self.options())

    def build(self, input_shapes: list[Shape], dtype: np.dtype, rng: np.random.Generator) -> Shape:
        self.input_shapes = [tuple(s) for s in input_shapes]
        self.dtype = np.dtype(dtype)
        return merge_output_shape(self.spec(), self.input_shapes, f"layer {self.name!r}")

    def backward(self, dy: Array) -> list[Array]:
        raise NotImplementedError

    @classmethod
    def output_shape(cls, options: dict, shapes: list[Shape], where: str) -> Shape:
        """The output shape for inputs of `shapes` (without the batch axis): the element-wise merges broadcast
        shapes of one rank (equal, or 1 on an axis); a mismatch is refused, naming `where` and both shapes."""
        return _broadcast(cls.kind, shapes, where)


class Add(Merge):
    """Y = X_1 + ... + X_n (folded left);  dX_i = dY."""

    kind = "add"

    def forward(self, xs: list[Array], training: bool = False) -> Array:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    def backward(self, dy: Array) -> list[Array]:
        return [_unbroadcast(dy, s) for s in self.input_shapes]

    def forward_terms(self, x_terms: list[Array]) -> dict[str, Array]:
        out = x_terms[0]
        for m in x_terms[1:]:
            out = out + m
        return {"A": out}

    def backward_terms(self, x_terms: list[Array], dA_terms: Array) -> tuple[list[Array], list[Array], dict]:
        return [], [_unbroadcast(dA_terms, s) for s in self.input_shapes], {}


class Subtract(Merge):
    """Y = X_1 - X_2;  dX_1 = dY, dX_2 = -dY."""

    kind = "subtract"

    @classmethod
    def output_shape(cls, options: dict, shapes: list[Shape], where: str) -> Shape:
        return _subtract(options, shapes, where)

    def forward(self, xs: list[Array], training: bool = False) -> Array:
        return xs[0] - xs[1]

    def backward(self, dy: Array) -> list[Array]:
        return [_unbroadcast(dy, self.input_shapes[0]), _unbroadcast(-dy, self.input_shapes[1])]

    def forward_terms(self, x_terms: list[Array]) -> dict[str, Array]:
        return {"A": x_terms[0] + x_terms[1]}

    def backward_terms(self, x_terms: list[Array], dA_terms: Array) -> tuple[list[Array], list[Array], dict]:
        return [], [_unbroadcast(dA_terms, s) for s in self.input_shapes], {}


class Multiply(Merge):
    """Y = X_1 * ... * X_n (folded left: P_k = P_{k-1} * X_k);  back through the fold, as the tape goes:
    G_n = dY, dX_k = G_k * P_{k-1}, G_{k-1} = G_k * X_k, dX_1 = G_1."""

    kind = "multiply"

    def forward(self, xs: list[Array], training: bool = False) -> Array:
        self.X = list(xs)
        self.partial = [xs[0]]
        for x in xs[1:]:
            self.partial.append(self.partial[-1] * x)
        return self.partial[-1]

    def backward(self, dy: Array) -> list[Array]:
        g, out = dy, [None] * len(self.X)
        for k in range(len(self.X) - 1, 0, -1):
            out[k] = _unbroadcast(g * self.partial[k - 1], self.input_shapes[k])
            g = g * self.X[k]
        out[0] = _unbroadcast(g, self.input_shapes[0])
        return out

    def forward_terms(self, x_terms: list[Array]) -> dict[str, Array]:
        """M_Y = |Y| + sum_i M_i prod_{j != i} |X_j|: each input's error scaled by the others."""
        xs = [np.abs(x.astype(np.float64)) for x in self.X]
        total = np.abs(self.partial[-1].astype(np.float64))
        for i, m in enumerate(x_terms):
            others = np.ones_like(total)
            for j, x in enumerate(xs):
                if j != i:
                    others = others * x
            total = total + m * others
        return {"A": total}

    def backward_terms(self, x_terms: list[Array], dA_terms: Array) -> tuple[list[Array], list[Array], dict]:
        xs = [np.abs(x.astype(np.float64)) for x in self.X]
        out = []
        for i, shape in enumerate(self.input_shapes):
            g = dA_terms
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            out.append(_unbroadcast(g, shape))
        return [], out, {}


class Average(Merge):
    """Y = (X_1 + ... + X_n) / n (the folded sum divided, as Keras);  dX_i = dY / n."""

    kind = "average"

    def forward(self, xs: list[Array], training: bool = False) -> Array:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        self.n = out.dtype.type(len(xs))
        return out / self.n

    def backward(self, dy: Array) -> list[Array]:
        g = dy / self.n
        return [_unbroadcast(g, s) for s in self.input_shapes]

    def forward_terms(self, x_terms: list[Array]) -> dict[str, Array]:
        return {"A": sum(x_terms[1:], x_terms[0]) / len(x_terms)}

    def backward_terms(self, x_terms: list[Array], dA_terms: Array) -> tuple[list[Array], list[Array], dict]:
        return [], [_unbroadcast(dA_terms / len(self.input_shapes), s) for s in self.input_shapes], {}


class Maximum(Merge):
    """Y = max(X_1, ..., X_n), folded left with the binary maximum R_k = max(R_{k-1}, X_k). Back through the fold as
    TensorFlow routes a binary maximum's gradient (the first operand where R_{k-1} >= X_k, ties included):
    G_n = dY, dX_k = G_k where R_{k-1} < X_k, G_{k-1} = G_k where R_{k-1} >= X_k, dX_1 = G_1. A tie goes to the earliest
    input only."""

    kind = "maximum"
    _pick = staticmethod(np.maximum)
    _keep_first = staticmethod(np.greater_equal)

    def forward(self, xs: list[Array], training: bool = False) -> Array:
        self.X = list(xs)
        self.running = [xs[0]]
        for x in xs[1:]:
            self.running.append(self._pick(self.running[-1], x))
        return self.running[-1]

    def backward(self, dy: Array) -> list[Array]:
        g, out = dy, [None] * len(self.X)
        zero = dy.dtype.type(0)
        for k in range(len(self.X) - 1, 0, -1):
            first = self._keep_first(self.running[k - 1], self.X[k])
            out[k] = _unbroadcast(np.where(first, zero, g), self.input_shapes[k])
            g = np.where(first, g, zero)
        out[0] = _unbroadcast(g, self.input_shapes[0])
        return out

    def forward_terms(self, x_terms: list[Array]) -> dict[str, Array]:
        """The chosen input's terms, bounded by the largest of them."""
        out = x_terms[0]
        for m in x_terms[1:]:
            out = np.maximum(out, m)
        return {"A": out}

    def backward_terms(self, x_terms: list[Array], dA_terms: Array) -> tuple[list[Array], list[Array], dict]:
        return [], [_unbroadcast(dA_terms, s) for s in self.input_shapes], {}


class Minimum(Maximum):
    """Y = min(X_1, ..., X_n), as Maximum with the binary minimum (the first operand where R_{k-1} <= X_k)."""

    kind = "minimum"
    _pick = staticmethod(np.minimum)
    _keep_first = staticmethod(np.less_equal)


class Concatenate(Merge):
    """Y = [X_1 | ... | X_n] along `axis` (Keras counts the batch as axis 0; -1 is the last);  dX_i = the slice of
    dY at X_i's offsets."""

    kind = "concatenate"

    def __init__(self, axis: int = -1, name: str | None = None) -> None:
        super().__init__(name)
        self.axis = axis

    def options(self) -> dict[str, Any]:
        return {"axis": self.axis}

    @classmethod
    def output_shape(cls, options: dict, shapes: list[Shape], where: str) -> Shape:
        return _concatenate(options, shapes, where)

    def build(self, input_shapes: list[Shape], dtype: np.dtype, rng: np.random.Generator) -> Shape:
        out = super().build(input_shapes, dtype, rng)
        self.feature_axis = _axis(self.axis, len(out), f"layer {self.name!r}")
        self.offsets = np.cumsum([s[self.feature_axis] for s in self.input_shapes])[:-1]
        return out

    def forward(self, xs: list[Array], training: bool = False) -> Array:
        return np.concatenate(xs, axis=self.feature_axis + 1)

    def backward(self, dy: Array) -> list[Array]:
        return np.split(dy, self.offsets, axis=self.feature_axis + 1)

    def forward_terms(self, x_terms: list[Array]) -> dict[str, Array]:
        return {"A": np.concatenate(x_terms, axis=self.feature_axis + 1)}

    def backward_terms(self, x_terms: list[Array], dA_terms: Array) -> tuple[list[Array], list[Array], dict]:
        return [], np.split(dA_terms, self.offsets, axis=self.feature_axis + 1), {}


class Dot(Merge):
    """The batch-wise dot product of two inputs over `axes` (keras.layers.Dot, normalize=False), through Keras's
    batch_dot: X moved so that its axis a0 is last (a vector (D,) becomes (1, D)), Y so that its axis a1 comes first
    after the batch (a vector becomes (D, 1)), then per sample R_b = X_b @ Y_b, and the axes added for vectors
    dropped: two vectors (N, D), (N, D) give (N, 1), sequences (N, T, D), (N, S, D) over axes (2, 2) give (N, T, S).
    Backward per sample: dX_b = dR_b @ Y_b^T, dY_b = X_b^T @ dR_b, moved back to the inputs' layouts."""

    kind = "dot"

    def __init__(self, axes: int | tuple[int, int] = -1, name: str | None = None) -> None:
        super().__init__(name)
        self.axes = axes if isinstance(axes, int) else tuple(axes)

    def options(self) -> dict[str, Any]:
        return {"axes": self.axes}

    @classmethod
    def output_shape(cls, options: dict, shapes: list[Shape], where: str) -> Shape:
        return _dot(options, shapes, where)

    def build(self, input_shapes: list[Shape], dtype: np.dtype, rng: np.random.Generator) -> Shape:
        out = super().build(input_shapes, dtype, rng)
        self.a0, self.a1 = dot_axes(self.options(), self.input_shapes, f"layer {self.name!r}")
        return out

    def _operands(self, x: Array, y: Array) -> tuple[Array, Array]:
        """X with its contraction axis last (N, T, D), Y with its contraction axis second (N, D, S)."""
        x3 = x[:, None, :] if x.ndim == 2 else (x if self.a0 == 2 else np.swapaxes(x, 1, 2))
        y3 = y[:, :, None] if y.ndim == 2 else (y if self.a1 == 1 else np.swapaxes(y, 1, 2))
        return x3, y3

    def forward(self, xs: list[Array], training: bool = False) -> Array:
        x, y = xs
        self.X, self.Y = x, y
        x3, y3 = self._operands(x, y)
        r = np.matmul(x3, y3)
        self.r_shape = r.shape
        if x.ndim == 2:
            return r[:, 0, :]  # (N, S), or (N, 1) for two vectors
        if y.ndim == 2:
            return r[:, :, 0]
        return r

    def _unsqueezed(self, dy: Array) -> Array:
        return dy.reshape(self.r_shape)

    def backward(self, dy: Array) -> list[Array]:
        x3, y3 = self._operands(self.X, self.Y)
        dr = self._unsqueezed(dy)
        dx3 = np.matmul(dr, np.swapaxes(y3, 1, 2))
        dy3 = np.matmul(np.swapaxes(x3, 1, 2), dr)
        return [self._back_x(dx3), self._back_y(dy3)]

    def _back_x(self, dx3: Array) -> Array:
        if self.X.ndim == 2:
            return dx3[:, 0, :]
        return dx3 if self.a0 == 2 else np.swapaxes(dx3, 1, 2)

    def _back_y(self, dy3: Array) -> Array:
        if self.Y.ndim == 2:
            return dy3[:, :, 0]
        return dy3 if self.a1 == 1 else np.swapaxes(dy3, 1, 2)

    def forward_terms(self, x_terms: list[Array]) -> dict[str, Array]:
        """M_R = M_X |Y| + |X| M_Y over the contraction (both factors' errors carried)."""
        ax, ay = np.abs(self.X.astype(np.float64)), np.abs(self.Y.astype(np.float64))
        mx3, ay3 = self._operands(x_terms[0], ay)
        ax3, my3 = self._operands(ax, x_terms[1])
        m = np.matmul(mx3, ay3) + np.matmul(ax3, my3)
        return {"A": m.reshape((m.shape[0], *self._output_shape()))}

    def _output_shape(self) -> Shape:
        return merge_output_shape(self.spec(), self.input_shapes, f"layer {self.name!r}")

    def backward_terms(self, x_terms: list[Array], dA_terms: Array) -> tuple[list[Array], list[Array], dict]:
        ax, ay = np.abs(self.X.astype(np.float64)), np.abs(self.Y.astype(np.float64))
        x3, y3 = self._operands(ax, ay)
        dr = dA_terms.reshape(self.r_shape)
        return (
            [],
            [self._back_x(np.matmul(dr, np.swapaxes(y3, 1, 2))), self._back_y(np.matmul(np.swapaxes(x3, 1, 2), dr))],
            {},
        )


#: The merge layers by kind; registered in from_scratch.layers.LAYERS as the convolutional layers are.
MERGE_LAYERS: dict[str, type[Layer]] = {
    cls.kind: cls for cls in (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot)
}
LAYERS.update(MERGE_LAYERS)
MERGE_KINDS.update({kind: cls.output_shape for kind, cls in MERGE_LAYERS.items()})
