"""The former entry point, kept so that `python benchmarks/bench.py [options]` still works: it becomes
`python -m benchmarks [options]`, run from the repository root (a script in the package's own directory cannot
import the package without editing sys.path)."""

import os
import sys

if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.execv(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]])
