"""Scratch vs Keras on many architectures, both dtypes: loss, outputs and every gradient within tolerance."""

import numpy as np
import pytest

import keras_impl
from compare.harness import compare_models
from compare.tolerances import F64_TOL
from from_scratch import Architecture, Sequential


def random_cases(count, seed=2024):
    """Architectures with 1-4 hidden layers of widths 1-64, batches 1-64, inputs scaled up to x30."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        depth = int(rng.integers(1, 5))
        widths = [int(rng.integers(1, 65)) for _ in range(depth)]
        d, k = int(rng.integers(1, 33)), int(rng.integers(2, 11))
        batch = int(rng.integers(1, 65))
        scale = float(rng.choice([1.0, 3.0, 30.0]))
        cases.append(
            pytest.param(
                "-".join(map(str, [d, *widths, k])),
                batch,
                scale,
                id=f"{d}-{'-'.join(map(str, widths))}-{k}_n{batch}_x{scale:g}",
            )
        )
    return cases


def run_case(arch_text, batch, dtype, x=None, y=None, seed=0, scale=1.0, gradcheck_samples=0):
    arch = Architecture.parse(arch_text)
    rng = np.random.default_rng(seed)
    if x is None:
        x = rng.standard_normal((batch, arch.input_dim)) * scale
        y = np.eye(arch.output_dim)[rng.integers(0, arch.output_dim, size=batch)]
    scratch = Sequential.from_architecture(arch, dtype=dtype, seed=seed)
    return compare_models(scratch, keras_impl.build_model(arch, dtype), x, y, gradcheck_samples=gradcheck_samples)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("arch,batch,scale", random_cases(16))
def test_random_architectures_agree(arch, batch, scale, dtype):
    report = run_case(arch, batch, dtype, scale=scale)
    assert report.passed, report.verdict() + "\n" + "\n".join(map(str, report.failures))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_default_case_with_numerical_witness(dtype):
    report = run_case("64-32-16-10", 32, dtype, gradcheck_samples=8)
    assert report.passed, report.verdict()
    assert report.rows[-1].name.startswith("numerical grad")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_all_zero_row_puts_relu_exactly_at_its_kink(dtype):
    """A zero input row with zero biases gives Z = 0 exactly in every hidden layer: the ReLU kink."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 6))
    x[3] = 0.0
    y = np.eye(4)[rng.integers(0, 4, size=8)]
    scratch = Sequential.from_architecture(Architecture.parse("6-5-5-4"), dtype=dtype, seed=1)
    scratch.forward(x.astype(dtype))
    assert np.all(scratch.layers[0].Z[3] == 0)
    report = compare_models(scratch, keras_impl.build_model(scratch.architecture, dtype), x, y, gradcheck_samples=0)
    assert report.passed, report.verdict()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("logit_scale", [1e2, 1e3, 1e4])
def test_large_logits_stay_finite_and_equal(dtype, logit_scale):
    """Output weights scaled up until the softmax saturates: no overflow, no NaN, same loss and gradients."""
    arch = Architecture.parse("10-8-5")
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((16, 10)), np.eye(5)[rng.integers(0, 5, size=16)]
    scratch = Sequential.from_architecture(arch, dtype=dtype, seed=2)
    weights = scratch.get_weights()
    weights[2] = weights[2] * np.asarray(logit_scale, dtype=dtype)
    scratch.set_weights(weights)
    loss, grads = scratch.loss_and_gradients(x, y)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)
    report = compare_models(scratch, keras_impl.build_model(arch, dtype), x, y, gradcheck_samples=0)
    assert report.passed, report.verdict()


def test_direct_float64_agreement_without_the_harness():
    """The same check written out by hand, so that the harness is not only tested through itself."""
    arch = Architecture.parse("64-32-16-10")
    scratch = Sequential.from_architecture(arch, seed=0)
    model = keras_impl.build_model(arch, "float64")
    model.set_weights(scratch.get_weights())
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 64)), np.eye(10)[rng.integers(0, 10, size=32)]
    loss, grads = scratch.loss_and_gradients(x, y)
    theirs = keras_impl.loss_and_gradients(model, x, y, "categorical_crossentropy")
    assert abs(loss - theirs.loss) <= F64_TOL * abs(loss)
    for g, k in zip(grads, theirs.grads):
        assert np.linalg.norm(g - k) <= F64_TOL * np.linalg.norm(k)
