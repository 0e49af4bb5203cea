"""The graphs no one here wrote: keras.applications builds ResNet50, DenseNet121 and MobileNetV2 (alpha 0.35) itself
(`weights=None`: nothing is downloaded) at input_shape (32, 32, 3) with 10 classes. Each is saved, read back by
`from_keras` and compared on a batch in float64 and float32 (every row must pass), and trains one step in lockstep.

The whole set takes minutes (ResNet50 holds 23.6 million weights), so the default run keeps MobileNetV2 in float64
and its lockstep step; BACKPROP_PARITY_APPLICATIONS=1 runs all of them (`make test` passes the environment on).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

import keras
import numpy as np
import pytest

import keras_impl  # noqa: F401 (first: it pins TensorFlow's settings)
from compare.keras_model import compare_keras_model, from_keras
from compare.training import run_training

ALL = os.environ.get("BACKPROP_PARITY_APPLICATIONS", "0") == "1"

#: The batch of the comparison. At 32x32 the last stages are 1x1 or 2x2 images, so a BatchNormalization there
#: normalises over the batch alone: at 4 samples the loss is strongly curved and its rounding amplified (MobileNetV2:
#: second differences 2e-3 of |f| at the precision probe's first step; from_scratch/gradcheck.py
#: CURVATURE_DOMINATES), which the comparison must still judge right.
BATCH = 4

#: The batch of the lockstep step. At 4, untrained ResNet50's gradients reach norm 1.2e5 (its first kernel's weights
#: have norm 2.4) and carry float64 rounding amplified to 4e-11 of themselves, so one SGD step at lr 0.01 leaves the
#: two sides' parameters 4.9e-11 apart, beyond the training check's float64 bound (compare/training.py
#: TRAIN_F64_TOL), which does not gauge a model's conditioning; at 16 the same step ends 6.1e-14 apart.
STEP_BATCH = 16

APPLICATIONS = {
    "ResNet50": lambda: keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10),
    "DenseNet121": lambda: keras.applications.DenseNet121(weights=None, input_shape=(32, 32, 3), classes=10),
    "MobileNetV2": lambda: keras.applications.MobileNetV2(
        alpha=0.35, weights=None, input_shape=(32, 32, 3), classes=10
    ),
}

#: What each application is built from, as Keras builds it: the layer classes and their counts.
LAYER_COUNTS = {
    "ResNet50": {"Conv2D": 53, "BatchNormalization": 53, "Add": 16, "ZeroPadding2D": 2, "Activation": 49},
    "DenseNet121": {"Concatenate": 58, "AveragePooling2D": 3, "Conv2D": 120, "BatchNormalization": 121},
    "MobileNetV2": {"DepthwiseConv2D": 17, "ReLU": 35, "Add": 10, "ZeroPadding2D": 4},
}

#: Without BACKPROP_PARITY_APPLICATIONS=1: MobileNetV2 in float64 only (the smallest, about 400,000 weights).
#: Keras draws the initial weights from its global seed, seeded in `saved`: unseeded, they depended on the tests run
#: before in the same process, and on one such draw the numerical witness of MobileNetV2 in float64 read 1.8e-5
#: (tolerance 1e-6) at its ReLU6 kinks (32 of 263 coordinates at kinks, 13 undecidable); that witness case is open.
EVERY = pytest.mark.skipif(not ALL, reason="BACKPROP_PARITY_APPLICATIONS=1 runs every application and dtype")
DEFAULT = ("MobileNetV2", "float64")
CASES = [
    pytest.param(name, dtype, marks=() if (name, dtype) == DEFAULT else EVERY)
    for name in APPLICATIONS
    for dtype in ("float64", "float32")
]
STEPS = [pytest.param(name, marks=() if name == DEFAULT[0] else EVERY) for name in APPLICATIONS]


def saved(tmp_path, name: str) -> str:
    keras.config.set_floatx("float32")
    keras.utils.set_random_seed(0)  # the same weights whatever ran before in this process (see the note below)
    model = APPLICATIONS[name]()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    counts = defaultdict(int)
    for layer in model.layers:
        counts[type(layer).__name__] += 1
    for kind, count in LAYER_COUNTS[name].items():
        assert counts[kind] == count, (name, kind, counts[kind])
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    return path


def worst_per_kind(report, path: str) -> dict[str, float]:
    """The largest per-node error by Keras layer class (what the note reports)."""
    model = keras.saving.load_model(path, compile=False)
    kinds = {layer.name: type(layer).__name__ for layer in model.layers}
    worst: dict[str, float] = defaultdict(float)
    for step in report.trace:
        if step.layer:
            kind = kinds.get(step.layer_name.split("#")[0], "?")
            worst[kind] = max(worst[kind], step.error)
    return dict(worst)


@pytest.mark.parametrize("name,dtype", CASES)
def test_the_application_passes_every_row(tmp_path, name, dtype):
    path = saved(tmp_path, name)
    start = time.perf_counter()
    report = compare_keras_model(path, batch=BATCH, dtype=dtype, gradcheck_samples=1)
    seconds = time.perf_counter() - start
    worst = worst_per_kind(report, path)
    print(f"{name} {dtype}: {report.verdict()} in {seconds:.0f} s; worst per kind {worst}")
    assert report.passed, (name, dtype, [(row.name, row.error) for row in report.failures])
    assert any(row.name.startswith("numerical grad") for row in report.rows)
    assert {"Add", "Concatenate"} & set(worst) and "BatchNormalization" in worst


@pytest.mark.parametrize("name", STEPS)
def test_the_application_trains_one_step_in_lockstep(tmp_path, name):
    path = saved(tmp_path, name)
    scratch = from_keras(path, "float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEP_BATCH, 32, 32, 3))
    y = np.eye(10)[rng.integers(0, 10, STEP_BATCH)]
    report = run_training(
        scratch.architecture,
        x,
        y,
        "sgd",
        {"learning_rate": 0.01},
        epochs=1,
        batch_size=STEP_BATCH,
        max_steps=1,
        initial_weights=scratch.get_weights(),
    )
    assert report.passed, report.verdict()
