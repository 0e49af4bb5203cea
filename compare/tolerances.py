"""Tolerances, each a named constant with its reason, and the error measures they apply to.

Two measures are reported for every compared tensor pair (a from scratch, b from Keras):
- max abs error   max_i |a_i - b_i|
- max rel error   max_i |a_i - b_i| / max(max_i |a_i|, max_i |b_i|)   (relative to the larger tensor's largest entry)

The PASS/FAIL decision uses a norm-based measure, `checked`:
- float64:  ||a - b|| / max(||a||, ||b||, CANCELLATION_FLOOR ||M||)   must be <= F64_TOL
            (plain norm-relative unless the tensor is a near-total cancellation of its terms M, see below)
- float32:  ||a - b|| / ||M||  for gradients, where M is the magnitude of the terms each entry sums
            (|A_prev|^T |dZ| for dW, sum_n |dZ| for db, |dZ| |W|^T for dX, with |dZ| itself propagated through
            |W| and |f'(Z)|; see compare/scales.py); ||a - b|| / max(||a||, ||b||) for loss and outputs.
            Must be <= F32_TOL.
The float32 gradient measure is derived from the computation itself: a floating-point sum of n terms carries an
error of order u sqrt(n) sum |terms| (u = 2^-24), not u |sum|. Where terms cancel (a bias gradient summed over a
batch whose dZ has both signs), |sum| is small and a plain relative error inflates without anything being wrong;
measuring against the terms' magnitude keeps the bound honest and still tight.
"""

from __future__ import annotations

import numpy as np

#: float64 norm-relative bound. Measured: ~5e-16 on the default 64-32-16-10 case, ~2e-14 at the worst of random
#: architectures with inputs scaled up to x30 (errors grow with depth and scale, never with a formula difference).
#: A formula difference (a missing 1/N, a wrong kink value) shows up at 1e-3 or more: 1e-12 separates them by 9
#: orders of magnitude.
F64_TOL = 1e-12

#: A gradient whose terms cancel almost completely is rounding noise of size ~u ||M|| whatever its exact value:
#: a Dense bias followed by BatchNormalization has dL/db = 0 exactly in exact arithmetic, and both sides return
#: ~1e-16 of different sign (found by the property-based test: norm-relative error 1.0 on a correct model).
#: Below CANCELLATION_FLOOR ||M|| the float64 measure is taken relative to that floor, so the allowed error is
#: F64_TOL x 1e-3 ||M|| = 1e-15 ||M|| (a few ulps of the terms); above it, it is plain norm-relative.
CANCELLATION_FLOOR = 1e-3

#: float32: how many times farther from the float64 truth T (Keras in float64 on the same weights and batch) the
#: scratch float32 result may be than Keras's own float32 result: ||a - T|| <= F32_FACTOR max(||b - T||,
#: F32_FLOOR ||T||). Two correct float32 implementations each carry their own rounding, of the same order; a
#: formula difference puts the scratch side far outside. Layer-agnostic: no term magnitudes needed.
F32_FACTOR = 10.0

#: float32: the least distance from the truth the rule allows, relative to ||T||: a Keras float32 result that
#: happens to be (nearly) exact must not make the bound zero. 1e-6 is about 8 float32 ulps (u = 6e-8 relative).
F32_FLOOR = 1e-6

#: Numerical-gradient witness (float64, central differences with h = 1e-5): largest |analytic - numerical| over
#: the sampled coordinates, relative to the largest sampled magnitude. Truncation h^2 |f'''| / 6 plus rounding
#: eps |L| / h is ~3e-11 absolute for losses of order one; 1e-6 leaves room for larger curvature and catches a
#: perturbed gradient entry of relative size 1e-6 or more.
GRADCHECK_TOL = 1e-6

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


def norm_rel_error(a: np.ndarray, b: np.ndarray, scale: np.ndarray | None = None, floor: float = 0.0) -> float:
    """||a - b|| / max(||a||, ||b||, floor ||scale||); with floor=0 and a scale: ||a - b|| / ||scale||."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = float(np.linalg.norm(a - b))
    if scale is not None and floor == 0:
        return _ratio(err, float(np.linalg.norm(np.asarray(scale, np.float64))))
    denom = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    if scale is not None:
        denom = max(denom, floor * float(np.linalg.norm(np.asarray(scale, np.float64))))
    return _ratio(err, denom)


def truth_rel_error(a: np.ndarray, b: np.ndarray, truth: np.ndarray) -> float:
    """||a - T|| / max(||b - T||, F32_FLOOR ||T||): scratch's distance from the float64 truth in units of Keras's."""
    a, b, t = (np.asarray(v, np.float64) for v in (a, b, truth))
    err = float(np.linalg.norm(a - t))
    return _ratio(err, max(float(np.linalg.norm(b - t)), F32_FLOOR * float(np.linalg.norm(t))))


def _ratio(err: float, scale: float) -> float:
    if err == 0:
        return 0.0
    return err / scale if scale > 0 else float("inf")
