"""Shared fixtures. keras_impl is imported first, so that its TensorFlow settings (oneDNN off, op determinism) are
pinned before any test module imports TensorFlow itself; keras_impl.settings() reports it if they were not."""

import numpy as np
import pytest

import keras_impl  # noqa: F401 (before any TensorFlow import)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
