"""The bit-for-bit comparison of the same-bits tests (tests/test_*_same_bits.py): a faster version of a layer must
give exactly what the version it replaced gave, so each test runs both on the same inputs and compares the bit
patterns of every array, -0.0 against 0.0 and one ulp included."""

from __future__ import annotations

import numpy as np


def differing_bits(a: object, b: object, nan_sign_and_payload: bool = True) -> str | None:
    """None when a and b have the same dtype, shape and bit pattern (so -0.0 differs from 0.0, and one ulp counts),
    else what differs. With `nan_sign_and_payload` False, NaNs need only stand at the same places (of any sign and
    payload: NumPy's loops pass on one operand's NaN or the other's depending on the loop length and processor)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"{a.dtype}{a.shape} vs {b.dtype}{b.shape}"
    if a.dtype == bool:
        return None if np.array_equal(a, b) else f"{int((a != b).sum())} booleans differ"
    ua = np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")
    ub = np.ascontiguousarray(b).view(f"u{b.dtype.itemsize}")
    differ = ua != ub
    if not nan_sign_and_payload and np.issubdtype(a.dtype, np.floating):
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        differ = differ & ~(nan_a & nan_b) | (nan_a != nan_b)
    n = int(differ.sum())
    return None if n == 0 else f"{n} of {a.size} values differ in their bits"


def check_the_comparison(differing=differing_bits) -> None:
    """The comparison fails on the smallest wrong answers: one ulp, the sign of a zero, another dtype, a NaN where
    there was a number (and a number where there was a NaN)."""
    a = np.array([1.0, 0.0, np.nan], "float32")
    assert differing(a, a.copy()) is None
    one_ulp = a.copy()
    one_ulp[0] = np.nextafter(one_ulp[0], np.float32(2))
    assert differing(a, one_ulp) == "1 of 3 values differ in their bits"
    negative_zero = a.copy()
    negative_zero[1] = -0.0
    assert differing(a, negative_zero) is not None
    not_a_nan = a.copy()
    not_a_nan[2] = np.inf
    assert differing(a, not_a_nan) is not None and differing(not_a_nan, a) is not None
    assert differing(a, a.astype("float64")) is not None
