"""Where inside a multi-head attention call the sides part, and the patterns of a difference only attention has.

An attention node's trace (compare/rows.py) holds its per-head quantities, each (B, N, ...) with the heads on axis 1:

    forward:  Q, K, V (B, N, T|S, H)   S = Q K^T / sqrt(H), P = softmax(S) (B, N, T, S)   C = P V (B, N, T, Hv)   A
    backward: dL/dA, dL/dC, dL/dP, dL/dS, dL/dV, dL/dK, dL/dQ, dL/dquery, dL/dvalue, dL/dkey, the weight gradients

`attention_location` names the block a quantity belongs to (query, key, value, scores, probabilities, context,
output) and the head whose slice differs (`heads`: the one that differs, the ones that do, "every head", or every
head but most one); `attention_where` puts them in the diagnosis's "where". `attention_pattern` recognises, from the
values of the first differing step and the steps around it (which agree, being earlier), a relation a bug leaves:

- a scale: S (or dQ, dK) is Keras's times sqrt(key_dim) (the 1/sqrt(key_dim) missing), divided by it (applied
  twice), or rescaled by sqrt(key_dim / D) (1/sqrt(D) of the query's width D used);
- a softmax over another axis: scratch's P sums to 1 over the query (heads, batch) axis, Keras's over the keys;
- a causal band off by one: each side's P is 0 beyond key step i + k of query step i (in every sample and head),
  with another k on each side (the diagonal masked: k = -1 where Keras's k = 0);
- a mask applied after the softmax: scratch's P is nonzero where Keras's is exactly 0 (the masked positions), and
  where the mask keeps, scratch's is the softmax of S over every key (not renormalised over the kept ones);
- the heads merged or split in another layout: the output is Keras's output projection (fitted on the agreeing
  contexts C and Keras's output) of the contexts merged in another order, or a per-head quantity holds Keras's
  values with the head and feature axes re-laid;
- the softmax's vector-Jacobian product without its row-sum term: dS = P * dP (or the Jacobian's diagonal alone,
  P (1 - P) dP, or the row sum taken over the query axis), read from the agreeing P and dP.

"" when none holds (or the step is not an attention call's); `describe` then says what it can.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from compare.graph_patterns import _fit, _same
from compare.patterns import GATE_GAP, _noise
from compare.trace import Array, Step

#: The block each quantity of an attention call belongs to, by its name without "dL/d" and any "/kernel", "/bias".
BLOCKS = {
    "Q": "query",
    "query": "query",
    "K": "key",
    "key": "key",
    "V": "value",
    "value": "value",
    "S": "scores",
    "P": "probabilities",
    "C": "context",
    "A": "output",
    "attention_output": "output",
}

#: The per-head quantities, (B, N, ...): the heads on axis 1.
PER_HEAD = ("Q", "K", "V", "S", "P", "C")

#: The axes of the scores and probabilities (B, N, T, S), by what they count.
SCORE_AXES = ("batch", "heads", "query", "key")

#: Row sums of probabilities are 1 to this (float64) or SUM_TOL_F32 (float32) when a softmax normalised them.
SUM_TOL = 1e-9
SUM_TOL_F32 = 1e-5


def is_attention(step: Step, steps: list[Step]) -> bool:
    """Whether `step` belongs to an attention call: its node has per-head scores S in the trace."""
    return bool(step.layer) and any(s.layer == step.layer and s.phase == "forward" and s.quantity == "S" for s in steps)


def _name(quantity: str) -> tuple[str, str]:
    """(what, part): "dL/dquery/kernel" -> ("query", "kernel"), "dL/dQ" -> ("Q", ""), "S" -> ("S", "")."""
    bare = quantity[len("dL/d") :] if quantity.startswith("dL/d") else quantity
    what, _, part = bare.partition("/")
    return what, part


def _head_axis(quantity: str) -> int | None:
    """The axis of a quantity's array that counts the heads, or None (an input's gradient, the output, the output
    bias)."""
    what, part = _name(quantity)
    if what in PER_HEAD:
        return 1  # (B, N, ...)
    if what in ("query", "key", "value") and part:
        return 1 if part == "kernel" else 0  # kernel (D, N, H), bias (N, H)
    if what == "attention_output" and part == "kernel":
        return 0  # (N, Hv, *out)
    return None


def attention_location(step: Step, steps: list[Step]) -> tuple[str, str] | None:
    """(heads, block) of an attention call's step: heads as `heads` says it ("" when the quantity has no head
    axis), the block a name of BLOCKS's values; None for a step of another layer."""
    if not is_attention(step, steps):
        return None
    block = BLOCKS.get(_name(step.quantity)[0])
    if block is None:
        return None
    axis = _head_axis(step.quantity)
    text = ""
    if axis is not None and step.ours is not None and step.theirs is not None:
        text = heads(step.ours, step.theirs, axis)
    return text, block


def attention_where(step: Step, steps: list[Step]) -> str:
    """The step's place named with its head and block, "layer 2 (mha) head 1, scores S", "layer 2 (mha) every head,
    probabilities P", "layer 2 (mha) output A"; "" for a step of another layer."""
    found = attention_location(step, steps)
    if found is None:
        return ""
    head, block = found
    return f"layer {step.layer} ({step.layer_name}) {head + ', ' if head else ''}{block} {step.quantity}"


def heads(ours: Array, theirs: Array, axis: int) -> str:
    """Which heads (slices along `axis`, counted from 0) differ: "head h" or "heads h and k" when only some do
    beyond rounding, "every head" when all do alike, "every head, most head h" when one (or a few) stands GATE_GAP
    times above the rest in relative error; "" when the shapes differ."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if a.shape != b.shape or a.ndim <= axis:
        return ""
    n = a.shape[axis]
    a, b = np.moveaxis(a, axis, 0).reshape(n, -1), np.moveaxis(b, axis, 0).reshape(n, -1)
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    diff = np.linalg.norm(a - b, axis=1)
    differs = [h for h in range(n) if diff[h] > _noise(ours) * scale]
    if not differs:
        differs = [int(np.argmax(diff))]
    if n == 1:
        return "head 0 (the only one)"
    if len(differs) < n:
        return f"head{'s' if len(differs) > 1 else ''} {_and(differs)} (of 0..{n - 1})"
    own = np.maximum(np.maximum(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)), 1e-300)
    errors = diff / own
    ranked = [int(k) for k in np.argsort(errors, kind="stable")[::-1]]
    ordered = errors[ranked]
    gaps = ordered[:-1] / np.maximum(ordered[1:], 1e-300)
    cut = int(np.argmax(gaps)) + 1
    if gaps[cut - 1] >= GATE_GAP:
        most = sorted(ranked[:cut])
        return f"every head, most head{'s' if len(most) > 1 else ''} {_and(most)} (of 0..{n - 1})"
    return "every head"


def _and(items: list[int]) -> str:
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _sibling(step: Step, steps: list[Step], quantity: str, phase: str) -> Step | None:
    """The step of the same node named `quantity` in `phase` (None when not recorded)."""
    found = next((s for s in steps if (s.layer, s.quantity, s.phase) == (step.layer, quantity, phase)), None)
    return found if found is not None and found.ours is not None and found.theirs is not None else None


def attention_pattern(step: Step, steps: list[Step]) -> str:
    """What the values of an attention call's first differing `step` and its neighbours prove (module docstring),
    or ""."""
    if step.ours is None or step.theirs is None or np.shape(step.ours) != np.shape(step.theirs):
        return ""
    if not is_attention(step, steps):
        return ""
    readers: dict[str, tuple[Callable[[Step, list[Step]], str], ...]] = {
        "S": (_scale,),
        "dL/dQ": (_scale, _head_layout),
        "dL/dK": (_scale, _head_layout),
        "P": (_softmax_axis, _causal_band, _mask_after_softmax),
        "A": (_merge_order,),
        "dL/dS": (_softmax_vjp,),
    }
    default = (_head_layout,) if _name(step.quantity)[0] in PER_HEAD else ()
    for read in readers.get(step.quantity, default):
        text = read(step, steps)
        if text:
            return text
    return ""


def _factor(a: Array, b: Array) -> float | None:
    """c with a = c b (least squares), when it fits to the dtype's rounding; None otherwise."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    bb = float((b64 * b64).sum())
    if bb == 0:
        return None
    c = float((a64 * b64).sum()) / bb
    return c if _same(a64, c * b64, _fit(a)) else None


def _scale(step: Step, steps: list[Step]) -> str:
    """S, dQ or dK a constant multiple of Keras's that a scale of the scores explains."""
    q = _sibling(step, steps, "Q", "forward")
    c = _factor(step.ours, step.theirs)
    if q is None or c is None:
        return ""
    key_dim = int(np.shape(q.ours)[-1])
    root = math.sqrt(key_dim)
    query = _sibling(step, steps, "dL/dquery", "backward")
    width = int(np.shape(query.ours)[-1]) if query is not None else None
    what = "its backward" if step.quantity != "S" else "the scores"
    lead = f"scratch's {step.quantity} is Keras's"
    candidates = [
        (
            root,
            f"times sqrt(key_dim) = {root:.2f} (key_dim {key_dim}): the 1/sqrt(key_dim) scaling missing from {what}?",
        ),
        (
            1 / root,
            f"divided by sqrt(key_dim) = {root:.2f} (key_dim {key_dim}): {what} scaled twice, or by 1/key_dim where "
            "Keras scales by 1/sqrt(key_dim)?",
        ),
    ]
    if width is not None and width != key_dim:
        candidates.append(
            (
                root / math.sqrt(width),
                f"times sqrt(key_dim / D) = sqrt({key_dim}/{width}) = {root / math.sqrt(width):.3g}: {what} scaled "
                f"by 1/sqrt(D) of the query's width D = {width}, where Keras scales by 1/sqrt(key_dim)?",
            )
        )
    for value, text in candidates:
        if abs(c - value) <= 1e-5 * value:
            return f"{lead} {text}"
    return ""


def _sums_to_one(p: Array, axis: int) -> bool:
    """Whether every slice of `p` along `axis` sums to 1 (or to 0: a slice masked whole on the explicit path),
    some to 1."""
    tol = SUM_TOL if np.asarray(p).dtype == np.float64 else SUM_TOL_F32
    sums = np.asarray(p, np.float64).sum(axis=axis)
    one, zero = np.abs(sums - 1) <= tol, np.abs(sums) <= tol
    return bool((one | zero).all() and one.any())


def _softmax_axis(step: Step, steps: list[Step]) -> str:
    """Scratch's P normalised over another axis than the keys (Keras's rows)."""
    if np.ndim(step.ours) != 4 or not _sums_to_one(step.theirs, -1) or _sums_to_one(step.ours, -1):
        return ""
    axis = next((k for k in (2, 1, 0) if _sums_to_one(step.ours, k)), None)
    if axis is None:
        return ""
    return (
        f"scratch's P sums to 1 over the {SCORE_AXES[axis]} axis (axis {axis} of (B, N, T, S)), Keras's over the key "
        "axis (each query step's row, axis -1): the softmax taken over the wrong axis, normalising each key step's "
        f"column{'' if axis == 2 else 's across ' + SCORE_AXES[axis]} where each query's scores are normalised over "
        "the keys?"
    )


def _band(p: Array) -> int | None:
    """k when P (B, N, T, S) is nonzero (in some sample and head) exactly at the key steps j <= i + k of each query
    step i, read from the rows that keep some steps but not all (at least two such rows); None otherwise."""
    nonzero = (np.asarray(p) != 0).any(axis=(0, 1))
    found = set()
    for i, row in enumerate(nonzero):
        if row.all() or not row.any():
            continue
        last = int(np.flatnonzero(row)[-1])
        if not row[: last + 1].all():
            return None
        found.add(last - i)
    if len(found) != 1 or sum(1 for row in nonzero if row.any() and not row.all()) < 2:
        return None
    return found.pop()


def _steps(k: int) -> str:
    return "j <= i" if k == 0 else f"j <= i {'+' if k > 0 else '-'} {abs(k)}"


def _causal_band(step: Step, steps: list[Step]) -> str:
    """Both sides' P causal bands (P zero beyond key step i + k) with another k."""
    if np.ndim(step.ours) != 4:
        return ""
    ours, theirs = _band(step.ours), _band(step.theirs)
    if ours is None or theirs is None or ours == theirs:
        return ""
    if ours == theirs - 1:
        what = "the diagonal masked (a mask i > j where Keras keeps i >= j)"
    elif ours == theirs + 1:
        what = "one step beyond the diagonal kept: each query step sees the next key step (i + 1 >= j)"
    else:
        what = f"a causal mask shifted by {ours - theirs} steps"
    empty = [i for i in range(np.shape(step.ours)[2]) if i + ours < 0]
    if empty:
        rows = np.asarray(step.ours, np.float64)[:, :, empty]
        held = "uniform" if np.allclose(rows, rows[..., :1]) and rows.any() else "all zeros"
        fate = (
            f" Query step{'s' if len(empty) > 1 else ''} {_and(empty)} then keep{'' if len(empty) > 1 else 's'} no "
            f"key step: scratch's row there is {held} (a row masked whole)."
        )
    else:
        fate = ""
    return (
        f"scratch's P keeps the key steps {_steps(ours)} of query step i, Keras's {_steps(theirs)} (zero beyond, in "
        f"every sample and head): a causal mask off by {abs(ours - theirs)}, {what}?{fate}"
    )


def _softmax(s: Array, axis: int = -1) -> Array:
    e = np.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _mask_after_softmax(step: Step, steps: list[Step]) -> str:
    """Scratch's P nonzero where Keras's is exactly 0 (masked), or elsewhere the softmax over every key."""
    scores = _sibling(step, steps, "S", "forward")
    a, b = np.asarray(step.ours, np.float64), np.asarray(step.theirs, np.float64)
    masked = b == 0
    if scores is None or not masked.any() or masked.all():
        return ""
    full = _softmax(np.asarray(scores.ours, np.float64))
    kept = ~masked
    fit = _fit(step.ours)
    unrenormalised = _same(a[kept], full[kept], fit) and not _same(b[kept], full[kept], fit)
    where = "where Keras's is not, scratch's is the softmax of S over every key step, the masked ones included"
    leaked = masked & (a != 0)
    if 2 * leaked.sum() >= masked.sum():
        typical = float(np.median(a[leaked]))
        held = f" (about {typical:.3g} there: the mask's large negative adder)" if abs(typical) > 1 else ""
        return (
            f"scratch's P is nonzero at {int(leaked.sum())} of the {int(masked.sum())} positions where Keras's is "
            f"exactly 0 (the masked ones){held}"
            + (f"; {where}" if unrenormalised else "")
            + ": the mask applied after the softmax (added to the probabilities, not to the scores before it)?"
        )
    if unrenormalised and not (a[masked] != 0).any():
        return (
            f"scratch's P is 0 where Keras's is (the {int(masked.sum())} masked positions), but {where}, not "
            "renormalised over the kept ones (its rows sum to less than 1): the mask applied after the softmax "
            "(multiplied), not to the scores before it?"
        )
    return ""


def _merged(c: Array, order: str) -> Array:
    """The contexts C (B, N, T, Hv) merged to (B, T, N*Hv) in `order`."""
    b, n, t, h = c.shape
    if order == "keras":
        return c.transpose(0, 2, 1, 3).reshape(b, t, n * h)
    if order == "feature-major":
        return c.transpose(0, 2, 3, 1).reshape(b, t, h * n)
    if order == "reversed":
        return c[:, ::-1].transpose(0, 2, 1, 3).reshape(b, t, n * h)
    return c.reshape(b, t, n * h)  # "untransposed": (B, N, T, Hv) read as (B, T, N*Hv)


#: The merges of the heads' contexts recognised, beside Keras's (T, N, Hv), and how each is described.
MERGES = {
    "feature-major": "in (T, Hv, N) order, the head and feature axes swapped (head 0's feature 0, head 1's "
    "feature 0, ...)",
    "reversed": "with the heads in reverse order",
    "untransposed": "by a reshape of (N, T, Hv) to (T, N*Hv) without moving the heads axis after the time axis "
    "(rows of other time steps mixed in)",
}


def _merge_order(step: Step, steps: list[Step]) -> str:
    """The output A is the output projection of the contexts merged in another order: the projection fitted (least
    squares, with its bias) to Keras's output from Keras's contexts C (which agree with scratch's), then applied to
    each other merge of them."""
    context = _sibling(step, steps, "C", "forward")
    if context is None or np.ndim(context.theirs) != 4 or context.theirs.shape[1] < 2:
        return ""
    c = np.asarray(context.theirs, np.float64)
    b, n, t, h = c.shape
    rows = b * t
    if rows < 2 * (n * h + 1) or np.shape(step.theirs)[:2] != (b, t):
        return ""  # too few rows to pin the projection down

    def design(order: str) -> Array:
        return np.hstack([_merged(c, order).reshape(rows, -1), np.ones((rows, 1))])

    want = np.asarray(step.theirs, np.float64).reshape(rows, -1)
    got = np.asarray(step.ours, np.float64).reshape(rows, -1)
    w = np.linalg.lstsq(design("keras"), want, rcond=None)[0]
    fit = _fit(step.ours)
    if not _same(design("keras") @ w, want, fit):
        return ""
    for order, text in MERGES.items():
        if _same(design(order) @ w, got, fit):
            return (
                f"every head: scratch's output is Keras's output projection of the heads' contexts C (which agree) "
                f"merged {text}, where Keras lays them side by side head by head, (T, N, Hv): the heads merged in "
                "the wrong order?"
            )
    return ""


def _head_layout(step: Step, steps: list[Step]) -> str:
    """A per-head quantity (B, N, T, H) that holds Keras's values with the heads and features re-laid: merged in
    Keras's order and split again another way (or the reverse)."""
    a, b = np.asarray(step.ours, np.float64), np.asarray(step.theirs, np.float64)
    if a.ndim != 4 or a.shape[1] < 2 or a.shape[3] < 2:
        return ""
    bn, n, t, h = b.shape
    merged = b.transpose(0, 2, 1, 3).reshape(bn, t, n * h)
    layouts = {
        "split into heads in (H, N) order (the head and feature axes swapped)": merged.reshape(bn, t, h, n).transpose(
            0, 3, 1, 2
        ),
        "split by a reshape of (T, N*H) to (N, T, H) without a transpose": merged.reshape(bn, n, t, h),
    }
    fit = _fit(step.ours)
    for text, moved in layouts.items():
        if _same(a, moved, fit) and not _same(b, moved, fit):
            return (
                f"scratch's {step.quantity} holds Keras's values re-laid, its (T, N*H) columns {text}: "
                "the heads split or merged in the wrong order?"
            )
    return ""


def _softmax_vjp(step: Step, steps: list[Step]) -> str:
    """dS a wrong vector-Jacobian product of the row softmax, read from the agreeing P and dP."""
    probs, grad = _sibling(step, steps, "P", "forward"), _sibling(step, steps, "dL/dP", "backward")
    if probs is None or grad is None or np.shape(probs.ours) != np.shape(step.ours):
        return ""
    p, dp = np.asarray(probs.ours, np.float64), np.asarray(grad.ours, np.float64)
    keras = "Keras's is P * (dP - rowsum(P * dP)), the Jacobian diag(p) - p p^T applied to each row"
    candidates = [
        (p * dp, "scratch's dS is P * dP", "the softmax Jacobian's row-sum term (its - p p^T) dropped?"),
        (
            p * (1 - p) * dp,
            "scratch's dS is P (1 - P) * dP",
            "only the Jacobian's diagonal applied, elementwise as for a sigmoid (its - p_i p_j off the diagonal "
            "left out)?",
        ),
        (
            p * (dp - (p * dp).sum(axis=-2, keepdims=True)),
            "scratch's dS is P * (dP - colsum(P * dP))",
            "the row sum taken over the query axis (axis -2) instead of each row's keys?",
        ),
    ]
    fit = _fit(step.ours)
    for value, lead, hint in candidates:
        if _same(step.ours, value, fit) and not _same(step.theirs, value, fit):
            return f"{lead} (P and dP agree); {keras}: {hint}"
    return ""
