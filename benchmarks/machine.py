"""The machine and the run: CPU, cores, BLAS, versions, GEMM speed; the report's first and last lines."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from importlib import metadata
from typing import Any

import numpy as np

from benchmarks.config import BASE_ENV, DTYPES
from benchmarks.steps import GEMM_FLOPS, gemm_call
from benchmarks.timing import GUARD, Budget, measure
from from_scratch.threads import usable_cores


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def core_count() -> str:
    """Logical CPUs, and how many this process may run on when that differs."""
    total, usable = os.cpu_count(), usable_cores()
    return f"{total}" if usable == total else f"{total} ({usable} usable)"


def blas_info() -> list[dict[str, Any]]:
    """Thread pools (BLAS, OpenMP) loaded in this process, via threadpoolctl when it is installed, else []."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return threadpool_info()


def blas_threads() -> list[int]:
    """Thread counts of the BLAS libraries loaded in this process (empty without threadpoolctl)."""
    return [p["num_threads"] for p in blas_info() if p.get("user_api") == "blas"]


def blas_summary() -> str:
    """One line naming NumPy's BLAS: library, version, kernel architecture and thread count."""
    pools = [p for p in blas_info() if p.get("user_api") == "blas" and "numpy" in p.get("filepath", "")]
    if pools:
        p = pools[0]
        return (
            f"{p.get('internal_api')} {p.get('version')}, {p.get('num_threads')} {p.get('threading_layer')} threads, "
            f"kernels {p.get('architecture')} (threadpoolctl)"
        )
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]  # type: ignore[index]
        return f"{blas.get('name')} {blas.get('version')} (NumPy build info; threadpoolctl not installed)"
    except Exception:  # noqa: BLE001 (older NumPy has no dict mode)
        return "unknown (threadpoolctl not installed)"


def os_thread_count() -> int:
    """OS threads in this process (from /proc; -1 where unavailable)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def code_version() -> str:
    """The project's git commit (read-only `git` calls), with a mark when files differ from it."""
    import from_scratch

    root = os.path.dirname(os.path.dirname(os.path.abspath(from_scratch.__file__)))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty else ''}"


def gemm_probe() -> str:
    """float32 and float64 GEMM throughput right now (a short measurement, to see the machine's speed drift)."""
    probe = Budget(seconds=0.3, min_reps=5, max_reps=100, warmup=2, warmup_seconds=0.05, retries=0, patience=0.0)
    parts = []
    for dtype in DTYPES:
        t = measure(gemm_call(dtype), probe, guarded=False)
        parts.append(f"{dtype} {GEMM_FLOPS / t.median / 1e9:.0f}")
    return ", ".join(parts) + f" GFLOP/s (other load {t.other:.2f})"


def machine_lines() -> list[tuple[str, str]]:
    """(name, value) pairs describing the machine and software; cores and BLAS first."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    env = [
        f"{k}={v}"
        for k, v in sorted(BASE_ENV.items())
        if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOTO", "TF_NUM", "TF_ENABLE_ONEDNN"))
    ]
    tf_dist = "tensorflow-cpu" if version("tensorflow-cpu") != "not installed" else "tensorflow"
    return [
        ("cores", core_count()),
        ("BLAS", blas_summary()),
        ("CPU", cpu_model()),
        ("thread env", ", ".join(env) or "(none set)"),
        ("date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("code", f"git {code_version()}"),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        (tf_dist, version(tf_dist)),
        ("keras", version("keras")),
        ("load average at start", load),
    ]


def closing_lines(started: float, quick: bool) -> list[tuple[str, str]]:
    """(name, value) pairs for the end of the report: GEMM speed and load now, disturbed measurements, run time
    since `started` (a time.perf_counter() value)."""
    return [
        ("GEMM 1024 at end", gemm_probe()),
        ("load average at end", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        (
            "disturbed measurements",
            (
                f"{GUARD.disturbed} still disturbed after retries (flagged '!'); "
                f"{GUARD.waited:.0f} s spent waiting for an idle machine"
            ),
        ),
        ("run time", f"{time.perf_counter() - started:.0f} s ({'--quick' if quick else 'full'})"),
    ]
