"""Child processes: run a command to completion and report its exit code, wall time, peak RSS and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks.config import BASE_ENV
from benchmarks.timing import GUARD, Budget

#: The directory that holds the `benchmarks` package (the repository root): `python -m benchmarks` started there
#: finds the package, wherever this process was started from.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class ChildRun:
    """One child process: exit code, wall seconds, peak resident memory (MiB), output, other processes' load."""

    returncode: int
    wall: float
    maxrss_mib: float
    output: str
    other: float = float("nan")


#: A small launcher (python -S, stdlib only) that runs the command as its own child and reports that child's wall
#: time and ru_maxrss. Linux charges a forked child with its parent's resident memory at fork time (ru_maxrss of a
#: child forked from this ~100+ MiB process reads 400+ MiB for `python -c pass` when this process holds 400 MiB),
#: so the measured command must be forked from a small process.
_LAUNCHER = """\
import resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.call(sys.argv[1:])
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"\\n@@bench-child wall={wall!r} maxrss={peak}", flush=True)
sys.exit(rc if rc >= 0 else 128 - rc)
"""
_MARK = "@@bench-child "


def benchmark_command(*args: str) -> list[str]:
    """The command that runs this package (`python -m benchmarks ARGS`) with this interpreter; start it with
    cwd=PACKAGE_PARENT."""
    return [sys.executable, "-m", __name__.rpartition(".")[0], *args]


def run_child(
    cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 300.0, cwd: str | None = None
) -> ChildRun:
    """Run `cmd` to completion through `_LAUNCHER`: its wall time, peak RSS (the launcher's
    getrusage(RUSAGE_CHILDREN).ru_maxrss: KiB on Linux) and combined output. Killed after `timeout` seconds.
    `env` defaults to BASE_ENV; `cwd` to this process's working directory."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=BASE_ENV if env is None else env,
            cwd=cwd,
            start_new_session=True,
        )
        killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, 9))
        killer.start()
        try:
            returncode = proc.wait()
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    maxrss = float("nan")
    lines = text.splitlines()
    marks = [line for line in lines if line.startswith(_MARK)]
    if marks:
        fields = dict(part.split("=", 1) for part in marks[-1][len(_MARK) :].split())
        wall, maxrss = float(fields["wall"]), float(fields["maxrss"])
        text = "\n".join(line for line in lines if not line.startswith(_MARK))
    per_mib = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024  # macOS reports bytes
    return ChildRun(returncode, wall, maxrss * per_mib, text)


def run_worker(
    name: str, env: dict[str, str], quick: bool, patience: float, timeout: float
) -> tuple[dict[str, Any] | None, str]:
    """`python -m benchmarks --worker NAME --patience P [--quick]` in a fresh child process under `env`: the JSON
    result its last such line printed, its idle waits and disturbed measurements added to GUARD's; or None and
    "(exit N): <the output's end>" when it failed."""
    cmd = benchmark_command("--worker", name, "--patience", f"{patience:.0f}")
    if quick:
        cmd.append("--quick")
    child = run_child(cmd, env=env, timeout=timeout, cwd=PACKAGE_PARENT)
    lines = [line for line in child.output.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        return None, f"(exit {child.returncode}): {child.output.strip()[-300:]}"
    result = json.loads(lines[-1])
    GUARD.waited += result["waited"]
    GUARD.disturbed += result["disturbed"]
    return result, ""


def run_child_clean(cmd: Sequence[str], budget: Budget, env: dict[str, str] | None = None) -> ChildRun:
    """run_child, repeated if other processes disturbed it (see timing.IdleGuard)."""
    run, other = GUARD.clean(lambda: run_child(cmd, env), budget.retries)
    run.other = other
    return run


#: The neighbour process sections 10 and 11 start: one core kept busy.
SPINNER = "while True: pass"


@contextmanager
def neighbour(busy: bool = True, code: str = SPINNER) -> Iterator[None]:
    """With `busy`, a neighbour process running `code` (a spinning loop) for the block, started here, given half a
    second to get going, and killed at the end; without, nothing."""
    if not busy:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", code], env=BASE_ENV)
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()
