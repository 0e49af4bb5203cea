"""The grammar and the data never change a request silently.

- An option given twice on one architecture token is refused, naming the token and both values, whether the second
  contradicts the first (`conv2k3:same:valid`) or repeats it: no later value silently wins.
"""

import pytest

from compare import cli
from from_scratch import Architecture, BadInputError


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code, out, err, message):
    assert code == 2, out + err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# ----- options given twice ----------------------------------------------------------------------------------------
#: arch -> (the token, the option named, the first value, the second value). The issue's two examples, then the same
#: class on every token kind that takes ':' options: Conv2D, both poolings, SimpleRNN, GRU, LSTM, Dense.
TWICE = {
    "8x8x1-conv2k3:same:valid-flatten-10": ("conv2k3:same:valid", "padding", "same", "valid"),
    "8x8x1-pool2:valid:same-flatten-10": ("pool2:valid:same", "padding", "valid", "same"),
    "8x8x1-avgpool2:same:valid-flatten-10": ("avgpool2:same:valid", "padding", "same", "valid"),
    "8x8x1-conv2k3:valid:valid-flatten-10": ("conv2k3:valid:valid", "padding", "valid", "valid"),
    "8x8x1-conv2k3:s=1:strides=2-flatten-10": ("conv2k3:s=1:strides=2", "strides", "s=1", "strides=2"),
    "8x8x1-conv2k3:d=2:d=2-flatten-10": ("conv2k3:d=2:d=2", "dilation_rate", "d=2", "d=2"),
    "8x8x1-conv2k3:d=1:dilation_rate=2-flatten-10": (
        "conv2k3:d=1:dilation_rate=2",
        "dilation_rate",
        "d=1",
        "dilation_rate=2",
    ),
    "8x8x1-conv2k3:tanh:same:relu-flatten-10": ("conv2k3:tanh:same:relu", "an activation", "tanh", "relu"),
    "8x8x1-pool2:s=1:s=2-flatten-10": ("pool2:s=1:s=2", "strides", "s=1", "s=2"),
    "8x8-rnn4:tanh:seq:relu-flatten-10": ("rnn4:tanh:seq:relu", "an activation", "tanh", "relu"),
    "8x8-rnn4:relu:relu-10": ("rnn4:relu:relu", "an activation", "relu", "relu"),
    "8x8-lstm4:seq:seq-flatten-10": ("lstm4:seq:seq", "seq", "seq", "seq"),
    "8x8-gru4:reset_before:seq:reset_before-flatten-10": (
        "gru4:reset_before:seq:reset_before",
        "reset_before",
        "reset_before",
        "reset_before",
    ),
    "4-3:tanh:relu-2": ("3:tanh:relu", "an activation", "tanh", "relu"),
    "4-3:tanh:l1=0.1:sigmoid-2": ("3:tanh:l1=0.1:sigmoid", "an activation", "tanh", "sigmoid"),
    "4-3:l2=0.01:l2=0.02-2": ("3:l2=0.01:l2=0.02", "l2=", "l2=0.01", "l2=0.02"),
    "4-3:relu:bias_l1=0.5:bias_l1=0.5-2": ("3:relu:bias_l1=0.5:bias_l1=0.5", "bias_l1=", "bias_l1=0.5", "bias_l1=0.5"),
}


def twice_message(token, option, first, second):
    return f"layer 1 gives {option} twice in {token!r} ({first!r} and {second!r}); give each option once"


@pytest.mark.parametrize("arch", sorted(TWICE))
def test_an_option_given_twice_is_refused_from_python(arch):
    with pytest.raises(BadInputError) as info:
        Architecture.parse(arch)
    assert twice_message(*TWICE[arch]) in str(info.value)


@pytest.mark.parametrize("arch", sorted(TWICE))
def test_an_option_given_twice_is_one_line_and_exit_2(capsys, arch):
    assert_refused(*run(capsys, "compare", "--arch", arch), twice_message(*TWICE[arch]))


@pytest.mark.parametrize(
    "arch,header",
    [  # each option once, in any order, is read as written (and printed back in the canonical order)
        ("8x8x1-conv2k3:same:tanh:s=2-flatten-10", "8x8x1-conv2k3:tanh:same:s=2-flatten-10:softmax"),
        ("8x8x1-pool3:s=1:same-flatten-10", "8x8x1-pool3:same:s=1-flatten-10:softmax"),
        ("8x8x1-conv2k3:d=2:valid-flatten-10", "8x8x1-conv2k3:relu:d=2-flatten-10:softmax"),
        (
            "8x8-gru4:reset_before:seq-rnn3:seq:relu-flatten-10",
            "8x8-gru4:seq:reset_before-rnn3:relu:seq-flatten-10:softmax",
        ),
        ("4-3:tanh:l1=0.1:l2=0.2-2", "4-3:tanh:l1=0.1:l2=0.2-2:softmax"),
    ],
)
def test_each_option_once_in_any_order_is_accepted(arch, header):
    assert str(Architecture.parse(arch)) == header


def test_the_padding_written_is_the_padding_built():
    """Before the fix the last padding won silently: the header of conv2k3:same:valid said valid."""
    assert Architecture.parse("8x8x1-conv2k3:same-flatten-10").layers[0].options["padding"] == "same"
    assert Architecture.parse("8x8x1-pool2:same-flatten-10").layers[0].options["padding"] == "same"
