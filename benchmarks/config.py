"""What the benchmark measures (network, loss, batches, dtypes, target), and the environment the run started with."""

from __future__ import annotations

import os

#: The environment this run was started with, before keras_impl sets its TensorFlow variables: children get it.
BASE_ENV: dict[str, str] = dict(os.environ)

ARCH = "784-256-128-10"
LOSS = "categorical_crossentropy"
LR = 0.01
BATCHES = (32, 128, 1024)
DTYPES = ("float32", "float64")
SCALE_WIDTHS = (64, 128, 256, 512)
SCALE_BATCHES = (32, 64, 128, 256, 512, 1024)
TARGET_RATIO = 0.7
