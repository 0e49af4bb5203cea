"""Shared fixtures. keras_impl is imported first, so that its TensorFlow settings (oneDNN off, op determinism) are
pinned before any test module imports TensorFlow itself; keras_impl.settings() reports it if they were not."""

import os

import numpy as np
import pytest

from from_scratch.threads import usable_cores


def _share_the_cores() -> int | None:
    """Under pytest-xdist, each worker's share of the cores: cores // workers (at least 1), set as the thread count
    of TensorFlow's pools (read when its runtime starts, after this) and of the BLAS (here, and through
    OPENBLAS_NUM_THREADS for the processes the tests start), so that workers times threads never exceed the cores.
    None in a run without workers (the library defaults stand)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return None
    share = max(1, usable_cores() // int(workers))
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, str(share))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return share
    threadpool_limits(limits=share, user_api="blas")
    return share


WORKER_THREADS = _share_the_cores()

import keras_impl  # noqa: E402, F401 (before any TensorFlow import; after the worker's thread counts)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
