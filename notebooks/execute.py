"""Run the notebooks top to bottom and save their outputs in the files: `make notebooks` (or
`python notebooks/execute.py [--rewrite] [NAME.ipynb ...]`).

Each notebook runs in a fresh kernel with `notebooks/` as its working directory, so a learner's `jupyter lab
notebooks/` sees what the saved outputs show. The test suite runs them the same way (`tests/test_notebooks.py`) and
compares their text outputs with the saved ones by meaning (`tests/by_meaning.py`: verdicts, counts and exact values
to the character, rounding figures such as a 1e-16 error by what they say), so a saved output that the code no longer
produces fails CI, and one saved on another processor does not.

A notebook whose fresh outputs say what the saved ones say (same cells, same sources, every cell run) is left as it
is, so a run on another processor does not rewrite last digits; `--rewrite` saves the fresh outputs anyway.

A cell tagged `volatile` (timings, memory addresses) is run but its outputs are not compared.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

#: Seconds one cell may take before the run is stopped (training on digits is the longest, a few seconds).
CELL_TIMEOUT = 300

#: Set in the kernel before the first cell: TensorFlow's C++ log lines are not part of the lesson.
ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}


def notebook_paths() -> list[Path]:
    """The notebooks in reading order (their names start with the step's number)."""
    return sorted(HERE.glob("[0-9][0-9]_*.ipynb"))


def execute(path: Path) -> nbformat.NotebookNode:
    """The notebook at `path` run top to bottom in a fresh Python kernel; the file itself is not changed."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)  # an earlier run's timestamps
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        coalesce_streams=True,  # one output per stream and cell, wherever the kernel happened to flush
        record_timing=False,  # no timestamps in the saved files: a re-run that changes nothing changes no byte
    )
    client.execute(env={**os.environ, **ENVIRONMENT})  # a cell that raises stops the run (CellExecutionError)
    return notebook


def text_outputs(notebook: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell index, text) for the printed text and the plain-text results of the cells not tagged `volatile`: what a
    reader compares by eye, and what the staleness test compares exactly. A cell's printed text is joined into one
    (the kernel splits it where it happened to flush); stderr (warnings) and images are left out."""
    found = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or "volatile" in cell.get("metadata", {}).get("tags", []):
            continue
        printed = "".join(o.text for o in cell.get("outputs", []) if o.output_type == "stream" and o.name == "stdout")
        if printed:
            found.append((index, printed))
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                continue
            elif output.output_type in ("execute_result", "display_data") and "text/plain" in output.data:
                if not any(kind.startswith("image/") for kind in output.data):
                    found.append((index, output.data["text/plain"]))
            elif output.output_type == "error":
                found.append((index, f"{output.ename}: {output.evalue}"))
    return found


def stale_outputs(saved: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> list[str]:
    """Every saved text output whose meaning the fresh run does not reproduce, as 'cell N line M: ...' (empty: the
    saved notebook still shows what the code computes)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    try:
        from by_meaning import differences
    finally:
        sys.path.pop(0)
    if [c.source for c in saved.cells] != [c.source for c in fresh.cells]:
        return ["the cells' sources differ"]
    if not all(c.get("execution_count") for c in saved.cells if c.cell_type == "code" and c.source):
        return ["saved without running every cell"]
    old, new = text_outputs(saved), text_outputs(fresh)
    if [cell for cell, _ in old] != [cell for cell, _ in new]:
        return [f"outputs in cells {[c for c, _ in old]} saved, in cells {[c for c, _ in new]} now"]
    return [
        f"cell {cell} {problem}"
        for (cell, before), (_, after) in zip(old, new)
        for problem in differences(before, after)
    ]


def main(names: list[str]) -> int:
    """Run the named notebooks (all by default) and write back each whose outputs changed meaning (each, with
    `--rewrite` among the names)."""
    rewrite = "--rewrite" in names
    names = [name for name in names if name != "--rewrite"]
    paths = [HERE / name for name in names] if names else notebook_paths()
    for path in paths:
        print(f"running {path.name}", flush=True)
        notebook = execute(path)
        if not rewrite and not stale_outputs(nbformat.read(path, as_version=4), notebook):
            print(f"  {path.name}: the saved outputs say what this run says, left as they are", flush=True)
            continue
        nbformat.write(notebook, path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
