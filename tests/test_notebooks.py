"""The learner's notebooks run top to bottom, and their saved outputs are the ones the code produces now.

Each notebook is executed in a fresh kernel (nbclient, as `make notebooks` does when it saves them) and every printed
line and plain-text result is compared with the saved one by meaning (tests/by_meaning.py): verdicts, shapes, counts,
exact values and every figure that is not rounding must match exactly, and figures that measure rounding (errors at
the 1e-16 level, witness errors, "3.0 x epsilon") must say what they said (both within their tolerance, both rounding),
so the outputs saved on one processor hold on every other. A change in the library that changes what a notebook
shows fails here until `make notebooks` saves the new outputs. Their Markdown cells are held to the derivations
reference's link rules (every link and code reference resolves), and each links the derivation sections it uses.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
from by_meaning import differences
from test_docs import check_markdown

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

_spec = importlib.util.spec_from_file_location("notebook_execute", NOTEBOOKS / "execute.py")
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)

PATHS = runner.notebook_paths()

#: The steps the seed posts walk through, one notebook each (issue: the learner's path).
STEPS = 6

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def test_there_is_a_notebook_per_step():
    assert len(PATHS) >= STEPS, [p.name for p in PATHS]
    numbers = [int(p.name[:2]) for p in PATHS]
    assert numbers == list(range(1, len(PATHS) + 1))


stale_outputs = runner.stale_outputs


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_the_notebook_runs_and_its_saved_outputs_are_current(path):
    saved = nbformat.read(path, as_version=4)
    fresh = runner.execute(path)
    assert [c.source for c in fresh.cells] == [c.source for c in saved.cells]
    assert runner.text_outputs(saved), f"{path.name} has no saved outputs: run `make notebooks`"
    stale = stale_outputs(saved, fresh)
    assert not stale, f"{path.name}: the saved outputs are stale, run `make notebooks`\n" + "\n".join(stale)
    every_code_cell_ran = all(c.get("execution_count") for c in saved.cells if c.cell_type == "code" and c.source)
    assert every_code_cell_ran, f"{path.name} was saved without running every cell: run `make notebooks`"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_the_notebook_is_japanese_and_links_resolve(path):
    notebook = nbformat.read(path, as_version=4)
    text = "\n\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert len(JAPANESE.findall(text)) > 200, f"{path.name}: the prose is for the seeds' readers, in Japanese"
    assert "../docs/derivations.md#" in text, f"{path.name} links no derivation section"
    problems = check_markdown(text, NOTEBOOKS, path.name)
    assert not problems, "\n".join(problems)


def test_a_stale_output_is_detected(tmp_path):
    """The staleness check itself: a notebook whose saved number differs from what it prints now fails."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("print(6 * 6)")]
    path = tmp_path / "01_stale.ipynb"
    nbformat.write(notebook, path)
    fresh = runner.execute(path)
    assert runner.text_outputs(fresh) == [(0, "36\n")]
    fresh.cells[0].outputs[0].text = "35\n"
    again = runner.execute(path)
    assert runner.text_outputs(fresh) != runner.text_outputs(again)
    assert stale_outputs(fresh, again) == ["cell 0 line 1: 35 is now 36 in '35'"]


# ----- the comparison by meaning, on the saved outputs themselves ----------------------------------------------------
#: Saved outputs of the cells the tests below edit, as the notebooks held them on the processor where they were
#: first saved (OpenBLAS's Haswell kernels). A fixed sample: the notebooks themselves are re-saved whenever their
#: meaning changes (and then on whatever processor runs `make notebooks`), and these tests are about the rule, not
#: about today's files.
SAMPLES = json.loads((Path(__file__).parent / "data" / "notebook_outputs_2026-11.json").read_text(encoding="utf-8"))


def saved_output(name: str, cell: int) -> str:
    """A real saved text output of one cell (its printed lines, or its plain-text result), from SAMPLES."""
    return SAMPLES[name][str(cell)]


def edited(text: str, old: str, new: str) -> str:
    """`text` with the line fragment `old` (which must occur once) replaced by `new`."""
    assert text.count(old) == 1, (old, text)
    return text.replace(old, new)


#: The issue's four outputs of a correct run on a processor with AVX-512 (no OPENBLAS_CORETYPE): each differs from
#: the saved one in the last digits of a rounding figure, and each says the same.
OTHER_PROCESSOR = [
    (
        "05_backprop_and_parity.ipynb",
        24,
        "3.25e+00       9.38e-01       9.37e-01",
        "3.25e+00       9.38e-01       9.38e-01",
    ),
    ("06_training_on_digits.ipynb", 7, "1.11e-16    7.23e-17", "1.11e-16    6.93e-17"),
    ("07_cnn.ipynb", 24, "8.33e-17       5.10e-16       4.36e-16", "1.11e-16       6.80e-16       3.56e-16"),
    (
        "08_rnn.ipynb",
        23,
        "scalar   0              0              0 ",
        "scalar   4.44e-16       1.90e-16       1.90e-16 ",
    ),
]


@pytest.mark.parametrize("name,cell,old,new", OTHER_PROCESSOR, ids=lambda v: str(v)[:12])
def test_the_issues_outputs_from_another_processor_keep_their_meaning(name, cell, old, new):
    saved = saved_output(name, cell)
    fresh = edited(saved, old, new)
    assert fresh != saved  # compared byte for byte, this run failed
    assert differences(saved, fresh) == []


#: Rounding figures moved within their band (accepted) and beyond it (refused), one of each kind the notebooks print.
ROUNDING = [
    # a PASS row's errors anywhere within the row's tolerance; beyond it, the row would say FAIL
    ("05_backprop_and_parity.ipynb", 19, "1.77e-16  norm-rel", "9.00e-13  norm-rel", True),
    ("05_backprop_and_parity.ipynb", 19, "1.77e-16  norm-rel", "2.00e-12  norm-rel", False),
    # the witness row, within its tolerance 1e-6
    ("05_backprop_and_parity.ipynb", 19, "1.88e-11       9.65e-11       9.65e-11", "1.35e-11 6.95e-11 6.95e-11", True),
    ("05_backprop_and_parity.ipynb", 19, "1.88e-11       9.65e-11       9.65e-11", "1.88e-11 9.65e-11 2.00e-06", False),
    # a failing row's size (a bug's, 1 - 1/16 = 0.9375): adjacent prints, not two units apart
    ("05_backprop_and_parity.ipynb", 24, "9.38e-01       9.37e-01  norm-rel", "9.37e-01 9.38e-01  norm-rel", True),
    ("05_backprop_and_parity.ipynb", 24, "9.38e-01       9.37e-01  norm-rel", "9.38e-01 9.35e-01  norm-rel", False),
    # the same size in the diagnosis, which names the error
    ("05_backprop_and_parity.ipynb", 24, "(error 9.38e-01)", "(error 9.37e-01)", True),
    ("05_backprop_and_parity.ipynb", 24, "(error 9.38e-01)", "(error 9.31e-01)", False),
    # "k x epsilon": rounding while k epsilon <= F64_TOL (k <= 4503)
    ("05_backprop_and_parity.ipynb", 21, "3.15e-16 = 1.4 x epsilon", "3.77e-16 = 1.7 x epsilon", True),
    ("05_backprop_and_parity.ipynb", 21, "3.15e-16 = 1.4 x epsilon", "3.15e-16 = 9000 x epsilon", False),
    # a float64 discrepancy without a printed tolerance: rounding up to F64_TOL
    ("08_rnn.ipynb", 31, "t=7     5.20e-18", "t=7     6.94e-18", True),
    ("08_rnn.ipynb", 31, "t=7     5.20e-18", "t=7     3.00e-09", False),
    # a witness's relative error (Sandybridge kernels: 1.4e-09), up to GRADCHECK_TOL
    ("05_backprop_and_parity.ipynb", 13, "largest relative error 4.6e-10", "largest relative error 1.4e-09", True),
    ("05_backprop_and_parity.ipynb", 13, "largest relative error 4.6e-10", "largest relative error 4.6e-05", False),
    # a witness's one-sided difference, sign included (Sandybridge: 3.2e-12)
    ("07_cnn.ipynb", 29, "Keras - D- = -4.1e-11", "Keras - D- = 3.2e-12", True),
    ("07_cnn.ipynb", 29, "Keras - D- = -4.1e-11", "Keras - D- = 4.1e-03", False),
    # a central difference printed to 10 decimals: its rounding (~2e-11) moves it one unit at most
    ("05_backprop_and_parity.ipynb", 13, "numerical -0.0982299645", "numerical -0.0982299646", True),
    ("05_backprop_and_parity.ipynb", 13, "numerical -0.0982299645", "numerical -0.0982299647", False),
    # a float64 printed in full: a few ulps (Sandybridge: one), not 1e-13 relative
    ("05_backprop_and_parity.ipynb", 4, "1.1283342097964628", "1.1283342097964626", True),
    ("05_backprop_and_parity.ipynb", 4, "1.1283342097964628", "1.1283342097965628", False),
]


@pytest.mark.parametrize("name,cell,old,new,same", ROUNDING, ids=lambda v: str(v)[:16])
def test_a_rounding_figure_keeps_its_meaning_within_its_band_and_not_beyond(name, cell, old, new, same):
    saved = saved_output(name, cell)
    problems = differences(saved, edited(saved, old, new))
    assert problems == [] if same else len(problems) == 1, problems


#: Changes of meaning: a verdict, a count, an accuracy, an exact value, a prediction, a shape, a located layer.
MEANING = [
    (
        "05_backprop_and_parity.ipynb",
        19,
        "1.77e-16  norm-rel   1.00e-12     PASS",
        "1.77e-16  norm-rel   1.00e-12     FAIL",
    ),
    ("05_backprop_and_parity.ipynb", 19, "PASS: all 9 quantities", "FAIL: all 9 quantities"),
    ("05_backprop_and_parity.ipynb", 27, "1.66e-16  PASS", "1.66e-16  FAIL"),
    (
        "05_backprop_and_parity.ipynb",
        19,
        "1.77e-16  norm-rel   1.00e-12",
        "1.77e-16  norm-rel   1.00e-10",
    ),  # a tolerance
    ("06_training_on_digits.ipynb", 7, "0.9137         0.9137", "0.9132         0.9137"),  # an accuracy
    ("06_training_on_digits.ipynb", 7, "PASS: 290 steps", "PASS: 289 steps"),  # a count
    ("06_training_on_digits.ipynb", 7, "2.060420        2.060420", "2.060421        2.060420"),  # a loss
    ("04_loss_and_gradient_descent.ipynb", 5, "E     = 36.0", "E     = 36.00000000000001"),  # an exact value
    (
        "04_loss_and_gradient_descent.ipynb",
        7,
        "dMSE/dy (N = 4): [-3.  3. -3.  3.]",
        "dMSE/dy (N = 4): [-3.  3. -3.  4.]",
    ),
    ("01_perceptron.ipynb", 15, "  XOR  1 1 | 0", "  XOR  1 1 | 1"),  # a prediction
    ("01_perceptron.ipynb", 11, "XOR  [0, 1, 1, 0] を出すもの: 0", "XOR  [0, 1, 1, 0] を出すもの: 1"),
    (
        "07_cnn.ipynb",
        46,
        "same predicted class on every sample: True (0 differ)",
        "same predicted class on every sample: True (1 differ)",
    ),
    ("07_cnn.ipynb", 24, "3x3x1x8", "3x3x8x1"),  # a shape
    ("07_cnn.ipynb", 35, "differs at layer 1 (conv2d)", "differs at layer 2 (conv2d)"),  # where a bug is located
    ("08_rnn.ipynb", 31, "t=7     5.20e-18", "t=6     5.20e-18"),  # an index beside a rounding figure
    ("07_cnn.ipynb", 29, "|D0 - Keras| / |Keras| = 32%", "|D0 - Keras| / |Keras| = 33%"),  # a size at a kink
    ("07_cnn.ipynb", 29, "+0.135943  +0.135943  False", "+0.135943  +0.135943  True"),  # a kink found
    ("02_activations.ipynb", 5, "kink_value=0.20000000298023224", "kink_value=0.2"),  # float32 constant vs float64
]


@pytest.mark.parametrize("name,cell,old,new", MEANING, ids=lambda v: str(v)[:16])
def test_a_change_of_meaning_is_stale(name, cell, old, new):
    saved = saved_output(name, cell)
    assert len(differences(saved, edited(saved, old, new))) == 1


def test_a_changed_line_count_or_text_is_stale():
    saved = saved_output("05_backprop_and_parity.ipynb", 24)
    assert differences(saved, saved + "\nanother line") == [
        f"{saved.count(chr(10)) + 1} lines saved, {saved.count(chr(10)) + 2} now"
    ]
    assert differences(saved, edited(saved, "a missing 1/N?", "a missing 1/M?"))
    assert differences(saved, edited(saved, "grad dense_1/bias    4 ", "grad dense_2/bias    4 "))
