"""Data sets the harness feeds to both sides: seeded synthetic batches and scikit-learn's bundled digits.

Every loader returns (X (N, D), Y (N, K) one-hot) as float64 NumPy arrays; the harness casts to the model dtype.
The regression sets (REGRESSION_DATASETS) return real-valued targets Y (N, K) instead, and the sequence sets
(SHAPED_DATASETS, the adding problem) return each sample's T steps flattened row by row, X (N, T*F), with T read
from the architecture's input shape (as_inputs turns the rows back into (N, T, F)).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from from_scratch.arch import Architecture
from from_scratch.errors import BadInputError

Array = np.ndarray


def one_hot(labels: Array, classes: int) -> Array:
    """Integer labels (N,) -> one-hot rows (N, classes)."""
    return np.eye(classes)[labels]


def synthetic(input_dim: int, classes: int, n: int, seed: int) -> tuple[Array, Array]:
    """X ~ N(0, 1) of shape (n, input_dim), uniformly drawn classes, one-hot Y (n, classes); seeded."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, input_dim)), one_hot(rng.integers(0, classes, size=n), classes)


def targets(kind: str, n: int, k: int, rng: np.random.Generator) -> Array:
    """Targets of one kind for n samples and k outputs: one-hot (n, k), labels (n,), binary 0/1 (n, k), or
    regression values N(0, 1) (n, k)."""
    if kind == "onehot":
        return np.eye(k)[rng.integers(0, k, size=n)]
    if kind == "labels":
        return rng.integers(0, k, size=n).astype(np.float64)
    if kind == "binary":
        return rng.integers(0, 2, size=(n, k)).astype(np.float64)
    return rng.standard_normal((n, k))


def digits() -> tuple[Array, Array]:
    """scikit-learn's bundled 8x8 digits: X (1797, 64) scaled to [0, 1] (pixels / 16), one-hot Y (1797, 10)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise BadInputError(
            "--data digits needs scikit-learn, which is not installed; install it with "
            "pip install 'backprop-parity[data]' (or pip install scikit-learn)"
        ) from None
    bunch = load_digits()
    return bunch.data / 16.0, one_hot(bunch.target, 10)


def iris() -> tuple[Array, Array]:
    """scikit-learn's bundled iris: X (150, 4) standardised per feature, one-hot Y (150, 3)."""
    try:
        from sklearn.datasets import load_iris
    except ImportError:
        raise BadInputError(
            "--data iris needs scikit-learn, which is not installed; install it with "
            "pip install 'backprop-parity[data]' (or pip install scikit-learn)"
        ) from None
    bunch = load_iris()
    x = bunch.data
    return (x - x.mean(axis=0)) / x.std(axis=0), one_hot(bunch.target, 3)


def spirals(n: int = 300, classes: int = 3, seed: int = 0) -> tuple[Array, Array]:
    """CS231n's spirals: `classes` arms of n // classes points in 2-D with seeded noise; one-hot Y."""
    rng = np.random.default_rng(seed)
    per = n // classes
    x = np.zeros((per * classes, 2))
    labels = np.repeat(np.arange(classes), per)
    for k in range(classes):
        r = np.linspace(0.0, 1.0, per)
        t = np.linspace(k * 4, (k + 1) * 4, per) + rng.standard_normal(per) * 0.2
        x[k * per : (k + 1) * per] = np.c_[r * np.sin(t), r * np.cos(t)]
    return x, one_hot(labels, classes)


def xor() -> tuple[Array, Array]:
    """The four XOR points and their labels as one-hot over two classes."""
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return x, one_hot(np.array([0, 1, 1, 0]), 2)


def linear_regression(n: int = 64, seed: int = 0) -> tuple[Array, Array]:
    """The seed material's regression target t = x + 4 at seeded x ~ U(0, 10), with small seeded noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, size=(n, 1))
    return x, x + 4 + 0.1 * rng.standard_normal((n, 1))


#: The adding problem's number of samples (`train --data adding`).
ADDING_SAMPLES = 1000

#: The float arrays of n x T values the adding problem holds at once while it is built (np.float64 or int64
#: each): the values, the argsort's index array (its two first columns are kept as a view), the markers, the
#: stacked (n, T, 2) samples (two), and values x markers for the targets.
ADDING_COPIES = 6


def adding(timesteps: int = 10, n: int = ADDING_SAMPLES, seed: int = 0) -> tuple[Array, Array]:
    """The adding problem (Hochreiter and Schmidhuber's LSTM paper, 1997), a regression that needs memory: each
    sample is `timesteps` steps of 2 features, a value ~ U[0, 1) and a marker that is 1 at exactly two (distinct,
    seeded) steps and 0 elsewhere; the target is the sum of the two marked values, in [0, 2). A model that forgets
    the first marked value can do no better than guessing it as 0.5 (the MSE of always predicting the mean, 1,
    is 1/6). -> X (n, timesteps * 2) (step by step: value, marker), Y (n, 1)."""
    if timesteps < 2:
        raise BadInputError(f"--data adding needs at least 2 time steps (two marked values), got {timesteps}")
    check_memory(  # from T and n alone, before any array of n x T values exists
        f"--data adding with {timesteps} time steps", n, (timesteps, 0), copies=ADDING_COPIES, advice="use a smaller T"
    )
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(n, timesteps))
    marked = np.argsort(rng.random((n, timesteps)), axis=1)[:, :2]  # two distinct steps per sample
    markers = np.zeros((n, timesteps))
    np.put_along_axis(markers, marked, 1.0, axis=1)
    x = np.stack([values, markers], axis=-1)  # (n, T, 2)
    return x.reshape(n, -1), np.sum(values * markers, axis=1, keepdims=True)


def adding_for(input_shape: tuple[int, ...]) -> tuple[Array, Array]:
    """The adding problem fitted to an architecture's input shape, which must be (T, 2): T steps of 2 features."""
    if len(input_shape) != 2 or input_shape[1] != 2:
        shape = "x".join(map(str, input_shape))
        raise BadInputError(
            f"--data adding is a sequence of T steps of 2 features (value, marker), but the architecture's input "
            f"is {shape}: give Tx2, e.g. --arch 10x2-lstm8-1"
        )
    return adding(input_shape[0])


#: The marker task's default size: samples, steps per sequence and vocabulary (token 0 the marker, 1..9 the others).
MARKER_SAMPLES = 2048
MARKER_STEPS = 6
MARKER_VOCABULARY = 10


def marker(
    n: int = MARKER_SAMPLES, timesteps: int = MARKER_STEPS, vocabulary: int = MARKER_VOCABULARY, seed: int = 0
) -> tuple[Array, Array]:
    """A task that needs attention: find the token that follows the marker. Each sample is `timesteps` token
    indices: the marker (index 0) at a seeded step p in [0, T-2], and at the other T-1 steps distinct tokens drawn
    from 1..V-1; the label is the token at step p+1, one of V-1 classes (class c is token c+1). -> X (n, T) indices
    as floats, Y (n, V-1) one-hot.

    Why it needs attention: the answer is defined by where a token stands relative to the marker, not by which
    tokens occur. Every sample holds the marker and T-1 distinct tokens, the answer among them equally likely, so a
    model that sees the bag of tokens is right 1/(T-1) of the time at best. A Transformer encoder without its
    attention layers is additive over the steps: each step's vector depends on its own token and position only, and
    the pooled vector and the logits are sums over the steps; "the token after the marker" is not such a sum (the
    answer's step moves with the marker). Treating the tokens alike, such a model can only favour some steps over
    others: it is right when the answer stands at its favourite step, or when the marker does and the answer
    follows it, 2/(T-1) at best. With attention a step reads its predecessor and tells whether it follows the
    marker (tests/test_attention_training.py measures both).
    """
    if vocabulary < timesteps or timesteps < 2:
        raise BadInputError(
            f"the marker task needs at least 2 steps and a vocabulary of at least the number of steps (the marker "
            f"and T-1 distinct tokens), got {timesteps} steps and a vocabulary of {vocabulary}"
        )
    rng = np.random.default_rng(seed)
    tokens = np.argsort(rng.random((n, vocabulary - 1)), axis=1)[:, : timesteps - 1] + 1  # T-1 distinct, in 1..V-1
    at = rng.integers(0, timesteps - 1, size=n)  # the marker's step
    steps = np.arange(timesteps)[None, :]
    source = np.clip(np.where(steps < at[:, None], steps, steps - 1), 0, timesteps - 2)  # step -> token column
    x = np.where(steps == at[:, None], 0, np.take_along_axis(tokens, source, axis=1))
    labels = tokens[np.arange(n), at] - 1  # the token at step p+1 is tokens[p]
    return x.astype(np.float64), one_hot(labels, vocabulary - 1)


def marker_for(input_shape: tuple[int, ...]) -> tuple[Array, Array]:
    """The marker task fitted to an architecture's input shape, which must be (T,): T token indices, an Embedding's
    input, 2 <= T <= MARKER_VOCABULARY."""
    if len(input_shape) != 1 or not 2 <= input_shape[0] <= MARKER_VOCABULARY:
        shape = "x".join(map(str, input_shape))
        raise BadInputError(
            f"--data marker is a sequence of T token indices (2 <= T <= {MARKER_VOCABULARY}) read by an Embedding, "
            f"but the architecture's input is {shape}: give T, e.g. --arch {marker_arch(MARKER_STEPS)}"
        )
    return marker(timesteps=input_shape[0])


def marker_arch(timesteps: int) -> str:
    """A Transformer encoder for the marker task in the string form: Embedding, PositionEmbedding, one encoder block
    (self-attention and the feed-forward Dense on every step, each with its residual Add and LayerNormalization),
    GlobalAveragePooling1D, a softmax over the MARKER_VOCABULARY - 1 classes."""
    block = "add(mha4x4-dropout0.1 | id)-ln-add(32:relu-16:linear | id)-ln"
    return f"{timesteps}-embed{MARKER_VOCABULARY}x16-pos-{block}-gap1d-{MARKER_VOCABULARY - 1}"


IDX_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str) -> Array:
    """An MNIST-format IDX file: 2 zero bytes, a type byte, a dimension count, big-endian int32 sizes, data.

    Only a regular file is read, and only as many bytes as its header promises, after checking that promise
    against the file's size: a device such as /dev/zero, or a header that claims terabytes, is refused before
    anything large is read.
    """
    import os
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # before opening: opening a FIFO would wait for a writer
            raise BadInputError(f"IDX file {path!r} is not a regular file")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(4)
            if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
                raise BadInputError(f"{path!r} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
            dims = raw[3]
            sizes = f.read(4 * dims)
            if len(sizes) < 4 * dims:
                raise BadInputError(f"IDX file {path!r} is truncated in its header ({4 + len(sizes)} bytes)")
            shape = tuple(int.from_bytes(sizes[4 * i : 4 + 4 * i], "big") for i in range(dims))
            dtype = np.dtype(IDX_TYPES[raw[2]])
            expected = 4 + 4 * dims + int(np.prod(shape, dtype=object)) * dtype.itemsize
            if size != expected:
                raise BadInputError(
                    f"IDX file {path!r} is truncated or padded: {size} bytes, expected {expected} for shape {shape}"
                )
            data = f.read(expected - 4 - 4 * dims)
    except OSError as exc:
        raise BadInputError(f"cannot read IDX file {path!r}: {exc.strerror or exc}") from None
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def idx(images: str, labels: str) -> tuple[Array, Array]:
    """MNIST-format images (N, H, W) and labels (N,) from user files: X (N, H*W) / 255, one-hot Y."""
    x, y = _idx_samples(images, labels)
    return x.reshape(len(x), -1), y


def _idx_samples(images: str, labels: str) -> tuple[Array, Array]:
    """idx() with each sample in the file's own shape: X (N, H, W) / 255 (for images), one-hot Y."""
    x, t = read_idx(images), read_idx(labels)
    if x.ndim < 2 or len(x) == 0:
        raise BadInputError(f"IDX images {images!r} have shape {x.shape}: expected (N, ...) with N >= 1 samples")
    if t.ndim != 1 or len(t) != len(x):
        raise BadInputError(f"IDX labels have shape {t.shape}, expected ({len(x)},) to match the images")
    bad = np.flatnonzero(~np.isfinite(t) | (t < 0) | (t != np.round(t)))
    if bad.size:  # a class index is a whole number >= 0: -1 must not train as the last class, 2.5 not as 2
        i = int(bad[0])
        raise BadInputError(
            f"IDX labels {labels!r}: label {t[i].item()!r} at position {i} of the file is not a class index "
            "(a whole number >= 0)"
        )
    classes = int(t.max()) + 1
    check_memory(f"IDX labels {labels!r} (largest class {classes - 1})", len(t), [classes])  # the one-hot rows
    return x.astype(np.float64) / 255.0, one_hot(t.astype(np.int64), classes)


#: Whole data sets for training, by name: () -> (X, Y). `idx:IMAGES,LABELS` reads user files.
DATASETS = {
    "digits": digits,
    "iris": iris,
    "spirals": spirals,
    "xor": xor,
    "regression": linear_regression,
    "adding": adding,
    "marker": marker,
}

#: The data sets whose samples take their shape from the architecture: name -> loader(input_shape) -> (X, Y).
SHAPED_DATASETS: dict[str, Callable[[tuple[int, ...]], tuple[Array, Array]]] = {
    "adding": adding_for,
    "marker": marker_for,
}

#: An architecture that fits each of SHAPED_DATASETS, for a hint: (its steps T, its outputs) -> the string form.
SHAPED_HINTS: dict[str, Callable[[int, int], str]] = {
    "adding": lambda steps, outputs: f"{steps}x2-lstm16-{outputs}",
    "marker": lambda steps, outputs: marker_arch(steps),
}

#: How many samples each of SHAPED_DATASETS holds: a run's memory is estimated from it before the set is built.
SHAPED_SAMPLES: dict[str, int] = {"adding": ADDING_SAMPLES, "marker": MARKER_SAMPLES}

#: The data sets with real-valued targets: `train` picks mean_squared_error for them (other sets: cross-entropy).
REGRESSION_DATASETS = frozenset({"regression", "adding"})


def load_dataset(name: str, input_shape: tuple[int, ...] | None = None) -> tuple[Array, Array]:
    """A whole data set by name, or `idx:IMAGES_PATH,LABELS_PATH` for MNIST-format files: X (N, D), Y (N, K).

    With `input_shape` (the architecture's input, without the batch axis) the set is fitted to it: a set of
    SHAPED_DATASETS is built for it (the adding problem: T steps from (T, 2); the marker task: T tokens from (T,)),
    and any other set is refused when
    `input_shape` holds as many values as a sample but would rearrange them (check_layout: digits as 4x4x4)."""
    if input_shape is not None and name in SHAPED_DATASETS:
        return SHAPED_DATASETS[name](tuple(input_shape))
    if name.startswith("idx:"):
        paths = name[len("idx:") :].split(",")
        if len(paths) != 2:
            raise BadInputError(f"--data {name!r}: expected idx:IMAGES_PATH,LABELS_PATH")
        x, y = _idx_samples(*paths)
        if input_shape is not None:
            check_layout(name, input_shape, x.shape[1:])
        return x.reshape(len(x), -1), y
    if name not in DATASETS:
        raise BadInputError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}, idx:IMAGES,LABELS")
    if input_shape is not None:
        check_layout(name, input_shape)
    return DATASETS[name]()


def _check_fits(name: str, x: Array, y: Array, input_dim: int, classes: int) -> None:
    if x.shape[1] != input_dim or y.shape[1] != classes:
        raise BadInputError(
            f"--data {name} has {x.shape[1]} features and {y.shape[1]} classes, but the architecture expects "
            f"{input_dim} inputs and {classes} outputs (try --arch {x.shape[1]}-32-{y.shape[1]})"
        )


def _digits_batch(input_dim: int, classes: int, n: int, seed: int) -> tuple[Array, Array]:
    x, y = digits()
    _check_fits("digits", x, y, input_dim, classes)
    rows = np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False)
    return x[rows], y[rows]


#: name -> loader(input_dim, classes, n, seed) -> (X, Y): one batch of n samples.
BATCHES: dict[str, Callable[[int, int, int, int], tuple[Array, Array]]] = {
    "synthetic": synthetic,
    "digits": _digits_batch,
}


def load_batch(
    name: str, input_dim: int, classes: int, n: int, seed: int, input_shape: tuple[int, ...] | None = None
) -> tuple[Array, Array]:
    """One batch of `n` samples from data set `name`, fitted to the architecture's input and output widths: X (n, D),
    Y (n, K). With `input_shape` (the architecture's input without the batch axis) a layout that would rearrange
    a sample's values is refused (check_layout), before anything is loaded."""
    if name not in BATCHES:
        raise BadInputError(f"unknown data set {name!r}; known: {', '.join(BATCHES)}")
    if n <= 0:
        raise BadInputError(f"batch size must be a positive integer, got {n}")
    if input_shape is not None:
        check_layout(name, input_shape)
    return BATCHES[name](input_dim, classes, n, seed)


def indices(vocabulary: int, shape: tuple[int, ...], n: int, seed: int) -> Array:
    """n seeded index sequences (n, *shape) of integers in [0, vocabulary), as floats (the model's dtype carries
    them; Keras's Embedding casts them to int32): the synthetic batch of a network that starts with an Embedding."""
    return np.random.default_rng(seed).integers(0, vocabulary, size=(n, *shape)).astype(np.float64)


def as_inputs(
    x: Array, input_shape: tuple[int, ...], data: str | None = None, sample_shape: tuple[int, ...] | None = None
) -> Array:
    """A batch of flat rows (N, D) as the model's inputs (N, *input_shape): digits' 64 pixels, row by row, are the
    8x8x1 image (channels last), or as 8x8 the sequence of its 8 rows (8 steps of 8 features).

    With `data` (the data set's name) the layout is checked first (check_layout): a shape that would rearrange a
    sample's values, or that holds another number of values, is refused."""
    if data is not None:
        check_layout(data, input_shape, sample_shape)
        if math.prod(input_shape) != x.shape[1]:
            shape = "x".join(map(str, input_shape))
            raise BadInputError(
                f"--data {data} has {x.shape[1]} values per sample; an input of {shape} takes {math.prod(input_shape)}"
            )
    return x.reshape(len(x), *input_shape)


#: Each fixed data set's samples in their own shape: (D,) features, (H, W) one-channel images (digits: 8x8
#: pixels), (H, W, C) images. The shapes an architecture may read them in follow from it (layouts). Sets without an
#: entry take any shape: the synthetic batch has no layout to keep, and SHAPED_DATASETS are built for the shape.
SAMPLE_SHAPES: dict[str, tuple[int, ...]] = {
    "digits": (8, 8),
    "iris": (4,),
    "spirals": (2,),
    "xor": (2,),
    "regression": (1,),
}


def layouts(sample_shape: tuple[int, ...]) -> dict[tuple[int, ...], str]:
    """The input shapes that keep the meaning of a sample of `sample_shape`, each with what it reads.

    Features (D,): only (D,) (features are no time steps and no pixels). An image (H, W) or (H, W, C): its H W C
    values as features (row by row, channels last: what a Dense network reads), the image (H, W, C) (for one
    channel (H, W, 1)), and for one channel the sequence of its H rows of W pixels, read top to bottom (H, W). Any
    other shape with as many values (4x4x4 or 4x16 for digits) would rearrange the pixels: each value would stand
    where another belongs."""
    sample = tuple(sample_shape)
    if len(sample) < 2:
        return {sample: f"{math.prod(sample)} features"}
    flat = math.prod(sample)
    image = sample if len(sample) >= 3 else (*sample, 1)
    out = {
        (flat,): f"{flat} features (the values row by row)",
        image: f"{'x'.join(map(str, image))} images",
    }
    if len(sample) == 2 or (len(sample) == 3 and sample[2] == 1):
        h, w = sample[:2]
        out[(h, w)] = f"{h}x{w} sequences ({h} rows of {w}, read top to bottom)"
    return out


def check_layout(name: str, input_shape: tuple[int, ...], sample_shape: tuple[int, ...] | None = None) -> None:
    """Refuse an input shape that holds as many values as a sample of data set `name` but is not one of its layouts
    (digits as 4x4x4 or 4x16: the pixels rearranged), saying which shapes are accepted. `sample_shape` is the
    sample's own shape (SAMPLE_SHAPES by default; an IDX file's from its header). A shape with another number of
    values is left to the callers' width checks, which name both widths."""
    sample = SAMPLE_SHAPES.get(name) if sample_shape is None else tuple(sample_shape)
    shape = tuple(input_shape)
    if sample is None or math.prod(shape) != math.prod(sample):
        return
    accepted = layouts(sample)
    if shape in accepted:
        return
    readings = list(accepted.values())
    readings = ", ".join(readings[:-1]) + " or " + readings[-1] if len(readings) > 1 else readings[0]
    shapes = " or ".join("x".join(map(str, s)) for s in accepted)
    raise BadInputError(
        f"--data {name} keeps its meaning only as {readings}; the architecture's input {'x'.join(map(str, shape))} "
        f"would rearrange its values: start the architecture with {shapes}"
    )


#: How many float arrays of a batch's activations one comparison may hold at once, per layer width, as an estimate
#: on the safe side (not a measurement): both sides' Z, A, dA, dZ and their per-layer records (about 16), Keras's
#: pass and trace, and in float32 the float64 truth and the one-ulp sample (about 24 more).
COPIES_PER_WIDTH = 40


#: Likewise for the weights: scratch and Keras weights and gradients, the float64 truth's, the optimizer's slots.
COPIES_PER_WEIGHT = 12


def check_memory(
    what: str,
    n: int,
    sizes: list[int] | tuple[int, int],
    itemsize: int = 8,
    copies: int = COPIES_PER_WIDTH,
    advice: str = "use a smaller batch or network",
) -> None:
    """Refuse, before allocating, a run that would not fit in the memory available now: its activations
    (n samples x the values per sample x `copies`, COPIES_PER_WIDTH for a comparison) and its weights
    (x COPIES_PER_WEIGHT), times itemsize bytes, against the system's available memory.

    `sizes`: (values per sample, weights) as `Architecture.footprint()` gives them, or a list of Dense widths
    (values: their sum; weights: those between consecutive widths)."""
    if isinstance(sizes, tuple):
        values, weights = sizes
    else:
        values, weights = sum(sizes), sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    need = (n * values * copies + weights * COPIES_PER_WEIGHT) * itemsize
    available = available_memory()
    if available is not None and need > available:
        raise BadInputError(
            f"{what} needs about {need / 2**30:.1f} GiB ({n} samples x {values} values x {copies} copies, "
            f"{weights} weights x {COPIES_PER_WEIGHT}), but {available / 2**30:.1f} GiB are available; {advice}"
        )


#: A forward pass over the whole training set in one piece (each epoch's evaluation and the final predictions, on
#: both sides, in inference mode) holds every layer's output, im2col and per-step states for all N samples at once.
#: Measured: `train --data adding --arch 2000x2-rnn4-1 --batch 1000` (one step and one evaluation of 1000 samples x
#: 44005 values) peaked 0.9 GB above the interpreter, about 2.6 copies of float64 values; 8 is on the safe side.
WHOLE_SET_COPIES = 8

#: The per-step record a run keeps (loss on both sides, parameter differences): measured at 408 bytes as a Python
#: dict of 7 numbers, plus about 170 bytes as a JSON line; 1024 per step is on the safe side.
STEP_RECORD_BYTES = 1024


def check_training_memory(
    arch: str | Architecture,
    n: int,
    batch_size: int,
    epochs: int,
    what: str = "training",
    itemsize: int = 8,
    max_steps: int | None = None,
) -> None:
    """Refuse, before anything is built, a training run on `n` samples that would not fit in the memory available:
    one step on a batch of min(batch_size, n) (compare.data.check_memory, COPIES_PER_WIDTH copies), a forward pass
    over all n samples (WHOLE_SET_COPIES), and epochs x ceil(n / batch_size) step records (at most max_steps;
    STEP_RECORD_BYTES each), all estimated from the architecture's shapes (`Architecture.footprint`)."""
    if isinstance(arch, str):
        arch = Architecture.parse(arch)
    sizes = arch.footprint()
    check_memory(f"{what} (a step on a batch of {min(batch_size, n)})", min(batch_size, n), sizes, itemsize)
    check_memory(
        f"{what} (a pass over all {n} samples)",
        n,
        sizes,
        itemsize,
        copies=WHOLE_SET_COPIES,
        advice="use fewer samples or a smaller network",
    )
    per_epoch = -(-n // batch_size)
    steps = epochs * per_epoch if max_steps is None else min(epochs * per_epoch, max_steps)
    available = available_memory()
    if available is not None and steps * STEP_RECORD_BYTES > available:
        raise BadInputError(
            f"{what} ({epochs} epochs of {per_epoch} steps) keeps {steps} step records, about "
            f"{steps * STEP_RECORD_BYTES / 2**30:.1f} GiB ({STEP_RECORD_BYTES} bytes each), but "
            f"{available / 2**30:.1f} GiB are available; use fewer epochs or a larger batch"
        )


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
