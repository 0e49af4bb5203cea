"""Shared fixtures. Tests that need TensorFlow import it through keras_impl, which pins its settings first."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
