"""Benchmark suite: is the NumPy network fast where it counts?

Run by hand (never from the test suite):

    .venv/bin/python benchmarks/bench.py                 # full run, about 4-5 minutes on 2 cores
    .venv/bin/python benchmarks/bench.py --quick         # smoke run, about a minute
    .venv/bin/python benchmarks/bench.py --sections 1,5  # some sections only

Five measurements in one run, each the median of several timed calls after a warm-up (`time.perf_counter`), most of
them reported as ratios:

1. scratch gradient step (`Sequential.loss_and_gradients`) and train step (+ in-place SGD) against the Keras twin's
   `tf.function`-compiled GradientTape step (+ `SGD.apply_gradients`), 784-256-128-10, float32/float64, batch
   32/128/1024, in one process with the same weights;
2. the scratch step against its arithmetic bound (matmul FLOPs / measured 1024x1024 matmul throughput);
3. end to end: wall time and peak RSS of `python -m compare compare` and of `python -c "import tensorflow"`;
4. scaling of the scratch step with width and batch, next to the FLOP count;
5. the thread-pool question: the scratch step without TensorFlow in the process, and with TensorFlow imported and a
   Keras step run, under several thread settings (each in its own child process), plus the scratch and Keras
   steps while a neighbour process competes for the cores.

The machine may be shared: every measurement also records how many cores' worth of CPU *other* processes used
meanwhile (from /proc/stat minus this process's own CPU time), retries a disturbed measurement after waiting for
the machine to go idle (full run only, at most --patience seconds in all), and reports that "other load" next to
the numbers.

Progress and TensorFlow's log lines go to stderr; the report (text tables, then the same tables as Markdown for
benchmarks/README.md) to stdout. Child processes get the environment this script started with.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
from tabulate import tabulate

from from_scratch.arch import Architecture
from from_scratch.model import Sequential

#: The environment this script was started with, before keras_impl sets its TensorFlow variables: children get it.
BASE_ENV: dict[str, str] = dict(os.environ)

ARCH = "784-256-128-10"
LOSS = "categorical_crossentropy"
LR = 0.01
BATCHES = (32, 128, 1024)
DTYPES = ("float32", "float64")
SCALE_WIDTHS = (64, 128, 256, 512)
SCALE_BATCHES = (32, 64, 128, 256, 512, 1024)
TARGET_RATIO = 0.7
#: Other processes using more than this many cores during a measurement make it "disturbed" (retried, flagged).
IDLE_THRESHOLD = 0.15

T = TypeVar("T")


# ----- timing --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """How long to time one measurement: `seconds` of timed calls, clamped to [min_reps, max_reps] calls, after
    at least `warmup` untimed calls and `warmup_seconds` (long enough for an idle thread pool of the other library
    to stop spinning: OpenBLAS's default is 2^28 cycles, about 0.1 s). A disturbed measurement is repeated up to
    `retries` times, waiting at most `patience` seconds in all (per process) for the machine to go idle."""

    seconds: float
    min_reps: int
    max_reps: int
    warmup: int
    warmup_seconds: float
    retries: int
    patience: float


FULL = Budget(seconds=0.6, min_reps=9, max_reps=400, warmup=3, warmup_seconds=0.15, retries=3, patience=30.0)
QUICK = Budget(seconds=0.12, min_reps=5, max_reps=60, warmup=2, warmup_seconds=0.05, retries=0, patience=0.0)


@dataclass
class Timing:
    """Per-call wall times of one measurement (seconds), and the other processes' load meanwhile (cores)."""

    times: list[float] = field(default_factory=list)
    other: float = float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def ms(self) -> float:
        return self.median * 1e3

    @property
    def p90_ms(self) -> float:
        """90th percentile per call, in ms (shows intermittent stalls that leave the median alone)."""
        return float(np.percentile(self.times, 90)) * 1e3

    @property
    def spread(self) -> float:
        """Inter-quartile range relative to the median: a noise indicator (0.05 = 5%)."""
        if len(self.times) < 4:
            return float("nan")
        q1, _, q3 = statistics.quantiles(self.times, n=4)
        return (q3 - q1) / self.median


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (user, nice, system, irq, softirq, steal), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLOCK_TICKS


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMeter:
    """Cores' worth of CPU used by other processes (and hypervisor steal) during a `with` block: the machine's busy
    time minus this process's and its reaped children's. NaN where /proc/stat is missing. Resolution: one clock
    tick (10 ms) per interval, so short blocks read noisy."""

    other: float = float("nan")

    def __enter__(self) -> CpuMeter:
        self._start = (_machine_busy_seconds(), _own_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        busy0, own0, t0 = self._start
        busy1, own1, t1 = _machine_busy_seconds(), _own_seconds(), time.perf_counter()
        if busy0 is not None and busy1 is not None and t1 > t0:
            self.other = max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


class IdleGuard:
    """Repeats a measurement that other processes disturbed, after waiting for the machine to go idle."""

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self.waited = 0.0
        self.disturbed = 0

    def wait_for_idle(self) -> bool:
        """Poll in 0.5 s windows until one is quiet; False when the patience is used up."""
        while self.waited < self.patience:
            with CpuMeter() as meter:
                time.sleep(0.5)
            self.waited += 0.5
            if meter.other <= IDLE_THRESHOLD:
                return True
        return False

    def clean(self, run: Callable[[], T], retries: int) -> tuple[T, float]:
        """run() under a CpuMeter, repeated (up to `retries` times) while the other load exceeds the threshold."""
        for attempt in range(retries + 1):
            if attempt and not self.wait_for_idle():
                break
            with CpuMeter() as meter:
                result = run()
            if not meter.other > IDLE_THRESHOLD:
                return result, meter.other
        self.disturbed += 1
        return result, meter.other


GUARD = IdleGuard(0.0)


def _warm_up(fns: Sequence[Callable[[], Any]], budget: Budget) -> float:
    """Call the fns in turn, untimed, for the warm-up budget; return the mean seconds per round."""
    start, rounds = time.perf_counter(), 0
    while rounds < budget.warmup or (time.perf_counter() - start < budget.warmup_seconds and rounds < 500):
        for fn in fns:
            fn()
        rounds += 1
    return (time.perf_counter() - start) / rounds


def _reps(per_call: float, seconds: float, budget: Budget) -> int:
    return max(budget.min_reps, min(budget.max_reps, int(seconds / max(per_call, 1e-9))))


def _timed(fn: Callable[[], Any], reps: int, into: list[float]) -> None:
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        into.append(time.perf_counter() - start)


def measure(fn: Callable[[], Any], budget: Budget, guarded: bool = True) -> Timing:
    """Per-call times of `fn` after a warm-up (retried if disturbed, when `guarded`)."""

    def run() -> Timing:
        timing = Timing()
        _timed(fn, _reps(_warm_up([fn], budget), budget.seconds, budget), timing.times)
        return timing

    if not guarded:
        with CpuMeter() as meter:
            timing = run()
        timing.other = meter.other
        return timing
    timing, timing.other = GUARD.clean(run, budget.retries)
    return timing


def measure_blocks(fns: Sequence[Callable[[], Any]], budget: Budget, rounds: int = 3) -> list[Timing]:
    """Several functions timed in alternating blocks (f1, f2, ..., f1, f2, ...), each block after its own warm-up,
    so that slow drift of the machine's speed and background load hit all alike, while none runs in another's
    wake. Each function gets about `budget.seconds` of timed calls in all."""

    def run() -> list[Timing]:
        timings = [Timing() for _ in fns]
        for _ in range(rounds):
            for fn, timing in zip(fns, timings):
                per_call = _warm_up([fn], budget)
                _timed(fn, max(2, _reps(per_call, budget.seconds, budget) // rounds), timing.times)
        return timings

    timings, other = GUARD.clean(run, budget.retries)
    for timing in timings:
        timing.other = other
    return timings


def measure_interleaved(fa: Callable[[], Any], fb: Callable[[], Any], budget: Budget) -> tuple[Timing, Timing]:
    """Two functions alternated call by call (as `backprop-parity train` alternates the two sides' steps); each
    call is timed on its own."""

    def run() -> tuple[Timing, Timing]:
        ta, tb = Timing(), Timing()
        reps = _reps(_warm_up([fa, fb], budget), budget.seconds, budget)
        for _ in range(reps):
            _timed(fa, 1, ta.times)
            _timed(fb, 1, tb.times)
        return ta, tb

    (ta, tb), other = GUARD.clean(run, budget.retries)
    ta.other = tb.other = other
    return ta, tb


# ----- the machine -----------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def core_count() -> str:
    """Logical CPUs, and how many this process may run on when that differs."""
    total = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = total
    return f"{total}" if usable == total else f"{total} ({usable} usable)"


def blas_info() -> list[dict[str, Any]]:
    """Thread pools (BLAS, OpenMP) loaded in this process, via threadpoolctl when it is installed, else []."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return threadpool_info()


def blas_threads() -> list[int]:
    """Thread counts of the BLAS libraries loaded in this process (empty without threadpoolctl)."""
    return [p["num_threads"] for p in blas_info() if p.get("user_api") == "blas"]


def blas_summary() -> str:
    """One line naming NumPy's BLAS: library, version, kernel architecture and thread count."""
    pools = [p for p in blas_info() if p.get("user_api") == "blas" and "numpy" in p.get("filepath", "")]
    if pools:
        p = pools[0]
        return (
            f"{p.get('internal_api')} {p.get('version')}, {p.get('num_threads')} {p.get('threading_layer')} threads, "
            f"kernels {p.get('architecture')} (threadpoolctl)"
        )
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]  # type: ignore[index]
        return f"{blas.get('name')} {blas.get('version')} (NumPy build info; threadpoolctl not installed)"
    except Exception:  # noqa: BLE001 (older NumPy has no dict mode)
        return "unknown (threadpoolctl not installed)"


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def code_version() -> str:
    """The project's git commit (read-only `git` calls), with a mark when files differ from it."""
    import from_scratch

    root = os.path.dirname(os.path.dirname(os.path.abspath(from_scratch.__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty else ''}"


def machine_lines() -> list[tuple[str, str]]:
    """(name, value) pairs describing the machine and software; cores and BLAS first."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    env = [f"{k}={v}" for k, v in sorted(BASE_ENV.items())
           if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOTO", "TF_NUM", "TF_ENABLE_ONEDNN"))]
    tf_dist = "tensorflow-cpu" if version("tensorflow-cpu") != "not installed" else "tensorflow"
    return [
        ("cores", core_count()),
        ("BLAS", blas_summary()),
        ("CPU", cpu_model()),
        ("thread env", ", ".join(env) or "(none set)"),
        ("date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("code", f"git {code_version()}"),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        (tf_dist, version(tf_dist)),
        ("keras", version("keras")),
        ("load average at start", load),
    ]


# ----- the networks ----------------------------------------------------------------------------------------------
def make_batch(n: int, input_dim: int, classes: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic batch: X ~ N(0, 1) (n, input_dim) and one-hot Y (n, classes)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, input_dim)).astype(dtype)
    y = np.eye(classes, dtype=dtype)[rng.integers(0, classes, n)]
    return x, y


def scratch_setup(arch: str, dtype: str, n: int) -> tuple[Sequential, np.ndarray, np.ndarray]:
    """A scratch model (seed 0) and a batch of n samples for it."""
    model = Sequential.from_architecture(Architecture.parse(arch), dtype=dtype, seed=0)
    x, y = make_batch(n, model.input_dim, model.output_dim, dtype)
    return model, x, y


def dense_shapes(model: Sequential) -> list[tuple[int, int]]:
    """(D, M) of every Dense kernel in `model`."""
    return [tuple(layer.W.shape) for layer in model.layers if getattr(layer, "W", None) is not None]


def first_layer_dx_computed(model: Sequential, x: np.ndarray, y: np.ndarray) -> bool:
    """Whether `loss_and_gradients` computes the first layer's dX = dZ @ W.T (dL/dX of the input), observed by
    wrapping that layer's `backward_from_z` for one call and looking at what it returned."""
    first = model.layers[0]
    original = getattr(first, "backward_from_z", None)
    if original is None:
        return True  # not a Dense layer: assume the worst case, every dX computed
    returned: list[bool] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        returned.append(out is not None)
        return out

    first.backward_from_z = spy  # an instance attribute shadows the method for this one call
    try:
        model.loss_and_gradients(x, y, LOSS)
    finally:
        del first.backward_from_z
    return bool(returned and returned[-1])


def step_flops(shapes: Sequence[tuple[int, int]], n: int, first_dx: bool) -> int:
    """Matmul FLOPs of one forward + backward pass. Per Dense layer (D, M): forward Z = X W, 2NDM; backward
    dW = X^T dZ, 2NDM, and dX = dZ W^T, 2NDM (for the first layer only when `first_dx`). Element-wise work (bias,
    activations, softmax, loss, bias gradients) is O(NM), not O(NDM), and is not counted."""
    return sum(2 * n * d * m * (3 if (i > 0 or first_dx) else 2) for i, (d, m) in enumerate(shapes))


def scratch_step(model: Sequential, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
    """The scratch gradient step: forward + backward, the loss and every gradient."""
    return lambda: model.loss_and_gradients(x, y, LOSS)


def scratch_train_step(model: Sequential, x: np.ndarray, y: np.ndarray, lr: float = LR) -> Callable[[], Any]:
    """The scratch train step: the gradient step, then plain SGD w -= lr * g in place on every parameter."""
    params = [p for layer in model.layers for p in layer.params]
    lr_t = model.dtype.type(lr)

    def step() -> float:
        loss, grads = model.loss_and_gradients(x, y, LOSS)
        for p, g in zip(params, grads):
            p -= lr_t * g
        return loss

    return step


def matmuls_only(shapes: Sequence[tuple[int, int]], n: int, dtype: str, first_dx: bool) -> Callable[[], None]:
    """Only the matmuls of one scratch step, same shapes and memory layouts (X @ W, X.T @ dZ, dZ @ W.T): what the
    step would cost if its element-wise work were free."""
    rng = np.random.default_rng(1)
    operands = []
    for i, (d, m) in enumerate(shapes):
        x, w, dz = (rng.standard_normal(s).astype(dtype) for s in ((n, d), (d, m), (n, m)))
        operands.append((x, w, dz, i > 0 or first_dx))

    def run() -> None:
        for x, w, dz, dx in operands:
            x @ w
            x.T @ dz
            if dx:
                dz @ w.T

    return run


GEMM_SIZE = 1024
GEMM_FLOPS = 2 * GEMM_SIZE**3


def gemm_call(dtype: str) -> Callable[[], Any]:
    """One GEMM_SIZE x GEMM_SIZE by GEMM_SIZE x GEMM_SIZE NumPy matmul in `dtype` (GEMM_FLOPS FLOPs)."""
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((GEMM_SIZE, GEMM_SIZE)).astype(dtype) for _ in range(2))
    out = np.empty((GEMM_SIZE, GEMM_SIZE), dtype=dtype)
    return lambda: np.matmul(a, b, out=out)


def gemm_probe() -> str:
    """float32 and float64 GEMM throughput right now (a short measurement, to see the machine's speed drift)."""
    probe = Budget(seconds=0.3, min_reps=5, max_reps=100, warmup=2, warmup_seconds=0.05, retries=0, patience=0.0)
    parts = []
    for dtype in DTYPES:
        t = measure(gemm_call(dtype), probe, guarded=False)
        parts.append(f"{dtype} {GEMM_FLOPS / t.median / 1e9:.0f}")
    return ", ".join(parts) + f" GFLOP/s (other load {t.other:.2f})"


# ----- Keras -----------------------------------------------------------------------------------------------------
def keras_steps(model: Sequential, x: np.ndarray, y: np.ndarray, lr: float = LR) -> dict[str, Any]:
    """The Keras twin of `model` (its weights copied in) with tf.function-compiled gradient and train steps.

    Returns "grad_step" and "train_step" closures over constant input tensors, and "first": the first gradient
    step's (loss, grads) in NumPy, for the sanity check. Imports keras_impl, hence TensorFlow, on first use.
    """
    import keras
    import tensorflow as tf

    import keras_impl

    dtype = str(model.dtype)
    km = keras_impl.build_model(model.architecture, dtype)
    km.set_weights(model.get_weights())
    loss_obj = keras.losses.CategoricalCrossentropy(dtype=dtype)
    variables = km.trainable_variables
    optimizer = keras.optimizers.SGD(learning_rate=lr)
    optimizer.build(variables)
    xt, yt = tf.constant(x, dtype=dtype), tf.constant(y, dtype=dtype)

    @tf.function
    def grad_step(xb: Any, yb: Any) -> Any:
        with tf.GradientTape() as tape:
            value = loss_obj(yb, km(xb, training=True))
        return value, tape.gradient(value, variables)

    @tf.function
    def train_step(xb: Any, yb: Any) -> Any:
        with tf.GradientTape() as tape:
            value = loss_obj(yb, km(xb, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        return value

    loss0, grads0 = grad_step(xt, yt)
    return {
        "grad_step": lambda: grad_step(xt, yt),
        "train_step": lambda: train_step(xt, yt),
        "first": (float(loss0), [np.asarray(g) for g in grads0]),
    }


def agreement(model: Sequential, x: np.ndarray, y: np.ndarray, keras_first: tuple[float, list[np.ndarray]]) -> float:
    """Largest norm-relative gradient difference between the two sides: both must time the same computation
    (float32 about 1e-7, float64 about 1e-16)."""
    _, grads = model.loss_and_gradients(x, y, LOSS)
    worst = 0.0
    for a, b in zip(grads, keras_first[1]):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        scale = max(np.linalg.norm(a64), np.linalg.norm(b64), 1e-300)
        worst = max(worst, float(np.linalg.norm(a64 - b64) / scale))
    return worst


# ----- child processes -------------------------------------------------------------------------------------------
@dataclass
class ChildRun:
    """One child process: exit code, wall seconds, peak resident memory (MiB), output, other processes' load."""

    returncode: int
    wall: float
    maxrss_mib: float
    output: str
    other: float = float("nan")


#: A small launcher (python -S, stdlib only) that runs the command as its own child and reports that child's wall
#: time and ru_maxrss. Linux charges a forked child with its parent's resident memory at fork time (ru_maxrss of a
#: child forked from this ~100+ MiB process reads 400+ MiB for `python -c pass` when this process holds 400 MiB),
#: so the measured command must be forked from a small process.
_LAUNCHER = """\
import resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.call(sys.argv[1:])
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"\\n@@bench-child wall={wall!r} maxrss={peak}", flush=True)
sys.exit(rc if rc >= 0 else 128 - rc)
"""
_MARK = "@@bench-child "


def run_child(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 300.0) -> ChildRun:
    """Run `cmd` to completion through `_LAUNCHER`: its wall time, peak RSS (the launcher's
    getrusage(RUSAGE_CHILDREN).ru_maxrss: KiB on Linux) and combined output. Killed after `timeout` seconds."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, *cmd], stdout=out, stderr=subprocess.STDOUT,
                                env=BASE_ENV if env is None else env, start_new_session=True)
        killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, 9))
        killer.start()
        try:
            returncode = proc.wait()
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    maxrss = float("nan")
    lines = text.splitlines()
    marks = [line for line in lines if line.startswith(_MARK)]
    if marks:
        fields = dict(part.split("=", 1) for part in marks[-1][len(_MARK):].split())
        wall, maxrss = float(fields["wall"]), float(fields["maxrss"])
        text = "\n".join(line for line in lines if not line.startswith(_MARK))
    per_mib = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024  # macOS reports bytes
    return ChildRun(returncode, wall, maxrss * per_mib, text)


def run_child_clean(cmd: Sequence[str], budget: Budget, env: dict[str, str] | None = None) -> ChildRun:
    """run_child, repeated if other processes disturbed it (see IdleGuard)."""
    run, other = GUARD.clean(lambda: run_child(cmd, env), budget.retries)
    run.other = other
    return run


# ----- section 1: scratch vs Keras -------------------------------------------------------------------------------
HEAD_1 = ["step", "dtype", "batch", "scratch ms", "Keras ms", "scratch/Keras", f"<= {TARGET_RATIO}x?", "floor",
          "IQR/med", "grad diff", "other load"]


def section_vs_keras(budget: Budget, rounds: int) -> tuple[list[list[Any]], list[str]]:
    """Gradient and train step, scratch vs Keras, in this process, timed in alternating blocks; plus the floor: the
    ratio a NumPy step doing only Keras's matmuls at full GEMM throughput would reach."""
    rows, notes = [], []
    for dtype in DTYPES:
        gemm = measure(gemm_call(dtype), budget)
        gflops = GEMM_FLOPS / gemm.median / 1e9
        notes.append(f"GEMM throughput used for the {dtype} floor: {gflops:.0f} GFLOP/s (other load {_load(gemm.other)})")
        for n in BATCHES:
            progress(f"1: {dtype} batch {n}")
            model, x, y = scratch_setup(ARCH, dtype, n)
            keras = keras_steps(model, x, y)
            err = agreement(model, x, y, keras["first"])
            limit = 1e-5 if dtype == "float32" else 1e-12
            if not err <= limit:
                notes.append(f"WARNING {dtype} batch {n}: gradients differ by {err:.1e} (> {limit:g})")
            ideal = step_flops(dense_shapes(model), n, first_dx=False) / (gflops * 1e9)
            ts, tk = measure_blocks([scratch_step(model, x, y), keras["grad_step"]], budget, rounds)
            rows.append(_ratio_row("gradient", dtype, n, ts, tk, err, ideal, check=n in (128, 1024)))
            ts, tk = measure_blocks([scratch_train_step(model, x, y), keras["train_step"]], budget, rounds)
            rows.append(_ratio_row("train (+SGD)", dtype, n, ts, tk, err, ideal, check=False))
    return rows, notes


def _ratio_row(kind: str, dtype: str, n: int, ts: Timing, tk: Timing, err: float, ideal: float,
               check: bool) -> list[Any]:
    ratio = ts.median / tk.median
    verdict = ("yes" if ratio <= TARGET_RATIO else "no") if check else ""
    return [kind, dtype, n, f"{ts.ms:.3f}", f"{tk.ms:.3f}", f"{ratio:.2f}x", verdict, f"{ideal / tk.median:.2f}x",
            f"{max(ts.spread, tk.spread):.0%}", f"{err:.0e}", _load(max(ts.other, tk.other))]


def _load(other: float) -> str:
    if math.isnan(other):
        return "n/a"
    return f"{other:.2f}" + (" !" if other > IDLE_THRESHOLD else "")


# ----- section 2: arithmetic bound -------------------------------------------------------------------------------
HEAD_2 = ["dtype", "batch", "MFLOP/step", "1st-layer dX", "GEMM GFLOP/s", "bound ms", "measured ms",
          "of bound", "matmuls alone ms", "non-matmul share", "step GFLOP/s", "other load"]


def section_bound(budget: Budget, rounds: int) -> tuple[list[list[Any]], bool, dict[tuple[str, int], float]]:
    """The scratch gradient step against FLOPs / GEMM throughput, and its matmuls alone; the GEMM, the step and
    its matmuls are timed in alternating blocks, so the bound uses the throughput of the same minutes."""
    rows, first_dx, step_ms = [], True, {}
    for dtype in DTYPES:
        gemm = gemm_call(dtype)
        for n in BATCHES:
            progress(f"2: bound {dtype} batch {n}")
            model, x, y = scratch_setup(ARCH, dtype, n)
            first_dx = first_layer_dx_computed(model, x, y)
            shapes = dense_shapes(model)
            flops = step_flops(shapes, n, first_dx)
            g, step, mm = measure_blocks([gemm, scratch_step(model, x, y), matmuls_only(shapes, n, dtype, first_dx)],
                                         budget, rounds)
            gflops = GEMM_FLOPS / g.median / 1e9
            bound = flops / (gflops * 1e9)
            step_ms[dtype, n] = step.ms
            rows.append([
                dtype, n, f"{flops / 1e6:.1f}",
                f"computed: {1 - step_flops(shapes, n, False) / flops:.0%} of FLOPs" if first_dx else "skipped",
                f"{gflops:.0f}",
                f"{bound * 1e3:.3f}", f"{step.ms:.3f}", f"{bound / step.median:.0%}", f"{mm.ms:.3f}",
                f"{1 - mm.median / step.median:.0%}", f"{flops / step.median / 1e9:.0f}", _load(step.other),
            ])
    return rows, first_dx, step_ms


# ----- section 3: end to end -------------------------------------------------------------------------------------
HEAD_3 = ["command", "wall s (median)", "share of compare", "peak RSS MiB", "runs", "exit", "other load"]


def section_end_to_end(budget: Budget, reps: int, quick: bool) -> tuple[list[list[Any]], list[str]]:
    """Wall time and peak RSS of the CLI and of the imports it pays for, each in fresh child processes."""
    py = sys.executable
    commands: list[tuple[str, list[str]]] = [
        ('python -c "import tensorflow"', [py, "-c", "import tensorflow"]),
        ("python -m compare compare", [py, "-m", "compare", "compare"]),
    ]
    if not quick:
        commands[:0] = [('python -c "import numpy"', [py, "-c", "import numpy"])]
        commands.insert(2, ('python -c "import keras_impl" (TF + Keras, harness settings)',
                            [py, "-c", "import keras_impl"]))
    notes = []
    probe = run_child([py, "-m", "compare", "train", "--help"], timeout=120)
    if probe.returncode != 0:
        last = (probe.output.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        notes.append(f"`python -m compare train` skipped: `train --help` failed ({last})")
    elif quick:
        notes.append("`python -m compare train` exists; timed in the full run only")
    else:
        commands.append(("python -m compare train (defaults)", [py, "-m", "compare", "train"]))
    results: dict[str, list[ChildRun]] = {}
    for name, cmd in commands:
        for i in range(reps):
            progress(f"3: {name} ({i + 1}/{reps})")
            run = run_child_clean(cmd, budget)
            results.setdefault(name, []).append(run)
            if run.returncode != 0:
                notes.append(f"`{name}` exited {run.returncode}: {(run.output.strip().splitlines() or [''])[-1]}")
                break
    compare_wall = statistics.median(r.wall for r in results["python -m compare compare"])
    rows = []
    for name, runs in results.items():
        wall = statistics.median(r.wall for r in runs)
        rows.append([name, f"{wall:.2f}", f"{wall / compare_wall:.0%}", f"{max(r.maxrss_mib for r in runs):.0f}",
                     len(runs), runs[-1].returncode, _load(max(r.other for r in runs))])
    return rows, notes


# ----- section 4: scaling ----------------------------------------------------------------------------------------
HEAD_4 = ["arch", "batch", "MFLOP/step", "ms", "ps/FLOP", "vs largest", "GFLOP/s", "other load"]


def section_scaling(budget: Budget, rounds: int, dtype: str = "float32") -> tuple[list[list[Any]], list[list[Any]]]:
    """The scratch gradient step's time as width and batch grow, next to its FLOP count; each sweep's
    configurations are timed in alternating blocks."""

    def sweep(configs: Sequence[tuple[str, int]]) -> list[list[Any]]:
        progress(f"4: {', '.join(f'{a} batch {n}' for a, n in configs)}")
        steps, flops = [], []
        for arch, n in configs:
            model, x, y = scratch_setup(arch, dtype, n)
            flops.append(step_flops(dense_shapes(model), n, first_layer_dx_computed(model, x, y)))
            steps.append(scratch_step(model, x, y))
        timings = measure_blocks(steps, budget, rounds)
        largest = timings[-1].median / flops[-1]
        return [[arch, n, f"{f / 1e6:.1f}", f"{t.ms:.3f}", f"{t.median / f * 1e12:.2f}",
                 f"{t.median / f / largest:.2f}", f"{f / t.median / 1e9:.0f}", _load(t.other)]
                for (arch, n), f, t in zip(configs, flops, timings)]

    return (sweep([(f"784-{w}-{w}-10", 128) for w in SCALE_WIDTHS]),
            sweep([("784-256-256-10", n) for n in SCALE_BATCHES]))


# ----- section 5: thread pools -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One child-process setting for the thread-pool question; `level`: run with --quick ("quick"), in the full run
    ("full"), or only with --all-settings ("all")."""

    name: str
    env: dict[str, str]
    level: str = "full"
    tf: bool = True
    tf_threads: tuple[int, int] | None = None  # (intra, inter) via tf.config.threading after import; 0 = default
    blas_threads: int | None = None  # threadpoolctl limit on every BLAS pool, applied after TF has loaded


ONEDNN_ON = {"TF_ENABLE_ONEDNN_OPTS": "1"}
#: OpenBLAS idle workers go to sleep after 2^4 cycles instead of spinning 2^28 cycles (about 0.1 s) for more work.
SPIN_OFF = {"OPENBLAS_THREAD_TIMEOUT": "4"}

VARIANTS = (
    Variant("no TensorFlow in the process", {}, "quick", tf=False),
    Variant("TF, harness settings (oneDNN off)", {}, "quick"),
    Variant("TF, oneDNN on", ONEDNN_ON),
    Variant("TF, tf.config intra=1 inter=1", {}, "quick", tf_threads=(1, 1)),
    Variant("TF, tf.config inter=1 (intra default)", {}, tf_threads=(0, 1)),
    Variant("TF, tf.config intra=2 inter=1", {}, "all", tf_threads=(2, 1)),
    Variant("TF, TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1",
            {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}, "all"),
    Variant("TF, OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"}, "all"),
    Variant("TF, threadpoolctl BLAS limit 1", {}, blas_threads=1),
    Variant("TF, OPENBLAS_THREAD_TIMEOUT=4", SPIN_OFF),
    Variant("TF, OPENBLAS_THREAD_TIMEOUT=4 + tf.config intra=1 inter=1", SPIN_OFF, "all", tf_threads=(1, 1)),
    Variant("TF, oneDNN on + OPENBLAS_THREAD_TIMEOUT=4", {**ONEDNN_ON, **SPIN_OFF}, "all"),
)

HEAD_5 = ["setting (a fresh child each unless noted)", "scratch, TF not loaded", "scratch after Keras",
          "after / not loaded", "scratch interleaved", "interleaved / not loaded", "Keras alone", "Keras interleaved",
          "pair interleaved", "BLAS thr.", "OS thr.", "rounds", "other load"]


def _thread_measurements(model: Sequential, x: np.ndarray, y: np.ndarray, budget: Budget) -> dict[str, Any]:
    """With TensorFlow loaded: the Keras step alone and the scratch step after Keras steps (alternating blocks),
    then the two alternating call by call."""
    keras = keras_steps(model, x, y)
    step = scratch_step(model, x, y)
    k, after = measure_blocks([keras["grad_step"], step], budget, rounds=2)
    si, ki = measure_interleaved(step, keras["grad_step"], budget)
    return {"keras_ms": k.ms, "after_ms": after.ms, "interleaved_ms": si.ms, "keras_interleaved_ms": ki.ms,
            "other": max(k.other, si.other), "os_threads": os_thread_count()}


def worker(variant_name: str, budget: Budget) -> dict[str, Any]:
    """Child-process side of section 5 (784-256-128-10, batch 128, float32): the scratch step before TensorFlow
    loads, then, unless the variant has no TF, keras_impl imported, the setting applied, and the measurements of
    `_thread_measurements`. The result is printed as one JSON line."""
    variant = next(v for v in VARIANTS if v.name == variant_name)
    model, x, y = scratch_setup(ARCH, "float32", 128)
    before = measure(scratch_step(model, x, y), budget)
    result: dict[str, Any] = {"before_ms": before.ms, "other": before.other, "os_threads": os_thread_count()}
    if variant.tf:
        import keras_impl  # noqa: F401  (sets TF_ENABLE_ONEDNN_OPTS=0 unless the variant's env set it; loads TF)
        import tensorflow as tf

        if variant.tf_threads:
            tf.config.threading.set_intra_op_parallelism_threads(variant.tf_threads[0])
            tf.config.threading.set_inter_op_parallelism_threads(variant.tf_threads[1])
        if variant.blas_threads is not None:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=variant.blas_threads, user_api="blas")
        measured = _thread_measurements(model, x, y, budget)
        result.update(measured, other=max(result["other"], measured["other"]))
    result.update(blas_threads=blas_threads(), waited=GUARD.waited, disturbed=GUARD.disturbed)
    return result


def os_thread_count() -> int:
    """OS threads in this process (from /proc; -1 where unavailable)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def section_threads(budget: Budget, level: str, rounds: int, here: dict[str, Any]) -> tuple[list[list[Any]], list[str]]:
    """Each variant in a fresh child process, `rounds` times round-robin (medians), then this process's numbers."""
    levels = {"quick": ("quick",), "full": ("quick", "full"), "all": ("quick", "full", "all")}[level]
    notes, results = [], {}
    for r in range(rounds):
        for v in VARIANTS:
            if v.level not in levels:
                continue
            if v.blas_threads is not None and not blas_info():
                if r == 0:
                    notes.append(f"skipped {v.name!r}: threadpoolctl not installed")
                continue
            progress(f"5: {v.name} (round {r + 1}/{rounds})")
            patience = max(0.0, min(max(20.0, GUARD.patience / 4), GUARD.patience - GUARD.waited))
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", v.name, "--patience", f"{patience:.0f}"]
            if level == "quick":
                cmd.append("--quick")
            run = run_child(cmd, env={**BASE_ENV, **v.env}, timeout=300)
            lines = [line for line in run.output.splitlines() if line.startswith("{")]
            if run.returncode != 0 or not lines:
                notes.append(f"variant {v.name!r} failed (exit {run.returncode}): {run.output.strip()[-300:]}")
                continue
            result = json.loads(lines[-1])
            GUARD.waited += result["waited"]
            GUARD.disturbed += result["disturbed"]
            results.setdefault(v.name, []).append(result)
    merged = {name: _median_dicts(runs) for name, runs in results.items()}
    rows = [_thread_row(name, r) for name, r in merged.items()]
    if here:
        rows.append(_thread_row("this process (harness settings; TF loaded, Keras steps run)", here))
    return rows, notes


def _median_dicts(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median of numeric fields over rounds (max for 'other'); other fields from the last round."""
    out = dict(runs[-1])
    for key, value in runs[-1].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r[key] for r in runs if key in r]
            out[key] = max(values) if key == "other" else statistics.median(values)
    out["rounds"] = len(runs)
    return out


def _thread_row(name: str, r: dict[str, Any]) -> list[Any]:
    def ms(key: str) -> str:
        return f"{r[key]:.3f}" if key in r else ""

    def ratio(key: str) -> str:
        return f"{r[key] / r['before_ms']:.2f}x" if key in r and r.get("before_ms") else ""

    pair = f"{r['interleaved_ms'] + r['keras_interleaved_ms']:.3f}" if "interleaved_ms" in r else ""
    return [name, ms("before_ms"), ms("after_ms"), ratio("after_ms"), ms("interleaved_ms"), ratio("interleaved_ms"),
            ms("keras_ms"), ms("keras_interleaved_ms"), pair, ",".join(map(str, r.get("blas_threads", []))) or "n/a",
            f"{r.get('os_threads', -1):.0f}", r.get("rounds", 1), _load(r.get("other", float("nan")))]


def in_process_threads(budget: Budget, before_ms: float) -> dict[str, Any]:
    """Section 5 in this process: TensorFlow is loaded and Keras steps have run (section 1). `before_ms`: this
    process's own scratch step time before TensorFlow loaded (section 2)."""
    progress("5: this process")
    model, x, y = scratch_setup(ARCH, "float32", 128)
    return {"before_ms": before_ms, **_thread_measurements(model, x, y, budget), "blas_threads": blas_threads()}


NEIGHBOURS = {
    "none": None,
    "1 busy loop (`while True: pass`)": "while True: pass",
    "1 NumPy GEMM loop (2 BLAS threads)": "import numpy as np\na = np.ones((256, 256), 'f4')\nwhile True: a @ a",
}
HEAD_5B = ["neighbour process", "scratch ms, BLAS default threads (median / p90)",
           "scratch ms, BLAS 1 thread (median / p90)", "Keras ms (median / p90)", "other load (incl. neighbour)"]


def _mp(t: Timing) -> str:
    return f"{t.ms:.3f} / {t.p90_ms:.3f}"


def section_neighbours(budget: Budget) -> list[list[Any]]:
    """The scratch step (BLAS with its default threads, and with 1 thread) and the Keras step while a neighbour
    process competes for the cores: what happens to each library's thread pool when a core is taken. The
    neighbours are started and killed here, by their own process handle."""
    model, x, y = scratch_setup(ARCH, "float32", 128)
    keras = keras_steps(model, x, y)
    step = scratch_step(model, x, y)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    rows = []
    for name, code in NEIGHBOURS.items():
        progress(f"5b: neighbour {name}")
        proc = subprocess.Popen([sys.executable, "-c", code], env=BASE_ENV) if code else None
        guarded = proc is None
        try:
            time.sleep(0.5 if proc else 0.0)
            many = measure(step, budget, guarded=guarded)
            one = None
            if threadpool_limits is not None:
                with threadpool_limits(limits=1, user_api="blas"):
                    one = measure(step, budget, guarded=guarded)
            kt = measure(keras["grad_step"], budget, guarded=guarded)
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
        other = max(many.other, kt.other, one.other if one else 0.0)
        rows.append([name, _mp(many), _mp(one) if one else "n/a (no threadpoolctl)", _mp(kt),
                     _load(other) if guarded else f"{other:.2f}"])
    return rows


# ----- output ----------------------------------------------------------------------------------------------------
def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Section:
    """One numbered part of the report: its tables and notes."""

    title: str
    tables: list[tuple[list[str], list[list[Any]]]]
    notes: list[str]


def render(sections: Sequence[Section], fmt: str) -> str:
    """The sections as text tables (fmt "simple") or Markdown (fmt "github")."""
    out = []
    for s in sections:
        out.append(("### " if fmt == "github" else "== ") + s.title)
        for head, rows in s.tables:
            out.append(tabulate(rows, headers=head, tablefmt=fmt, disable_numparse=True))
        if s.notes:
            out.append("\n".join(("- " if fmt == "github" else "  * ") + n for n in s.notes))
    return "\n\n".join(out)


def render_machine(machine: Sequence[tuple[str, str]], fmt: str) -> str:
    if fmt == "github":
        return "| machine | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in machine)
    return "\n".join(f"{k:>22}: {v}" for k, v in machine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and settings: about a minute")
    parser.add_argument("--all-settings", action="store_true",
                        help="section 5: also the thread settings that did not help (env-var twins, OMP_NUM_THREADS)")
    parser.add_argument("--sections", default="1,2,3,4,5", help="which sections to run, e.g. 2,4 (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--patience", type=float, default=None, metavar="SECONDS",
                        help="how long to wait in all for an idle machine to repeat disturbed measurements "
                             f"(default {FULL.patience:g}, --quick {QUICK.patience:g})")
    args = parser.parse_args(argv)
    chosen = {part.strip() for part in args.sections.split(",")}
    if not chosen <= {"1", "2", "3", "4", "5"}:
        parser.error(f"--sections: expected numbers 1-5 separated by commas, got {args.sections!r}")
    budget = QUICK if args.quick else FULL
    if args.patience is not None:
        budget = replace(budget, patience=args.patience, retries=max(budget.retries, 3 if args.patience else 0))
    GUARD.patience = budget.patience
    if args.worker:
        print(json.dumps(worker(args.worker, budget)), flush=True)
        return 0

    started = time.perf_counter()
    machine = machine_lines()
    machine.append(("GEMM 1024 at start", gemm_probe()))
    print(render_machine(machine, "simple"), flush=True)
    rounds = 2 if args.quick else 3
    # Everything that must not see TensorFlow runs first; this process imports it in section 1 (or 5).
    bound_rows, first_dx, step_ms = section_bound(budget, rounds) if "2" in chosen else ([], True, {})
    widths, batches = section_scaling(budget, rounds) if "4" in chosen else ([], [])
    if "5" in chosen and ("float32", 128) not in step_ms:
        model, x, y = scratch_setup(ARCH, "float32", 128)
        step_ms["float32", 128] = measure(scratch_step(model, x, y), budget).ms
    e2e_rows, e2e_notes = section_end_to_end(budget, 1 if args.quick else 3, args.quick) if "3" in chosen else ([], [])
    vs_rows, vs_notes = section_vs_keras(budget, rounds) if "1" in chosen else ([], [])
    thread_rows, thread_notes, neighbour_rows = [], [], []
    if "5" in chosen:
        here = in_process_threads(budget, step_ms["float32", 128])
        level = "quick" if args.quick else "all" if args.all_settings else "full"
        thread_rows, thread_notes = section_threads(budget, level, 1 if args.quick else 2, here)
        neighbour_rows = section_neighbours(budget)
    end = [("GEMM 1024 at end", gemm_probe()),
           ("load average at end", " ".join(f"{x:.2f}" for x in os.getloadavg())),
           ("disturbed measurements", f"{GUARD.disturbed} still disturbed after retries (flagged '!'); "
                                      f"{GUARD.waited:.0f} s spent waiting for an idle machine"),
           ("run time", f"{time.perf_counter() - started:.0f} s ({'--quick' if args.quick else 'full'})")]

    dx_note = (
        "the scratch step (loss_and_gradients) computes the first layer's dX, dL/dX of the input, which nothing "
        "needs: 2*N*784*256 FLOPs, counted above. Keras's step does not compute it (the tape is asked for weight "
        "gradients only)"
        if first_dx else
        "the scratch step (loss_and_gradients) skips the first layer's dX (dL/dX of the input), as Keras's step "
        "does; it is not counted"
    ) + " (observed by wrapping the first layer's backward_from_z for one call)"
    load_note = (f"other load: cores' worth of CPU used by other processes during the measurement ('!' above "
                 f"{IDLE_THRESHOLD}: disturbed, retried {budget.retries}x, still disturbed)")
    sections = [
        Section(f"1. Scratch vs Keras tf.function step, {ARCH}, same process, same weights", [(HEAD_1, vs_rows)], [
            f"target: scratch/Keras <= {TARGET_RATIO}x for the gradient step at batch 128 and 1024",
            "floor: (matmul FLOPs Keras does, i.e. without the first layer's dX) / (NumPy's 1024x1024 GEMM "
            "throughput) / Keras ms, the ratio an ideal NumPy step would reach; a target below the floor is out of "
            "reach with this BLAS, whatever the Python code does",
            f"median per call; the two sides timed in {rounds} alternating blocks each, every block after its own "
            "warm-up; IQR/med: the larger inter-quartile range / median of the two; grad diff: max norm-relative "
            "gradient difference (both sides compute the same thing)", load_note,
            "Keras: GradientTape over keras.losses.CategoricalCrossentropy(dtype) in a tf.function; its train step "
            "adds SGD.apply_gradients in the same tf.function; the scratch train step adds w -= lr*g in place; Keras "
            "results stay tensors (no .numpy())", *vs_notes]),
        Section("2. Scratch gradient step vs its arithmetic bound (TensorFlow not loaded)", [(HEAD_2, bound_rows)], [
            "FLOPs: per Dense layer, forward X@W 2NDM, backward dW = X.T@dZ 2NDM and dX = dZ@W.T 2NDM; element-wise "
            "work (bias, ReLU, softmax, loss, bias gradients) not counted", dx_note,
            f"GEMM: a {GEMM_SIZE}x{GEMM_SIZE} by {GEMM_SIZE}x{GEMM_SIZE} np.matmul in the dtype, timed in blocks "
            "alternating with the step; bound = FLOPs / GEMM throughput; 'of bound' = bound / measured; 'matmuls "
            "alone' = the step's matmuls (same shapes and transposes) without its element-wise work; non-matmul "
            "share = 1 - matmuls alone / measured"]),
        Section("3. End to end (fresh child processes; peak RSS = the child's ru_maxrss)", [(HEAD_3, e2e_rows)], [
            "each command is started by a small launcher process that reports its child's wall time and "
            "getrusage(RUSAGE_CHILDREN).ru_maxrss (a child forked straight from this large process would be charged "
            "with this process's resident memory); median wall time of the runs, largest peak RSS",
            "children get the environment this script started with: a plain `import tensorflow` runs with oneDNN on "
            "(keras_impl, hence compare, sets TF_ENABLE_ONEDNN_OPTS=0)", *e2e_notes]),
        Section("4. Scaling of the scratch gradient step, float32 (TensorFlow not loaded)",
                [(HEAD_4, widths), (HEAD_4, batches)], [
                    "each sweep's configurations timed in alternating blocks; 'vs largest' = ps/FLOP relative to the "
                    "largest configuration: 1.00 = time grows exactly as the arithmetic, > 1 = fixed or element-wise "
                    "costs (and smaller, less efficient matmuls) weigh more at that size"]),
        Section(f"5. Thread pools: scratch step {ARCH}, batch 128, float32, with and without TensorFlow",
                [(HEAD_5, thread_rows), (HEAD_5B, neighbour_rows)], [
                    "each child times the scratch step before importing TensorFlow ('TF not loaded'), then imports "
                    "keras_impl, applies its setting, runs Keras steps and times: the Keras step alone and the scratch "
                    "step after Keras steps ('after'), in alternating blocks; then the two alternating call by call, "
                    "as `compare train` alternates the two sides ('interleaved'; 'pair' = the two summed). Ratios are "
                    "against the same process's 'TF not loaded' (for this process: its number before TF loaded). All ms; "
                    "medians over the rounds; BLAS thr. = threads of each BLAS library loaded (NumPy's OpenBLAS, then "
                    "SciPy's, which Keras loads); OS thr. = threads in the process at the end",
                    "TF_ENABLE_ONEDNN_OPTS=1 overrides keras_impl's default of 0; OPENBLAS_THREAD_TIMEOUT=4 makes idle "
                    "OpenBLAS workers sleep after 2^4 cycles instead of spinning up to 2^28 (about 0.1 s); it must be "
                    "set before NumPy loads", load_note,
                    "second table: this process (TF loaded), while one neighbour process started here competes for "
                    "the cores; BLAS 1 thread via threadpoolctl; other load includes the neighbour", *thread_notes]),
    ]
    sections = [s for s in sections if s.title.split(".")[0] in chosen]
    print()
    print(render(sections, "simple"))
    print()
    print(render_machine(end, "simple"))
    print("\n\n---- Markdown (paste into benchmarks/README.md) ----\n")
    print(render_machine([*machine, *end], "github"))
    print()
    print(render(sections, "github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
