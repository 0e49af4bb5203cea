"""The learner's notebooks run top to bottom, and their saved outputs are the ones the code produces now.

Each notebook is executed in a fresh kernel (nbclient, as `make notebooks` does when it saves them) and every printed
line and plain-text result is compared with the saved one: a change in the library that moves a number a notebook
shows fails here until `make notebooks` saves the new outputs. Their Markdown cells are held to the derivations
reference's link rules (every link and code reference resolves), and each links the derivation sections it uses.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
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


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_the_notebook_runs_and_its_saved_outputs_are_current(path):
    saved = nbformat.read(path, as_version=4)
    fresh = runner.execute(path)
    assert [c.source for c in fresh.cells] == [c.source for c in saved.cells]
    old, new = runner.text_outputs(saved), runner.text_outputs(fresh)
    assert old, f"{path.name} has no saved outputs: run `make notebooks`"
    for (cell, before), (_, after) in zip(old, new):
        assert before == after, f"{path.name} cell {cell}: the saved output is stale, run `make notebooks`"
    assert len(old) == len(new), f"{path.name}: a different number of outputs, run `make notebooks`"
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
    assert runner.text_outputs(fresh) != runner.text_outputs(runner.execute(path))
