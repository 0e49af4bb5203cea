"""The BLAS threads chosen by the size of the work (from_scratch/threads.py): the rule, the sizes it reads off each
layer, the cap by the cores other processes leave free, the overrides, and that a model's pass really runs each
layer on the threads the rule gives and leaves the library as it found it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from from_scratch import Dense, Sequential, threads
from from_scratch.errors import BadInputError
from from_scratch.layers import Layer

threadpoolctl = pytest.importorskip("threadpoolctl")

#: How far the float64 gradients of 784-256-128-10 (batch 1024) may move when the BLAS runs on one thread instead of
#: two (np.testing.assert_allclose's rtol and atol). The threads split the products' sums differently: measured on
#: OpenBLAS's SkylakeX kernels, up to 4.6e-18 absolute, 2.2 ulps of each array's largest value, and no difference at
#: all under the Sandybridge and Haswell kernels. The atol is 200x that; a wrong thread count's real bug (a product
#: cut short, a stale buffer) moves gradients by their own size, about 1e-2.
THREAD_COUNT_RTOL, THREAD_COUNT_ATOL = 1e-12, 1e-15


@pytest.fixture
def two_threads(monkeypatch):
    """The BLAS on two threads (whatever the run set), the load cap off unless a test turns it on, the rule back
    afterwards."""
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        threads._get().read()
        monkeypatch.setattr(threads, "LOAD_CAP", False)
        yield
        threads.set_blas_threads(None)
    threads._get().read()


class ThreadSpy(Layer):
    """Identity with a (D, D) matrix parameter: records the BLAS threads in force in each forward and backward."""

    def __init__(self, width: int) -> None:
        self.name = "spy"
        self.width = width
        self.seen: list[tuple[str, int]] = []

    def build(self, input_shape, dtype, rng):
        self.W = np.zeros((self.width, self.width), dtype)
        self.dW = np.zeros_like(self.W)
        return input_shape

    @property
    def params(self):
        return [self.W]

    @property
    def grads(self):
        return [self.dW]

    def _now(self) -> int:
        return max(info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas")

    def forward(self, x, training=False):
        self.seen.append(("forward", self._now()))
        return x.copy()

    def backward(self, dy):
        self.seen.append(("backward", self._now()))
        return dy.copy()


def spy_model(width: int) -> tuple[Sequential, ThreadSpy]:
    spy = ThreadSpy(width)
    model = Sequential([spy, Dense(3, activation="softmax")], input_dim=width, seed=0)
    model.compile("sgd", "categorical_crossentropy")
    return model, spy


def batch(n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, width)), np.eye(3)[rng.integers(0, 3, n)]


def test_sizes_read_off_the_layers():
    x = np.zeros((64, 784))
    dense = Sequential.from_architecture("784-256-10", seed=0).layers[0]
    assert threads.product_size(dense, x) == 64 * 784 * 256
    conv = Sequential.from_architecture("28x28x1-conv8k3-pool2-flatten-10", seed=0).layers
    images = np.zeros((64, 28, 28, 1))
    assert threads.product_size(conv[0], images) == 64 * 28 * 28 * 9 * 8
    assert threads.product_size(conv[1], np.zeros((64, 26, 26, 8))) is None  # pooling: no product
    lstm = Sequential.from_architecture("8x16-lstm64-10", seed=0).layers[0]
    assert threads.product_size(lstm, np.zeros((64, 8, 16))) == 64 * 64 * 256  # h @ U, the loop's product


def test_the_rule_by_size(two_threads, monkeypatch):
    below, at = threads.SMALL_PRODUCT - 1, threads.SMALL_PRODUCT
    assert threads.threads_for(below, 2) == 1
    assert threads.threads_for(at, 2) == 2
    assert threads.threads_for(at, 2, free=1) == 1  # a core taken by another process
    assert threads.threads_for(None, 2) is None  # no product: left alone
    threads.set_blas_threads(3)
    assert threads.threads_for(below, 2) == 3 and threads.threads_for(None, 2) == 3


def test_a_pass_runs_each_layer_on_the_rules_threads_and_restores_the_library(two_threads):
    small, large = 16, 512  # N D D: 64*16*16 far below the threshold; 64*512*512 = 2^24 at it
    assert 64 * small * small < threads.SMALL_PRODUCT <= 64 * large * large
    for width, expected in ((small, 1), (large, 2)):
        model, spy = spy_model(width)
        model.train_step(*batch(64, width))
        assert spy.seen == [("forward", expected), ("backward", expected)], width
        assert threads._get().read() == 2  # put back after the pass
    threads.set_blas_threads(1)
    model, spy = spy_model(large)
    model.train_step(*batch(64, large))
    assert spy.seen == [("forward", 1), ("backward", 1)]


def test_an_outer_limit_is_the_ceiling():
    """threadpoolctl's own limit around a model's call holds: the rule never raises the threads above it."""
    model, spy = spy_model(512)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        model.train_step(*batch(64, 512))
        assert threads._get().read() == 1
    assert spy.seen == [("forward", 1), ("backward", 1)]


def test_the_load_cap_reads_other_processes(monkeypatch):
    """Other processes' CPU use over the interval, rounded to cores, is taken off the free cores (never below 1)."""
    load = threads._Load()
    load.cores = 2
    clock = {"t": 100.0, "busy": 50.0, "own": 5.0}
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(threads.time, "process_time", lambda: clock["own"])
    monkeypatch.setattr(threads, "_busy_seconds", lambda: clock["busy"])
    assert load.free_cores() == 2  # the first reading has no interval yet
    for other, own, free in ((0.1, 0.5, 2), (1.0, 0.5, 1), (1.6, 0.3, 1), (0.4, 1.5, 2)):
        clock["t"] += 1.0
        clock["own"] += own
        clock["busy"] += own + other
        assert load.free_cores() == free, (other, own)
        assert load.other == pytest.approx(other)
    clock["busy"] += 5.0  # within LOAD_INTERVAL the last reading stands
    clock["t"] += threads.LOAD_INTERVAL / 2
    assert load.free_cores() == 2


def test_the_result_does_not_depend_on_the_setting(two_threads):
    """The same gradients (to rounding: a BLAS may pick other kernels for another thread count) whatever the
    threads."""
    model = Sequential.from_architecture("784-256-128-10", seed=0)
    x, y = batch(1024, 784)[0], np.eye(10)[np.random.default_rng(1).integers(0, 10, 1024)]
    _, auto = model.loss_and_gradients(x, y)
    threads.set_blas_threads(1)
    _, one = model.loss_and_gradients(x, y)
    for a, b in zip(auto, one):
        np.testing.assert_allclose(a, b, rtol=THREAD_COUNT_RTOL, atol=THREAD_COUNT_ATOL)


@pytest.mark.parametrize("value", [0, -1, 1.5, "two", True])
def test_bad_settings_are_refused(value):
    with pytest.raises(BadInputError, match="set_blas_threads"):
        threads.set_blas_threads(value)


def test_a_bad_environment_setting_is_one_line_and_exit_2():
    env = {**os.environ, threads.ENV: "lots"}
    code = "from compare.cli import main; import sys; sys.exit(main(['compare', '--arch', '4-3']))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-500:]
    assert "BACKPROP_PARITY_BLAS_THREADS='lots'" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_environment_setting_fixes_the_threads():
    code = (
        "import numpy as np, threadpoolctl\n"
        "from from_scratch import Sequential, threads\n"
        "m = Sequential.from_architecture('784-256-10', seed=0)\n"
        "seen = []\n"
        "layer = m.layers[0]\n"
        "orig = layer.forward\n"
        "def spy(x, training=False):\n"
        "    seen.append(max(i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'))\n"
        "    return orig(x, training)\n"
        "layer.forward = spy\n"
        "m.forward(np.zeros((4, 784)))\n"
        "print(seen, threads.describe())\n"
    )
    env = {**os.environ, threads.ENV: "1", "OPENBLAS_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.startswith("[1] BLAS threads fixed at 1")
