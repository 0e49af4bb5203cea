"""Tolerances, each a named constant with its reason, and the error measures they apply to.

Two measures are reported for every compared tensor pair (a from scratch, b from Keras):
- max abs error   max_i |a_i - b_i|
- max rel error   max_i |a_i - b_i| / max(max_i |a_i|, max_i |b_i|)   (relative to the larger tensor's largest entry)

The PASS/FAIL decision uses one figure per row, `error`:
- float64:  ||a - b|| / max(||a||, ||b||, CANCELLATION_FLOOR ||M||, (F64_ROUNDING_FACTOR / F64_TOL) ||b' - c||)
            must be <= F64_TOL (plain norm-relative unless the tensor is a near-total cancellation of its terms M,
            see below; M is the magnitude of the terms each entry sums, compare/terms.py: a floating-point sum of n
            terms carries an error of order u sqrt(n) sum |terms|, not u |sum|; or unless one ulp on every input and
            weight moves Keras's own value to b', c the side nearer to b', by more than F64_TOL / F64_ROUNDING_FACTOR
            of it)
- float32:  against the float64 truth T (Keras in float64 on the same weights and batch):
            max(||a - T|| / max(||b - T||, ||b' - T||, f), ||b - T|| / max(||a - T||, ||b' - T||, f))
            must be <= F32_FACTOR, with b' Keras's float32 result on values one ulp off and f = F32_FLOOR ||T||
            (`truth_rel_error`). It needs nothing from the layer, so it serves user layers too. (Term magnitudes were
            the float32 bound before; below a BatchNormalization they are 1e5 to 1e8 times the gradient, and a
            halved dX passed.)
"""

from __future__ import annotations

import numpy as np

#: float64 norm-relative bound. Measured: ~5e-16 on the default 64-32-16-10 case, ~2e-14 at the worst of random
#: architectures with inputs scaled up to x30 (errors grow with depth and scale, never with a formula difference).
#: A formula difference (a missing 1/N, a wrong kink value) shows up at 1e-3 or more: 1e-12 separates them by 9
#: orders of magnitude.
F64_TOL = 1e-12

#: float64: a difference up to F64_ROUNDING_FACTOR times what float64 rounding alone moves Keras's own value also
#: passes, the rounding gauged as the float32 rule gauges it: ||b' - c||, b' Keras's float64 result with every nonzero
#: input and weight moved by one ulp, c whichever side is nearer to b' (a wrong side cannot widen its own bound).
#: Deep graphs amplify rounding past F64_TOL without any formula differing: in MobileNetV2 (alpha 0.35, 32x32x3,
#: batch 4: 52 BatchNormalizations at batch statistics over as few as 4 values) correct gradients differ by 1.1e-12
#: to 2.4e-12 norm-relative, and a bias-free conv's BatchNormalization beta whose exact gradient is 0 (the next
#: BatchNormalization removes any per-channel shift) by 0.8 to 1.5 (both sides ~1e-16 noise), while term
#: magnitudes, the chain's cancellation floor, overflow over 50 such layers. 64 as for float32 (`F32_FACTOR`): a
#: wrong formula moves a quantity by 1e-3 of itself or more, which passes only where one ulp moves it by 1.6e-5 of
#: itself, a quantity that is rounding noise.
F64_ROUNDING_FACTOR = 64.0

#: A gradient whose terms cancel almost completely is rounding noise of size ~u ||M|| whatever its exact value:
#: a Dense bias followed by BatchNormalization has dL/db = 0 exactly in exact arithmetic, and both sides return
#: ~1e-16 of different sign (found by the property-based test: norm-relative error 1.0 on a correct model).
#: Below CANCELLATION_FLOOR ||M|| the float64 measure is taken relative to that floor, so the allowed error is
#: F64_TOL x 1e-3 ||M|| = 1e-15 ||M|| (a few ulps of the terms); above it, it is plain norm-relative.
CANCELLATION_FLOOR = 1e-3

#: float32: how many times farther from the float64 truth T (Keras in float64 on the same weights and batch) a
#: float32 side may be than float32 rounding explains, gauged by the other side and by a second Keras sample (every
#: nonzero input and weight one ulp off): see `truth_rel_error`. Two correct float32 implementations each carry
#: their own rounding; for a quantity summed from many terms the two are of the same size, but where a value is a
#: cancellation inside an elementary function the two differ by more than Keras's samples show, since both samples
#: use TensorFlow's own exp: ELU's exp(z) - 1 at z ~ 0.004 differs between NumPy's and TensorFlow's float32 exp by
#: one ulp of exp(z), 1.5e-5 of the value, and a BatchNormalization at batch 4 with that spread amplified it into a
#: dgamma 58 times farther from T than Keras's (4-1:elu-bn-3:linear, bce from logits, inputs x0.01). Measured on
#: correct models: median 0.31, maximum 58.4 over 500 random float32 configurations (depth 0-3, batches 2-24,
#: inputs x0.01 to x10, BN chains), 42.6 in 2,000 property-test examples, at most 1 over the 294 float32 entries of
#: the matrix; a wrong formula gives 1e4 or more (a 0.1% perturbation of any row: about 1e4), the BatchNorm cases
#: of tests/test_harness_rows.py 3e4 or more.
F32_FACTOR = 64.0

#: float32: the least distance from the truth the rule allows, relative to ||T||: a Keras float32 result that
#: happens to be (nearly) exact must not make the bound zero. 1e-6 is about 8 float32 ulps (u = 6e-8 relative).
F32_FLOOR = 1e-6

#: Numerical-gradient witness (float64, central differences with h = 1e-5): largest |analytic - numerical| over
#: the sampled coordinates, relative to the largest sampled magnitude. Truncation h^2 |f'''| / 6 plus rounding
#: eps |L| / h is ~3e-11 absolute for losses of order one; 1e-6 leaves room for larger curvature and catches a
#: perturbed gradient entry of relative size 1e-6 or more.
GRADCHECK_TOL = 1e-6

#: The numerical witness of a loss delivered in float32 arithmetic (a layer that computes in float32 inside, found by
#: `from_scratch.gradcheck.arithmetic_precision`), with float32's step h = 8.1e-3: truncation h^2 |f'''| / 6 plus the
#: rounding of a few float32 ulps of |L| over h. Measured on correct layers (tanh computed in float32, a Dense
#: computing in float32, an LSTM storing its states as float32; float32 and float64 checks, six seeds each): 1.0e-5 to
#: 1.3e-4. A forward pass 1% off (tanh(1.01 x) for tanh) reads 7e-3 to 1e-2; 1e-3 stands between them.
GRADCHECK_TOL_F32 = 1e-3

#: Weights copied into Keras and read back must be bit-identical.
ROUND_TRIP_TOL = 0.0


def max_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    """max_i |a_i - b_i| (0 for empty tensors)."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(diff.max()) if diff.size else 0.0


def max_rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max_i |a_i - b_i| / max(max|a|, max|b|); 0 when both tensors are all zero and equal."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    err = max_abs_error(a, b)
    return _ratio(err, scale)


def norm_rel_error(
    a: np.ndarray,
    b: np.ndarray,
    scale: np.ndarray | None = None,
    floor: float = 0.0,
    b_again: np.ndarray | None = None,
) -> float:
    """||a - b|| / max(||a||, ||b||, floor ||scale||, (F64_ROUNDING_FACTOR / F64_TOL) min(||b' - b||, ||b' - a||))
    with b' = `b_again` (Keras's result on values one ulp off: float64 rounding's own reach, measured from the side
    nearer to it, so that a wrong value on either side cannot widen its own bound); with floor=0 and a scale:
    ||a - b|| / ||scale||. Term magnitudes that overflowed (a bound compounded over many layers) are not used."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = float(np.linalg.norm(a - b))
    m = None if scale is None else float(np.linalg.norm(np.asarray(scale, np.float64)))
    if m is not None and not np.isfinite(m):
        m = None
    if m is not None and floor == 0:
        return _ratio(err, m)
    denom = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    if m is not None:
        denom = max(denom, floor * m)
    if b_again is not None and np.shape(b_again) == b.shape:
        again = np.asarray(b_again, np.float64)  # the nearer side to b': a wrong side cannot widen its own bound
        moved = min(float(np.linalg.norm(again - b)), float(np.linalg.norm(again - a)))
        if np.isfinite(moved):
            denom = max(denom, F64_ROUNDING_FACTOR / F64_TOL * moved)
    return _ratio(err, denom)


#: float32, a quantity that is exactly 0 in exact arithmetic (a Dense bias feeding BatchNormalization through linear
#: layers): its float64 truth is itself rounding noise, ||T|| <= ZERO_TRUTH ||M|| with M its summed terms, so
#: ||T|| says nothing about float32's noise; there the floor is one float32 rounding unit of the terms,
#: F32_ZERO_FLOOR ||M|| (found by the long property test: 4-1:linear-1:linear-1:linear-bn-3:softmax, batch 2,
#: float32: ||T|| = 1e-15, ||M|| = 1e3, scratch 2e-7 from T and Keras exactly 0). Only where T is float64 noise:
#: below a BN layer the gradients are 1e-5 to 1e-8 of their terms, and there the strict rule applies.
ZERO_TRUTH = 1e-12
F32_ZERO_FLOOR = 2.0**-24


def truth_rel_error(
    a: np.ndarray, b: np.ndarray, truth: np.ndarray, terms: np.ndarray | None = None, b_again: np.ndarray | None = None
) -> float:
    """How many times farther from the float64 truth T one float32 side is than float32 rounding explains:

        max(||a - T|| / max(||b - T||, ||b' - T||, floor),  ||b - T|| / max(||a - T||, ||b' - T||, floor))

    with b' Keras's float32 result with every input and weight moved by one ulp (a second sample of how far float32
    rounding moves the quantity, its conditioning included) and floor = F32_FLOOR ||T||. The scratch side a is
    gauged by Keras's rounding; the Keras side b by the other two, so a wrong Keras-side value cannot widen its own
    bound. With term magnitudes M and a truth that is float64 noise (||T|| <= ZERO_TRUTH ||M||), the floor is
    F32_ZERO_FLOOR ||M||."""
    a, b, t = (np.asarray(v, np.float64) for v in (a, b, truth))
    da, db = float(np.linalg.norm(a - t)), float(np.linalg.norm(b - t))
    db2 = float(np.linalg.norm(np.asarray(b_again, np.float64) - t)) if b_again is not None else 0.0
    floor = F32_FLOOR * float(np.linalg.norm(t))
    if terms is not None:
        m = float(np.linalg.norm(np.asarray(terms, np.float64)))
        if np.isfinite(m) and float(np.linalg.norm(t)) <= ZERO_TRUTH * m:  # an overflowed bound is no floor
            floor = max(floor, F32_ZERO_FLOOR * m)
    return max(_ratio(da, max(db, db2, floor)), _ratio(db, max(da, db2, floor)))


def _ratio(err: float, scale: float) -> float:
    if err == 0:
        return 0.0
    return err / scale if scale > 0 else float("inf")
