"""Run the notebooks top to bottom and save their outputs in the files: `make notebooks` (or
`python notebooks/execute.py [NAME.ipynb ...]`).

Each notebook runs in a fresh kernel with `notebooks/` as its working directory, so a learner's `jupyter lab
notebooks/` sees what the saved outputs show. The test suite runs them the same way (`tests/test_notebooks.py`) and
compares their text outputs with the saved ones, so a saved output that the code no longer produces fails CI.

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


def main(names: list[str]) -> int:
    """Run the named notebooks (all by default) and write each back with its new outputs."""
    paths = [HERE / name for name in names] if names else notebook_paths()
    for path in paths:
        print(f"running {path.name}", flush=True)
        notebook = execute(path)
        nbformat.write(notebook, path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
