"""The command line and the proof that the harness can fail."""

import json
import subprocess
import sys

import numpy as np
import pytest

from compare import cli
from compare.tolerances import F64_TOL
from from_scratch.model import Sequential


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_default_compare_passes(capsys):
    code, out, _ = run(capsys, "compare")
    assert code == 0
    assert "FAIL" not in out
    assert out.strip().splitlines()[-1].startswith("PASS: all 13 quantities")  # 11, the inference pass, the protocol


def test_json_carries_every_row(capsys):
    code, out, _ = run(capsys, "compare", "--json", "--dtype", "float32", "--batch", "5")
    report = json.loads(out)
    assert code == 0 and report["passed"]
    names = [row["name"] for row in report["rows"]]
    assert names[:3] == ["weights round trip", "loss", "output"]
    assert "grad dense_2/bias" in names and "grad input" in names
    assert report["settings"]["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert report["config"]["batch"] == 5


def test_digits_batch(capsys):
    pytest.importorskip("sklearn")
    code, out, _ = run(capsys, "compare", "--data", "digits", "--batch", "64")
    assert code == 0 and "data=digits" in out


@pytest.mark.parametrize("relative_size", [1e-3, 1e-10])
def test_one_perturbed_gradient_entry_fails_exactly_its_row(capsys, monkeypatch, relative_size):
    """Add relative_size x ||g|| to one entry of the scratch dL/d(dense_1/kernel): that row alone fails, exit 1.

    1e-10 is two orders above the float64 tolerance (1e-12) and six below the size of a real formula error.
    """
    original = Sequential.backward_pass

    def tampered(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        g = result.grads[2]
        g[0, 0] += relative_size * np.linalg.norm(g)
        return result

    monkeypatch.setattr(Sequential, "backward_pass", tampered)
    code, out, _ = run(capsys, "compare", "--json")
    report = json.loads(out)
    assert code == 1
    failed = [row["name"] for row in report["rows"] if row["status"] == "FAIL"]
    assert failed == ["grad dense_1/kernel"]
    row = next(r for r in report["rows"] if r["name"] == "grad dense_1/kernel")
    assert row["error"] == pytest.approx(relative_size, rel=1e-3)
    assert row["error"] > F64_TOL


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["compare", "--arch", "64-x-10"],
            "malformed architecture '64-x-10': layer 1 'x' is neither a width (a positive integer) nor a layer",
        ),
        (["compare", "--arch", "64"], "malformed architecture '64'"),
        (["compare", "--arch", "4-0-3"], "layer 1 width '0' is not a positive integer"),
        (
            ["compare", "--arch", "4-3:swish"],
            "unknown activation 'swish'; known: elu, gelu, gelu_tanh, leaky_relu, linear, relu",
        ),
        (["compare", "--loss", "hinge"], "unknown loss 'hinge'; known: binary_crossentropy, categorical_crossentropy"),
        (["compare", "--data", "mnist"], "unknown data set 'mnist'"),
        (["compare", "--data", "digits", "--arch", "64-10-3"], "digits has 64 features and 10 classes"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_bad_batch_is_an_argparse_error_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", "--batch", "0"])
    _, err = capsys.readouterr()
    assert exc.value.code == 2
    assert err.strip().splitlines() == [
        "backprop-parity compare: error: argument --batch: must be a positive integer, got 0"
    ]


def test_digits_without_scikit_learn_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    code, _, err = run(capsys, "compare", "--data", "digits")
    assert code == 2
    assert "--data digits needs scikit-learn, which is not installed" in err


def test_python_dash_m_compare_exit_code_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "compare", "compare", "--arch", "3-?"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "backprop-parity compare: error: malformed architecture '3-?': layer 1 '?'"
        " is neither a width (a positive integer) nor a layer (dropoutR, bn, ln, convFkK, poolP, avgpoolP, gap,"
        " flatten, reshapeHxWxC, rnnU, lstmU, gruU, embedVxD, pos, gap1d, mhaNxK, padP, dwK, act:NAME, relu, relu6)"
    ]


@pytest.mark.parametrize(
    "argv,arch_text",
    [
        (["--loss", "binary_crossentropy"], "arch=64-32:relu-16:relu-10:sigmoid "),
        (["--loss", "huber", "--activation", "tanh"], "arch=64-32:tanh-16:tanh-10:linear "),
        (["--from-logits", "--label-smoothing", "0.1"], "arch=64-32:relu-16:relu-10:linear "),
        (
            ["--dropout", "0.25", "--batchnorm", "--l2", "0.01"],
            "arch=64-32:relu:l2=0.01-bn-dropout0.25-16:relu:l2=0.01-bn-dropout0.25-10:softmax:l2=0.01 ",
        ),
        (["--arch", "8-4-bn-3", "--loss", "sparse_categorical_crossentropy"], "arch=8-4:relu-bn-3:softmax "),
        (["--l1", "0.01"], "arch=64-32:relu:l1=0.01-16:relu:l1=0.01-10:softmax:l1=0.01 "),
    ],
)
def test_catalogue_flags_build_the_described_network_and_pass(capsys, argv, arch_text):
    code, out, _ = run(capsys, "compare", "--batch", "6", *argv)
    assert code == 0, out
    assert out.startswith(arch_text)


def test_compare_all_prints_one_summary_row_per_configuration(capsys, monkeypatch):
    from compare import matrix

    entries = list(matrix.matrix())[:6]
    monkeypatch.setattr(matrix, "matrix", lambda: iter(entries))
    code, out, _ = run(capsys, "compare", "--all")
    assert code == 0
    assert out.strip().splitlines()[-1] == "PASS: 6 of 6 configurations agree"
    assert out.count("PASS") == 7


def test_label_smoothing_on_a_loss_without_it_is_bad_input(capsys):
    code, _, err = run(capsys, "compare", "--loss", "mean_squared_error", "--label-smoothing", "0.1")
    assert code == 2 and "loss 'mean_squared_error' does not take label_smoothing" in err


def test_examples_command_runs_one_example_and_refuses_unknown_names(capsys, tmp_path):
    code, out, _ = run(capsys, "examples", "gradient_descent", "--json")
    assert code == 0
    assert "gradient_descent" in json.loads(out)
    code, out, err = run(capsys, "examples", "nope")
    assert code == 2 and out == ""
    assert "unknown example 'nope'; known: forward_pass, gradcheck" in err


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_train_with_dropout_shares_one_mask_per_step(capsys, dtype):
    """Both sides draw nothing themselves: each step one mask is drawn and given to both (it used to crash)."""
    code, out, _ = run(capsys, "train", "--arch", "64-16-dropout0.3-10", "--epochs", "1", "--dtype", dtype)
    assert code == 0 and "PASS" in out and "the same predictions on every sample" in out
