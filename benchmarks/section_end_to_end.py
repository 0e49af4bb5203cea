"""Section 3: end to end, the wall time and peak RSS of the command line and of the imports it pays for, each in
fresh child processes."""

from __future__ import annotations

import statistics
import sys

from benchmarks.children import ChildRun, run_child, run_child_clean
from benchmarks.report import Section, load_cell, progress
from benchmarks.timing import Budget

TITLE = "3. End to end (fresh child processes; peak RSS = the child's ru_maxrss)"
HEAD = ["command", "wall s (median)", "share of compare", "peak RSS MiB", "runs", "exit", "other load"]


def run(budget: Budget, reps: int, quick: bool) -> Section:
    """Wall time and peak RSS of the CLI and of the imports it pays for, each in fresh child processes."""
    py = sys.executable
    commands: list[tuple[str, list[str]]] = [
        ('python -c "import tensorflow"', [py, "-c", "import tensorflow"]),
        ("python -m compare compare", [py, "-m", "compare", "compare"]),
    ]
    if not quick:
        commands[:0] = [('python -c "import numpy"', [py, "-c", "import numpy"])]
        commands.insert(
            2, ('python -c "import keras_impl" (TF + Keras, harness settings)', [py, "-c", "import keras_impl"])
        )
    notes = []
    probe = run_child([py, "-m", "compare", "train", "--help"], timeout=120)
    if probe.returncode != 0:
        last = (probe.output.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        notes.append(f"`python -m compare train` skipped: `train --help` failed ({last})")
    elif quick:
        notes.append("`python -m compare train` exists; timed in the full run only")
    else:
        commands.append(("python -m compare train (defaults)", [py, "-m", "compare", "train"]))
    results: dict[str, list[ChildRun]] = {}
    for name, cmd in commands:
        for i in range(reps):
            progress(f"3: {name} ({i + 1}/{reps})")
            child = run_child_clean(cmd, budget)
            results.setdefault(name, []).append(child)
            if child.returncode != 0:
                notes.append(f"`{name}` exited {child.returncode}: {(child.output.strip().splitlines() or [''])[-1]}")
                break
    compare_wall = statistics.median(r.wall for r in results["python -m compare compare"])
    rows = []
    for name, runs in results.items():
        wall = statistics.median(r.wall for r in runs)
        rows.append(
            [
                name,
                f"{wall:.2f}",
                f"{wall / compare_wall:.0%}",
                f"{max(r.maxrss_mib for r in runs):.0f}",
                len(runs),
                runs[-1].returncode,
                load_cell(max(r.other for r in runs)),
            ]
        )
    return Section(
        TITLE,
        [(HEAD, rows)],
        [
            (
                "each command is started by a small launcher process that reports its child's wall time and "
                "getrusage(RUSAGE_CHILDREN).ru_maxrss (a child forked straight from this large process would be "
                "charged with this process's resident memory); median wall time of the runs, largest peak RSS"
            ),
            (
                "children get the environment this script started with: a plain `import tensorflow` runs with oneDNN "
                "on (keras_impl, hence compare, sets TF_ENABLE_ONEDNN_OPTS=0)"
            ),
            *notes,
        ],
    )
