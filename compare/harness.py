"""The comparison: the same weights and the same batch into both sides, every number checked.

`compare_models` takes a built scratch model and its Keras twin; `run_comparison` builds both from one
architecture description first. The result is a `Report`: one `Row` per compared quantity, the per-layer `Step`s
in the order of computation, and the diagnosis of the first one that differs.

Each side's pass is one `Side` record (loss, output, parameter gradients, dL/dX, the non-trainable weights after
the step, and per layer its recorded quantities). Every row and every step is generated from one list of
quantities (`quantities`) and judged by one rule (`judge`): in float64 against the other side, in float32 against
the float64 truth (Keras in float64 on the same weights and batch, upcast exactly), see compare/tolerances.py.

This module holds the comparison itself (`compare_models`, `run_comparison`, `build_pair`), the float32 gauge
(`jittered_side`) and the numerical witness (`gradcheck_row`); `Row`, `Report` and `MEASURES` are in
compare/report_rows.py, `Side` and each side's pass in compare/sides.py, `quantities`, `judge` and the rows they make
in compare/rows.py. `compare_models` calls each side's pass by its name in this module, where a test can replace it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

import keras_impl
from compare.data import as_inputs, check_memory, indices, load_batch, targets
from compare.diagnosis import INFERENCE_ROW, INFERENCE_STEP, diagnose  # noqa: F401 (INFERENCE_*: imported from here)
from compare.report_rows import MEASURES, Report, Row  # noqa: F401 (re-exported: they were defined here)
from compare.rows import (  # noqa: F401 (re-exported: they were defined here)
    Quantity,
    _each,
    _recorded,
    compare_sides,
    judge,
    protocol_rows,
    quantities,
    round_trip_row,
)
from compare.sides import (  # noqa: F401 (re-exported: they were defined here; compare_models calls them by these names)
    Side,
    keras_inference,
    keras_loss_arguments,
    keras_side,
    scratch_inference,
    scratch_side,
)
from compare.terms import gradient_terms
from compare.tolerances import (
    GRADCHECK_TOL,
    GRADCHECK_TOL_F32,
    max_abs_error,
    max_rel_error,
)
from from_scratch.arch import Architecture
from from_scratch.errors import BadInputError, check_count
from from_scratch.gradcheck import GradcheckPoint, arithmetic_precision, gradcheck
from from_scratch.graph import Model
from from_scratch.losses import Loss, OutputLosses, get_loss
from from_scratch.model import Sequential
from from_scratch.watch import Watch, watched
from keras_impl.model import astype as keras_astype
from keras_impl.model import twin_layers

Array = np.ndarray


def jittered_side(
    model: Any,
    x: Array,
    y: Array,
    loss: Loss,
    sample_weight: Array | None,
    weights: list[Array],
    seed: int,
    jitter_input: bool | list[bool] = True,
) -> Side:
    """Keras's float32 pass with every input and weight moved by one ulp in a random direction: a second sample of
    how far float32 rounding moves each quantity from the truth, conditioning included (at batch 2 a
    BatchNormalization turns a one-ulp difference in its input into a 1e-4 relative change of its dX, which a
    second run on the same values cannot show). Run from `weights`; the model is left as it was. Index inputs (an
    Embedding's, `jitter_input=False`, or a flag per input of several) are not moved: Keras's cast to int32 would
    turn 3 - ulp into index 2."""
    rng = np.random.default_rng(seed + 11)

    def jitter(a: Array) -> Array:
        a = np.asarray(a)
        towards = np.where(rng.random(a.shape) < 0.5, -np.inf, np.inf).astype(a.dtype)  # in a's own dtype
        return np.where(a == 0, a, np.nextafter(a, towards))  # an exact zero is no rounding: it stays

    state = model.get_weights()
    model.set_weights([jitter(w) for w in weights])
    try:
        if isinstance(x, list):  # several inputs: a flag per input (or one for all)
            flags = jitter_input if isinstance(jitter_input, (list, tuple)) else [jitter_input] * len(x)
            moved = [jitter(a) if flag else a for a, flag in zip(x, flags)]
        else:
            moved = jitter(x) if jitter_input else x
        return keras_side(model, moved, y, loss, sample_weight)
    finally:
        model.set_weights(state)


def gradcheck_row(
    model: Sequential,
    x: Array,
    y: Array,
    loss: Loss,
    keras_grads: list[Array],
    samples: int,
    seed: int,
    sample_weight: Array | None = None,
    keras_input_grad: Array | None = None,
) -> Row:
    """The third witness: central differences of the scratch loss in float64 on `samples` coordinates per
    parameter and `samples` coordinates of the input, against Keras's gradient there (Keras's float64 gradient in
    a float32 comparison).

    It needs no backward pass at all, so a wrong scratch backward shows in its scratch-vs-Keras row alone and
    a formula that both sides got wrong the same way shows here. In a float32 comparison the scratch model is
    taken in float64 with the same weights (upcasting float32 is exact). At a kink the witness holds Keras's value
    between the one-sided derivatives; points that differences cannot decide (`GradcheckPoint.decidable`) are counted
    in the row's name, not judged, and a row with nothing judged fails.

    Judged at the precision the loss is delivered in (`arithmetic_precision`): a layer that computes in float32
    inside carries float32 rounding into the float64 model, which float64's step (1e-5) would read as kinks and
    slopes off by 1e-2; its differences are taken with float32's step and noise allowance and held to
    GRADCHECK_TOL_F32, and the row says so. A loss noisier than float32 rounding explains cannot be judged: the row
    fails, saying why."""
    if model.dtype != np.float64:
        model = model.astype("float64")
        x, y = _as64(x), _as64(y)
        sample_weight = None if sample_weight is None else np.asarray(sample_weight, np.float64)
    with watched(model, Watch.casting()):
        moves = [not flag for flag in fixed_input_flags(model)]
        precision = arithmetic_precision(model, x, y, loss, sample_weight, seed, move_input=moves)
        if not precision.judgeable:
            inf = float("inf")
            return Row(f"numerical grad vs Keras ({precision.label})", (0,), inf, inf, inf, "max-rel", GRADCHECK_TOL)
        h, eps = precision.step, precision.eps
        points = gradcheck(
            model,
            x,
            y,
            loss,
            n_samples=samples,
            h=h,
            seed=seed,
            analytic=keras_grads,
            sample_weight=sample_weight,
            eps=eps,
        )
        if keras_input_grad is not None:
            rng = np.random.default_rng(seed + 1)
            f0 = model.loss_and_gradients(x, y, loss, sample_weight)[0]
            several = isinstance(x, list)
            xs = x if several else [x]
            for j, (xj, gj) in enumerate(zip(xs, keras_input_grad if several else [keras_input_grad])):
                if gj is None:  # indices: no derivative to take
                    continue
                for flat in rng.choice(xj.size, size=min(samples, xj.size), replace=False):
                    index = np.unravel_index(flat, xj.shape)

                    def f(value: Array, index: tuple = index, j: int = j) -> float:
                        trial = [a.copy() for a in xs]
                        trial[j][index] = value
                        return model.loss_and_gradients(trial if several else trial[0], y, loss, sample_weight)[0]

                    analytic_value = float(np.asarray(gj)[index])
                    point = GradcheckPoint.measure(
                        -1 - j, tuple(int(i) for i in index), analytic_value, f, xj[index], f0, h, eps
                    )
                    points.append(point)
    judged = [p for p in points if p.decidable]
    analytic = np.array([p.analytic for p in judged])
    numerical = np.array([p.witness for p in judged])
    kinks = sum(p.at_kink for p in points)
    undecidable = len(points) - len(judged)
    worst = max_abs_error(analytic, numerical) if judged else float("inf")  # nothing judged: no evidence, a FAIL
    rel = max_rel_error(analytic, numerical) if judged else float("inf")
    at_kinks = f", {kinks} at kinks" if kinks else ""
    unjudged = f", {undecidable} undecidable" if undecidable else ""
    arithmetic = f"{precision.label}, h = {h:.1e}" if precision.reduced else "float64"
    return Row(
        f"numerical grad vs Keras ({len(points)} coords{at_kinks}{unjudged}, {arithmetic})",
        (len(points),),
        worst,
        rel,
        rel,
        "max-rel",
        GRADCHECK_TOL_F32 if precision.reduced else GRADCHECK_TOL,
    )


def _finite(a: Any) -> bool:
    """Every entry finite (of an array, or of each array of a list)."""
    return all(np.all(np.isfinite(v)) for v in a) if isinstance(a, list) else bool(np.all(np.isfinite(a)))


def _as64(a: Any) -> Any:
    """An array (or each array of a list: several inputs or outputs) in float64 (exact from float32)."""
    return [np.asarray(v, np.float64) for v in a] if isinstance(a, list) else np.asarray(a, np.float64)


def share_dropout_masks(scratch: Model, keras_model: Any, n: int) -> None:
    """Draw each non-deterministic layer's mask once (scratch generator) and fix the same mask on both sides."""
    shapes = {
        id(node.layer): shape for node, shape in zip(reversed(scratch.nodes), reversed(scratch.node_input_shapes))
    }
    for ours, theirs in zip(scratch.layers, twin_layers(keras_model)):
        if not ours.deterministic:
            sized = getattr(ours, "dropout_mask_shape", None)  # attention drops (B, heads, T, S) probabilities
            mask = ours.draw_mask(sized(n) if callable(sized) else (n, *shapes[id(ours)]))
            ours.fix_mask(mask)
            theirs.mask = mask


def compare_models(
    scratch: Sequential,
    keras_model: Any,
    x: Array,
    y: Array,
    loss: str | Loss = "categorical_crossentropy",
    sample_weight: Array | None = None,
    gradcheck_samples: int = 8,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    loss_weights: list[float] | None = None,
) -> Report:
    """Copy the scratch weights into Keras, check the round trip, run one batch through both and compare
    loss, output, every parameter gradient, the input gradient and every per-node quantity; then the
    numerical-gradient witness. A model of several outputs takes `loss` as one loss for every output or a list
    with one per output (or an OutputLosses), weighted by `loss_weights` as Keras's compiled loss."""
    if isinstance(loss, (list, tuple)) or (loss_weights is not None and not isinstance(loss, OutputLosses)):
        losses = list(loss) if isinstance(loss, (list, tuple)) else [loss] * len(scratch.outputs)
        loss = OutputLosses(losses, loss_weights)
    elif len(scratch.outputs) > 1 and not isinstance(loss, OutputLosses):
        loss = OutputLosses([loss] * len(scratch.outputs))
    loss = get_loss(loss)
    dtype = scratch.dtype.name
    if not hasattr(keras_model, "get_weights") or not getattr(keras_model, "inputs", None):
        raise BadInputError(f"the Keras side must be a built keras model, got {type(keras_model).__name__}")
    if keras_model.inputs[0].dtype != dtype:
        raise BadInputError(
            f"the scratch model is {dtype} but the Keras model takes {keras_model.inputs[0].dtype}: "
            "compare models of one dtype"
        )
    gradcheck_samples = check_count("compare", "gradcheck_samples", gradcheck_samples, low=0)
    seed = check_count("compare", "seed", seed, low=0)
    weights = scratch.get_weights()
    try:
        keras_model.set_weights(weights)
    except ValueError as exc:  # another architecture: Keras's own message, in one line
        raise BadInputError(f"the Keras model's weights do not match the scratch model's: {exc}") from None
    rows = [round_trip_row(weights, keras_model.get_weights())]
    x = _batch("x", x, dtype, len(scratch.inputs))
    y = _batch("y", y, dtype, len(scratch.outputs))
    n = len(x[0]) if isinstance(x, list) else len(x)
    share_dropout_masks(scratch, keras_model, n)
    with watched(scratch, Watch()) as watch:  # the protocol: every array handed a layer unchanged, results' dtypes
        scratch.backward_pass(x, y, loss, sample_weight)  # twice: gradients that accumulate across calls show up
        scratch.set_weights(weights)  # the first pass moved the moving statistics; the compared pass starts afresh
        ours, result = scratch_side(scratch, x, y, loss, sample_weight)
        terms = gradient_terms(scratch, x, y, loss, result, sample_weight)  # from this pass's caches
        ours = replace(ours, inference=scratch_inference(scratch, x))  # from the state after the step
        watch.finish()  # what a layer kept from one pass and wrote into during a later one
    theirs = keras_side(keras_model, x, y, loss, sample_weight)
    overflow = next(
        (
            name
            for name, a, b in (
                ("loss", ours.loss, theirs.loss),
                ("output", ours.output, theirs.output),
                ("dL/dX", ours.input_grad, theirs.input_grad),
            )
            if not _finite(a) and not _finite(b)
        ),
        None,
    )
    if overflow:  # both sides overflow alike: not a parity question, say so
        raise BadInputError(
            f"the {overflow} is not finite on either side: the computation overflows for these weights and inputs "
            "(a huge regularisation factor, weight or input scale?), so there is nothing to compare"
        )
    truth = again = None
    if dtype == "float32":  # the float64 truth: Keras in float64 on the same (exactly upcast) weights and batch
        try:
            keras64 = keras_astype(keras_model, "float64")
        except Exception as exc:  # a user's layer whose config does not rebuild it: one line, naming the model
            raise BadInputError(
                f"the float32 check measures against the Keras model rebuilt in float64, and {keras_model.name!r} "
                f"could not be rebuilt from its layers' configs ({type(exc).__name__}: {exc}); give each custom "
                "layer a get_config that rebuilds it"
            ) from None
        keras64.set_weights([np.asarray(w, np.float64) for w in weights])
        sw64 = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        truth = keras_side(keras64, _as64(x), _as64(y), loss, sw64)
    # float64 rounding's and float32's own reach: Keras again with every input and weight one ulp off
    moves = [not flag for flag in fixed_input_flags(scratch)]
    again = jittered_side(keras_model, x, y, loss, sample_weight, weights, seed, moves if len(moves) > 1 else moves[0])
    table, steps = compare_sides(scratch, result.logits_at, ours, theirs, truth, terms, dtype, again)
    rows += table
    rows += protocol_rows(watch, dtype)
    if gradcheck_samples:
        reference = truth if truth is not None else theirs
        flags = fixed_input_flags(scratch)  # indices, masks: no derivative to take
        if len(flags) == 1:
            input_grad = None if flags[0] else reference.input_grad
        else:
            input_grad = [None if flag else g for flag, g in zip(flags, reference.input_grad)]
        rows.append(
            gradcheck_row(scratch, x, y, loss, reference.grads, gradcheck_samples, seed, sample_weight, input_grad)
        )
    return Report(config or {}, rows, keras_impl.settings(), steps, diagnose(steps))


def _batch(what: str, value: Any, dtype: str, count: int) -> Any:
    """x or y as arrays of `dtype` with a batch axis: one array, or a list of `count` (several inputs or outputs)."""
    if count > 1 and not (isinstance(value, (list, tuple)) and len(value) == count):
        raise BadInputError(
            f"{what}: the model has {count} {'inputs' if what == 'x' else 'outputs'}: give a list of {count} arrays"
        )
    items = list(value) if count > 1 else [value]
    out = []
    for item in items:
        try:
            a = np.asarray(item).astype(dtype, copy=False)
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"x and y must be arrays of numbers: {exc}") from None
        if a.ndim == 0:
            raise BadInputError("x and y must be arrays of numbers with one row per sample, got a scalar or None")
        out.append(a)
    return out if count > 1 else out[0]


#: The share of positions a synthetic attention mask keeps.
MASK_KEEP = 0.7


def integer_inputs(scratch: Model) -> bool:
    """Whether the model's inputs are indices (the layer called on its first input declares `integer_inputs`: an
    Embedding)."""
    return integer_input_flags(scratch)[0]


def integer_input_flags(scratch: Model) -> list[bool]:
    """Per input of the model, whether it holds indices (the first layer called on it declares `integer_inputs`)."""
    flags = []
    for t in scratch.inputs:
        first = next(node for node in scratch.nodes if any(u is t for u in node.inputs))
        flags.append(bool(getattr(first.layer, "integer_inputs", False)))
    return flags


def _mask_only(uses: list[tuple[dict, list[bool]]]) -> bool:
    """Whether every call handed a tensor takes it as its attention_mask: `uses` holds each call's options and
    which of its inputs the tensor is."""
    return all(
        {r for r, hit in zip(options.get("roles") or (), hits) if hit} == {"attention_mask"} for options, hits in uses
    )


def mask_input(arch: Any, k: int) -> bool:
    """Whether input k of the description is an attention mask: every call handed it takes it as attention_mask."""
    graph = arch.graph()
    name = graph.inputs[k][0]
    return _mask_only([(dict(c.options), [t == name for t in c.inputs]) for c in graph.calls if name in c.inputs])


def fixed_input_flags(scratch: Model) -> list[bool]:
    """Per input of the model, whether it is held fixed: indices (`integer_input_flags`) or an attention mask (every
    call handed it takes it as its attention_mask: 0/1, where the loss is piecewise constant). Such an input is not
    moved by the numerical witness, the precision probe, the Taylor witness or the float32 jitter (one ulp off 0
    would keep a masked position), no numerical derivative is taken with respect to it and no dL/dX is judged."""
    flags = []
    for t, integer in zip(scratch.inputs, integer_input_flags(scratch)):
        uses = [
            (node.options, [u is t for u in node.inputs]) for node in scratch.nodes if any(u is t for u in node.inputs)
        ]
        flags.append(integer or _mask_only(uses))
    return flags


def _input_spec(arch: Any, k: int = 0) -> Any:
    """The spec of the first layer called on input k of the description."""
    graph = arch.graph()
    name = graph.inputs[k][0]
    call = next(c for c in graph.calls if name in c.inputs)
    return dict(graph.layers)[call.layer]


def synthetic_inputs(arch: Any, x: Array, seed: int, k: int = 0) -> Array:
    """The synthetic batch `x` (N, *input_shape) as input k of the architecture takes it: for an input that an
    Embedding reads, N seeded index sequences in [0, input_dim) instead of normal values; for an attention mask,
    seeded 0/1 keeping each position with probability MASK_KEEP (a row may be masked whole: Keras's two paths treat
    that row differently, and both sides must agree on it)."""
    if mask_input(arch, k):
        return (np.random.default_rng((seed, k)).uniform(size=x.shape) < MASK_KEEP).astype(x.dtype)
    first = _input_spec(arch, k)
    if first.kind != "embedding":
        return x
    return indices(first.options["input_dim"], arch.graph().input_shapes[k], len(x), seed)


def build_pair(arch: str | Any, dtype: str = "float64", seed: int | None = 0) -> tuple[Model, Any]:
    """Both sides from one description: the scratch model initialised from `seed`, and its Keras twin (its
    weights are set from the scratch side by compare_models or run_training). A chain (Architecture) is a
    Sequential on both sides, a graph (GraphArchitecture) a Model."""
    if isinstance(arch, str):
        arch = Architecture.parse(arch)
    kind = Sequential if isinstance(arch, Architecture) else Model
    return kind.from_architecture(arch, dtype=dtype, seed=seed), keras_impl.build_model(arch, dtype)


def run_comparison(
    arch: str | Any = "64-32-16-10",
    batch: int = 32,
    dtype: str = "float64",
    seed: int = 0,
    data: str = "synthetic",
    loss: str | Loss | list = "categorical_crossentropy",
    gradcheck_samples: int = 8,
    loss_weights: list[float] | None = None,
) -> Report:
    """Build both sides from one description, initialise the scratch side from `seed`, and compare on one batch.

    A graph of several inputs or outputs takes synthetic data (seeded normal values per input, targets per output's
    loss) and `loss` as one loss for every output or a list with one per output, weighted by `loss_weights`."""
    batch = check_count("run_comparison", "batch", batch)
    seed = check_count("run_comparison", "seed", seed, low=0)
    if isinstance(arch, str):
        arch = Architecture.parse(arch)
    graph = arch.graph()
    several = len(graph.inputs) > 1 or len(graph.outputs) > 1
    loss = (
        get_loss(loss)
        if not several and not isinstance(loss, (list, tuple))
        else _output_losses(graph, loss, loss_weights)
    )
    check_memory(f"a batch of {batch}", batch, arch.footprint())  # from the shapes, before either side is built
    scratch, keras_model = build_pair(arch, dtype, seed)
    if isinstance(arch, Architecture):
        arch = scratch.architecture
    if several:
        if data != "synthetic":
            raise BadInputError(f"data {data!r}: a model of several inputs or outputs is compared on synthetic data")
        rng = np.random.default_rng(seed)
        x = [
            synthetic_inputs(arch, rng.standard_normal((batch, *shape)), seed, k)
            for k, shape in enumerate(graph.input_shapes)
        ]
        y = [
            targets(item.target_kind, batch, shape[-1], np.random.default_rng(seed + 1 + o))
            for o, (item, shape) in enumerate(zip(loss.losses, graph.output_shapes))
        ]
        x = x if len(x) > 1 else x[0]
        y = y if len(y) > 1 else y[0]
    else:
        if isinstance(loss, OutputLosses):
            loss = loss.losses[0] if loss.weights is None else loss
        single = loss.losses[0] if isinstance(loss, OutputLosses) else loss
        x, y = load_batch(data, arch.input_dim, arch.output_dim, batch, seed, arch.input_shape)
        x = as_inputs(x, arch.input_shape)
        if data == "synthetic":
            x = synthetic_inputs(arch, x, seed)
        if data == "synthetic" and single.target_kind != "onehot":
            y = targets(single.target_kind, len(x), arch.output_dim, np.random.default_rng(seed + 1))
        elif single.target_kind == "labels":
            y = y.argmax(axis=1).astype(np.float64)  # one-hot data set labels -> class indices
    config = {
        "arch": str(arch),
        "batch": batch,
        "dtype": dtype,
        "seed": seed,
        "data": data,
        "loss": repr(loss),
    }
    return compare_models(
        scratch, keras_model, x, y, loss, gradcheck_samples=gradcheck_samples, seed=seed, config=config
    )


def _output_losses(graph: Any, loss: Any, loss_weights: Any) -> OutputLosses:
    """One loss per output (a single one repeated) and the weights."""
    losses = list(loss) if isinstance(loss, (list, tuple)) else [loss] * len(graph.outputs)
    if len(losses) != len(graph.outputs):
        raise BadInputError(f"loss: {len(losses)} losses for {len(graph.outputs)} outputs; give one per output")
    return OutputLosses(losses, loss_weights)
