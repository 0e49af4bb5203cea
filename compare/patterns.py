"""The pattern of a difference: `describe` says how scratch's values differ from Keras's in words a bug can be
recognised by (a constant factor N, 2 or -1, a transpose, a mask off at the kink, a layout or a one-cell shift,
columns or rows, a gradient left at 0, an affine map per feature, a rounding-sized difference), and for a sequence
layer where within it the sides part (`_sequence_pattern`: an Embedding's rows, a recurrent layer's gate blocks and
first time step).
"""

from __future__ import annotations

import numpy as np

from compare.trace import Step, _below

Array = np.ndarray

#: A factor fits when the residual ||a - c b|| is below this fraction of ||a||.
FACTOR_FIT = 1e-6

#: An entry differs "for real" when |a - b| exceeds this fraction of the tensors' largest entry (last-bit
#: rounding elsewhere in the tensor is ignored when locating the difference).
SIGNIFICANT = 1e-9

#: float32's unit roundoff 2^-24: one rounding moves a value by at most this fraction of it.
F32_UNIT = 2.0**-24

#: Gate blocks are named as differing "most" when their errors stand this many times above the next block's.
GATE_GAP = 3.0

#: The gate blocks of a recurrent kernel's columns, in Keras's order, by their number (LSTM 4, GRU 3).
GATES = {4: ("i", "f", "c", "o"), 3: ("z", "r", "h")}


def _sequence_pattern(step: Step, steps: list[Step]) -> str:
    """For a sequence layer whose difference `describe` finds no simple pattern in, where the sides part within
    it: an Embedding's rows, and for a recurrent layer the gate blocks of a weight gradient's columns and the first
    time step, in the order of computation (backward: counting from the last step, as BPTT runs; forward: from the
    first), where its dL/dX (or its output) differs. "" when there is nothing more to say (`describe`'s text
    stands)."""
    if step.ours is None or step.theirs is None or np.shape(step.ours) != np.shape(step.theirs):
        return ""
    if step.quantity == "dL/dembeddings":
        return _embedding_rows(step, steps)
    recurrent = next((s for s in steps if s.layer == step.layer and s.quantity == "dL/drecurrent_kernel"), None)
    if recurrent is None or step.layer == 0 or recurrent.ours is None or step.quantity == "dL/dA":
        return ""  # (a recurrent layer's own dL/dA comes from the layers above it)
    units = recurrent.ours.shape[0]
    gates = GATES.get(recurrent.ours.shape[1] // units, ())
    if step.phase == "forward":
        t = _time_steps(step.ours, step.theirs)
        if t is None or not t.any() or t.all():
            return ""
        first = int(np.flatnonzero(t)[0])
        hint = (
            " (a GRU: is the reset gate applied before the recurrent product, reset_after=False, where Keras's "
            "default reset_after=True applies it after? With h_{-1} = 0 and a zero recurrent bias the two agree "
            "at t = 0)"
            if gates == GATES[3] and first == 1
            else ""
        )
        if first == 1:  # everything h_{t-1} multiplies vanishes at t = 0, where h_{-1} = 0
            return (
                f"the output agrees at t = 0 and first differs at t = 1 (of 0..{len(t) - 1}): a difference in a "
                "term that vanishes at t = 0, where h_{-1} = 0: in how h_{t-1} enters the cell?" + hint
            )
        return (
            f"the output agrees at t = 0..{first - 1} and first differs at t = {first} (of 0..{len(t) - 1}): a "
            "difference that shows only after some steps (one carried through the recurrence, below rounding "
            "before?)"
        )
    parts = [_gate_blocks(step.ours, step.theirs, units, gates)] if gates else []
    below = _below(step, steps)
    t = _time_steps(below.ours, below.theirs) if below is not None and below.ours is not None else None
    if t is not None and t.any():
        last, first = len(t) - 1, int(np.flatnonzero(t)[-1])
        if first == last:
            parts.append(f"its dL/dX already differs at the last time step t = {last}, the first BPTT computes")
        else:
            agree = f"t = {last}" if first + 1 == last else f"t = {first + 1}..{last}"
            parts.append(
                f"its dL/dX agrees at {agree} and first differs at t = {first} (of 0..{last}), step "
                f"{last - first + 1} counting from the last as BPTT runs: a gradient not carried back from step t "
                "to step t-1 (dh, or an LSTM's dc)?"
            )
    return "; ".join(p for p in parts if p)


def _time_steps(ours: Array, theirs: Array) -> Array | None:
    """Which time steps of a sequence (N, T, ...) differ beyond rounding, (T,) bools; None for other shapes."""
    noise = _noise(ours)
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if a.ndim != 3 or a.shape != b.shape:
        return None
    big = np.abs(a - b) > noise * max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    return big.any(axis=(0, 2))


def _gate_blocks(ours: Array, theirs: Array, units: int, gates: tuple[str, ...]) -> str:
    """Which gate blocks (column blocks of `units`) of a recurrent weight gradient differ: Keras's blocks in
    another order, a few gates only, or the one that differs most."""
    noise = _noise(ours)
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if a.shape[-1] != units * len(gates):
        return ""
    blocks_a = [a[..., j * units : (j + 1) * units] for j in range(len(gates))]
    blocks_b = [b[..., j * units : (j + 1) * units] for j in range(len(gates))]
    order = [next((k for k, bb in enumerate(blocks_b) if _close(aa, bb, noise)), None) for aa in blocks_a]
    if None not in order and sorted(order) == list(range(len(gates))) and order != sorted(order):
        held = ", ".join(gates[k] for k in order)
        dlfs = " (deep-learning-from-scratch-2 stacks f, g, i, o)" if len(gates) == 4 else ""
        return (
            f"the gate blocks in another order: scratch's columns hold Keras's [{held}] blocks where Keras stacks "
            f"[{', '.join(gates)}]{dlfs}"
        )

    def cols(j: int) -> str:
        return f"{gates[j]} (columns {j * units}..{(j + 1) * units - 1})"

    scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))

    def own(j: int) -> float:
        """Block j's own scale (floored at sqrt(noise) of the tensor's): a block of small entries is judged on its
        own size, so a difference in it is not lost under a larger block's rounding."""
        block = max(float(np.abs(blocks_a[j]).max(initial=0)), float(np.abs(blocks_b[j]).max(initial=0)))
        return max(block, np.sqrt(noise) * scale)

    differs = [j for j in range(len(gates)) if (np.abs(blocks_a[j] - blocks_b[j]) > noise * own(j)).any()]
    if not differs:
        return ""
    if len(differs) < len(gates):
        agree = ", ".join(gates[j] for j in range(len(gates)) if j not in differs)
        where = " and ".join(cols(j) for j in differs)
        return f"differs in gate{'s' if len(differs) > 1 else ''} {where}; gate(s) {agree} agree"
    errors = [np.linalg.norm(blocks_a[j] - blocks_b[j]) / max(np.linalg.norm(blocks_b[j]), 1e-300) for j in differs]
    ranked = [int(k) for k in np.argsort(errors, kind="stable")[::-1]]
    ordered = [errors[k] for k in ranked]
    gaps = [ordered[k] / max(ordered[k + 1], 1e-300) for k in range(len(ordered) - 1)]
    cut = int(np.argmax(gaps)) + 1  # the blocks above the widest gap between consecutive errors
    if gaps[cut - 1] >= GATE_GAP:
        most = sorted(ranked[:cut])  # in Keras's order
        names = " and ".join(cols(j) for j in most)
        figures = " and ".join(f"{errors[j]:.2g}" for j in most)
        rest = ", ".join(f"{gates[j]} {errors[j]:.2g}" for j in range(len(gates)) if j not in most)
        return (
            f"differs in every gate block, most in gate{'s' if len(most) > 1 else ''} {names}: relative error"
            f"{'s' if len(most) > 1 else ''} {figures} there; in the others {rest}"
        )
    return f"differs in every gate block ({', '.join(gates)}) alike"


def _embedding_rows(step: Step, steps: list[Step]) -> str:
    """An Embedding gradient whose differing rows each hold one position's dL/dA (Keras: the sum over every
    position that used the index): repeated indices assigned, not accumulated."""
    upstream = next((s for s in steps if s.layer == step.layer and s.quantity == "dL/dA"), None)
    if upstream is None or upstream.ours is None or np.ndim(step.ours) != 2:
        return ""
    noise = _noise(step.ours)
    a, b = np.asarray(step.ours, np.float64), np.asarray(step.theirs, np.float64)
    dy = np.asarray(upstream.ours, np.float64).reshape(-1, a.shape[1])
    scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    rows = np.flatnonzero((np.abs(a - b) > noise * scale).any(axis=1))
    if not len(rows) or not all(any(_close(a[k], y, noise) for y in dy) for k in rows):
        return ""
    shown = ", ".join(str(k) for k in rows[:6]) + (", ..." if len(rows) > 6 else "")
    return (
        f"rows {shown} ({len(rows)} of {len(a)}) each hold a single position's dL/dA where Keras sums every "
        "position that used the index: a repeated index's gradients assigned (dE[X] = dY, or dE[X] += dY, which "
        "keeps one of the repeats) instead of accumulated (np.add.at)"
    )


def describe(
    ours: Array,
    theirs: Array,
    n: int | None = None,
    z: Array | None = None,
    input_shape: tuple | None = None,
    batch_axis: bool = False,
) -> str:
    """A short, recognisable summary of how `ours` (scratch) differs from `theirs` (Keras). `input_shape`: the
    shape reaching the layer (an image's (H, W, C) lets a flattened output be recognised in another order);
    `batch_axis`: the first axis holds the samples (so rows that differ are samples)."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if a.shape != b.shape:
        return f"shapes differ: scratch {a.shape}, Keras {b.shape}"
    bad_a, bad_b = ~np.isfinite(a), ~np.isfinite(b)
    if (bad_a & ~bad_b).any():
        return (
            f"scratch has NaN or infinity where Keras is finite ({int((bad_a & ~bad_b).sum())} of {a.size} entries;"
            " 0/0 or an overflow: a softmax or exponential not shifted by each row's own max?)"
        )
    if (bad_b & ~bad_a).any():
        return f"Keras has NaN or infinity where scratch is finite ({int((bad_b & ~bad_a).sum())} of {a.size} entries)"
    if bad_a.any():  # non-finite in the same places: describe the rest
        keep = ~bad_a
        if not np.array_equal(a[bad_a], b[bad_a], equal_nan=True):
            return f"both sides have NaN or infinity at the same {int(bad_a.sum())} entries, not the same values there"
        a, b = np.where(keep, a, 0.0), np.where(keep, b, 0.0)
    d = a - b
    tiny = _tiny(ours, theirs, a, b)
    if tiny:
        return tiny
    zero = _zero_where_keras_is_not(a, b, z)
    if zero:
        return zero
    layout = _layout(a, b, input_shape)
    if layout:
        return layout
    if (
        a.ndim == 2
        and a.shape[0] == a.shape[1]
        and _close(a, b.T)
        and not _close(b, b.T)  # a symmetric Keras tensor is its own transpose: nothing to tell
    ):
        return "a transpose: scratch = Keras^T (a W used where W^T belongs, or the reverse)"
    bb = float((b * b).sum())
    if bb > 0:
        c = float((a * b).sum()) / bb
        if np.linalg.norm(a - c * b) <= FACTOR_FIT * max(np.linalg.norm(a), 1e-300):
            return _factor(c, n)
    # entries that differ by more than rounding (the rest of the tensor may carry last-bit differences)
    big = np.abs(d) > SIGNIFICANT * max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    if z is not None and np.shape(z) == d.shape:
        z = np.asarray(z)
        if (z == 0).any() and big.any() and not big[z != 0].any():
            return (
                f"a mask off at the kink: the sides differ only where Z == 0 exactly ({int(big.sum())} "
                "entries); is the derivative at 0 taken as 1 (mask z >= 0) instead of 0?"
            )
    if big.any() and not b[big].any() and big.sum() < big.size:
        return (
            f"scratch has gradient where Keras has exactly 0 ({int(big.sum())} entries) and agrees elsewhere: a "
            "route Keras does not take (a max-pool gradient sent to every tied maximum? a mask not applied?)"
        )
    if d.ndim == 2:
        cols = np.flatnonzero(big.any(axis=0))
        rows = np.flatnonzero(big.any(axis=1))
        if 0 < len(cols) < d.shape[1] and len(cols) <= 3:
            return f"confined to column(s) {cols.tolist()} of {d.shape[1]}"
        if 0 < len(rows) < d.shape[0] and len(rows) <= 3:
            samples = " (these samples only)" if batch_axis else ""
            return f"confined to row(s) {rows.tolist()} of {d.shape[0]}{samples}"
    affine = _affine_per_slice(a, b, batch_axis)
    if affine:
        return affine
    index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(d)), d.shape)) if d.size else ()
    return f"no simple pattern; the largest difference is at {index}: scratch {a[index]:.6g}, Keras {b[index]:.6g}"


def _tiny(ours: Array, theirs: Array, a: Array, b: Array) -> str:
    """A difference below FACTOR_FIT of the tensor (norm-relative), too small for any factor or layout to be read in
    it: its size and what that size is, or "" for a larger one."""
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    rel = float(np.linalg.norm(a - b)) / scale if scale > 0 else 0.0
    if rel == 0 or rel > FACTOR_FIT:
        return ""
    size = f"differs by {rel:.1e} relative (norm)"
    values = _float32_values(ours, theirs)
    if values:
        return f"{size}: float32 rounding; scratch {values} where Keras is float64 (the layer computes in float32)"
    if np.asarray(ours).dtype == np.float32 or np.asarray(theirs).dtype == np.float32:
        return (
            f"{size}: too small to read a pattern in (float32's unit roundoff is {F32_UNIT:.1e}); the float32 "
            "verdict weighs each side's distance from the float64 truth"
        )
    if rel >= F32_UNIT / 16:
        return (
            f"{size}, the size of float32 rounding (unit roundoff {F32_UNIT:.1e}) though both sides return float64: "
            "float32 arithmetic somewhere inside, or a small constant that differs (an epsilon?)"
        )
    return (
        f"{size}: above float64 rounding, far below float32's: operations in another order, amplified by "
        "cancellation, or a tiny constant that differs?"
    )


def _zero_where_keras_is_not(a: Array, b: Array, z: Array | None) -> str:
    """Scratch exactly 0 at most of the entries where it differs, Keras not 0 there: where, how many of Keras's
    nonzero entries, and whether it agrees elsewhere; "" otherwise. A ReLU mask applied to dL/dA itself (0 exactly
    where Z <= 0, `z` given) is named as such."""
    scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    big = np.abs(a - b) > SIGNIFICANT * scale
    zeros = big & (a == 0) & (b != 0)
    if not zeros.any() or 2 * zeros.sum() < big.sum():
        return ""
    count, nonzero = int(zeros.sum()), int((b != 0).sum())
    rest = int(big.sum()) - count
    elsewhere = "and agrees elsewhere" if rest == 0 else f"and differs at {rest} more entries"
    if z is not None and np.shape(z) == a.shape and rest == 0 and not big[np.asarray(z) > 0].any():
        return (
            f"zeroed where Z <= 0 ({count} entries): scratch is 0 exactly where the pre-activation is not positive "
            "and agrees elsewhere: a ReLU mask applied where Keras applies none (to dL/dA itself, in place: a "
            "backward that writes into its input?)"
        )
    if count == nonzero:
        what = f"scratch is 0 at every one of the {nonzero} entries where Keras is not"
        hint = "a gradient never written, or zeroed?"
    else:
        what = f"scratch is 0 at {count} of {nonzero} entries where Keras is not"
        hint = "contributions lost: overwritten (= where += belongs) or never written (a loop left early)?"
    return f"{what} ({count} of {a.size} entries in all) {elsewhere}: {hint}"


def _affine_per_slice(a: Array, b: Array, batch_axis: bool) -> str:
    """Each feature (last axis) or each sample (first axis, when it is the batch) of scratch an affine map of
    Keras's, c Keras + d, with its own c and d: a per-feature or per-sample scale, a normalisation's epsilon or
    variance. Fitted by least squares where each slice has at least 4 entries (2 more than the fit's unknowns)."""
    if a.ndim < 2:
        return ""
    fits = [("feature", "last axis", a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))]
    if batch_axis:
        fits.append(("sample", "first axis", a.reshape(len(a), -1).T, b.reshape(len(b), -1).T))
    for what, axis, aa, bb in fits:
        if len(aa) < 4:
            continue
        mean_b = bb.mean(axis=0)
        cb = bb - mean_b
        var = (cb * cb).sum(axis=0)
        c = np.where(var > 0, (cb * (aa - aa.mean(axis=0))).sum(axis=0) / np.where(var > 0, var, 1), 1.0)
        d = aa.mean(axis=0) - c * mean_b
        if np.linalg.norm(aa - (c * bb + d)) > FACTOR_FIT * max(float(np.linalg.norm(aa)), 1e-300):
            continue
        shifted = bool(np.abs(d).max() > FACTOR_FIT * float(np.abs(aa).max()))
        scaled = bool(np.abs(c - 1).max() > FACTOR_FIT)
        if np.abs(c - 1).max() < 1e-2:  # near 1: the deviations are what can be read
            scales = f"c - 1 from {float((c - 1).min()):.2g} to {float((c - 1).max()):.2g}"
        else:
            scales = f"c from {float(c.min()):.4g} to {float(c.max()):.4g}"
        shifts = f"d from {d.min():.2g} to {d.max():.2g}"
        lead = f"{what} by {what} ({axis}) scratch = "
        if scaled and shifted:
            return (
                f"{lead}c Keras + d with its own c and d: {scales}, {shifts}; each {what} rescaled and shifted (a "
                "normalisation's epsilon or variance differs?)"
            )
        if scaled:
            return (
                f"{lead}c Keras with its own c: {scales}; each {what} rescaled (a per-{what} scale: a "
                "normalisation's epsilon or variance differs?)"
            )
        return f"{lead}Keras + d with its own d: {shifts}; each {what} shifted (a bias or offset that differs?)"
    return ""


def _number(value: float) -> str:
    """`value` to 6 significant digits, or as (1 +- delta) when those digits would round it to 1."""
    if value != 1 and f"{value:.6g}" == "1":
        return f"(1 {'+' if value > 1 else '-'} {abs(value - 1):.2g})"
    return f"{value:.6g}"


def _close(a: Array, b: Array, fit: float = FACTOR_FIT) -> bool:
    return bool(np.linalg.norm(a - b) <= fit * max(np.linalg.norm(a), 1e-300))


def _noise(x: Array) -> float:
    """Below which fraction of a sequence tensor's largest entry a difference is taken as rounding: SIGNIFICANT in
    float64, 1e-4 in float32 (the two sides' float32 passes part by far more than 1e-9 through rounding alone; the
    bugs located here differ at order 1)."""
    return SIGNIFICANT if np.asarray(x).dtype == np.float64 else 1e-4


def _layout(a: Array, b: Array, input_shape: tuple | None) -> str:
    """The image mistakes that move values without changing them: Keras's values in another axis order (a kernel
    in DLFS's (c_out, c_in, kh, kw) layout, a Flatten in (c, h, w) order), or a feature map shifted by one cell
    (the 'same' padding put on the wrong side)."""
    if np.allclose(a, b, rtol=0, atol=0):
        return ""
    if a.ndim == 4 and a.shape[0] * a.shape[1] > 1:  # a kernel (kh, kw, C, F)
        dlfs = b.transpose(3, 2, 0, 1).reshape(a.shape)  # Keras's values read in (F, C, kh, kw) order
        if _close(a, dlfs) and not _close(b, dlfs):  # (a kernel that order leaves as it is tells nothing)
            return (
                "a layout: scratch holds Keras's kernel values in the order (F, C, kh, kw), reshaped, not "
                "transposed: a (c_out, c_in, kh, kw) kernel (deep-learning-from-scratch's) copied without "
                "transpose(2, 3, 1, 0)"
            )
    if a.ndim == 2 and input_shape is not None and len(input_shape) == 3 and a.shape[1] == np.prod(input_shape):
        h, w, c = input_shape
        chw = b.reshape(len(b), h, w, c).transpose(0, 3, 1, 2).reshape(b.shape)
        if c > 1 and _close(a, chw) and not _close(b, chw):
            return "a layout: scratch flattens in (c, h, w) order, Keras in (h, w, c) (channels last)"
    if a.ndim == 4 and a.shape[1] > 2 and a.shape[2] > 2:  # a feature map (N, H, W, C)
        for dy, dx in ((1, 0), (0, 1), (1, 1), (-1, 0), (0, -1), (-1, -1)):
            inner_a = a[:, max(dy, 0) : a.shape[1] + min(dy, 0), max(dx, 0) : a.shape[2] + min(dx, 0)]
            inner_b = b[:, max(-dy, 0) : b.shape[1] + min(-dy, 0), max(-dx, 0) : b.shape[2] + min(-dx, 0)]
            unmoved = b[:, max(dy, 0) : b.shape[1] + min(dy, 0), max(dx, 0) : b.shape[2] + min(dx, 0)]
            if _close(inner_a, inner_b) and not _close(unmoved, inner_b):  # (a map its own shift tells nothing)
                way = " and ".join(
                    w for w, v in (("down", dy > 0), ("up", dy < 0), ("right", dx > 0), ("left", dx < 0)) if v
                )
                return (
                    f"shifted by one cell ({way}): away from the border scratch = Keras moved by one position; is "
                    "the odd cell of 'same' padding put on the wrong side (Keras pads it at the bottom and right)?"
                )
    return ""


def _factor(c: float, n: int | None) -> str:
    def near(value: float) -> bool:
        return abs(c - value) <= 1e-6 * abs(value)

    if near(-1):
        return "a sign flip: scratch = -Keras"
    if n and n > 1 and near(n):
        return f"a constant factor N = {n} (the batch size): scratch = {n} x Keras; a missing 1/N?"
    if n and n > 1 and near(1 / n):
        return f"a constant factor 1/N = 1/{n}: scratch = Keras / {n}; a mean taken where Keras sums over the batch?"
    if near(2):
        return (
            "a constant factor 2: scratch = 2 x Keras (a 2 from a square's derivative, or gradients accumulated "
            "across calls: the harness runs the backward pass twice)"
        )
    if near(0.5):
        return "a constant factor 0.5: scratch = 0.5 x Keras (a 1/2 too many, or a square's 2 left out?)"
    if c == 0:
        return "scratch is 0 everywhere Keras is not (a gradient never written, or zeroed?)"
    return f"a constant factor: scratch = {_number(c)} x Keras"


def _float32_values(ours: Array, theirs: Array) -> str:
    """How scratch's values show float32 arithmetic against Keras's float64 ones ("" when they do not): a float32
    array, or float64 values that are all float32 numbers (each survives a round trip through float32) where
    Keras's are not."""
    a, b = np.asarray(ours), np.asarray(theirs)
    if b.dtype != np.float64 or a.dtype not in (np.float32, np.float64) or a.size == 0:
        return ""
    if a.dtype == np.float32:
        return "is float32"
    finite = np.isfinite(a) & np.isfinite(b)
    with np.errstate(over="ignore"):
        ours_f32 = bool(np.all(a[finite].astype(np.float32).astype(np.float64) == a[finite]))
        theirs_f32 = bool(np.all(b[finite].astype(np.float32).astype(np.float64) == b[finite]))
    return "holds only float32 numbers" if ours_f32 and not theirs_f32 else ""


def _norm_rel(ours: Array, theirs: Array) -> float:
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    return float(np.linalg.norm(a - b)) / scale if scale > 0 else 0.0
